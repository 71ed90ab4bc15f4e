"""Parse rules text into the typed AST (``nodes.Program``), checking names and types.

Two passes over lark's parse tree: first collect declarations (constants are
folded in file order, so a constant may use earlier ones), then build every
expression with names resolved and types checked. All problems raise
``RuleError`` pointing at the offending token.
"""
from __future__ import annotations

import functools
import math
from importlib import resources
from typing import Callable

import lark
from lark import Token, Tree

from . import nodes as n
from .analysis import fold, has_any as _has_any, nondeterministic_signals, reads as _reads
from .errors import RuleError, from_lark, suggest

@functools.lru_cache(maxsize=1)
def _lark() -> lark.Lark:
    grammar = resources.files("symbolic").joinpath("grammar.lark").read_text()
    return lark.Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def parse(text: str, path: str = "<string>") -> n.Program:
    """Parse and check rules text; raise RuleError on any problem."""
    try:
        tree = _lark().parse(text)
    except lark.exceptions.UnexpectedInput as error:
        raise from_lark(error, path, text) from None
    return _Builder(text, path).program(tree)


def _trees(tree: Tree) -> list[Tree]:
    return [c for c in tree.children if isinstance(c, Tree)]


def _tokens(tree: Tree, kind: str) -> list[Token]:
    return [c for c in tree.children if isinstance(c, Token) and c.type == kind]


def _span(item: Tree | Token) -> n.Span:
    if isinstance(item, Token):
        return n.Span(item.line or 0, item.column or 0)
    return n.Span(getattr(item.meta, "line", 0), getattr(item.meta, "column", 0))


class _Builder:
    def __init__(self, text: str, path: str) -> None:
        self.text, self.path = text, path
        self.constants: dict[str, n.Constant] = {}
        self.signals: dict[str, n.Signal] = {}
        self.actions: dict[str, n.Action] = {}
        self.labels: dict[str, int] = {}
        self.in_model = False  # any(...) is legal only inside model equations

    # ---- errors ------------------------------------------------------------
    def error(self, message: str, where: Tree | Token | n.Span, expected: str = "") -> RuleError:
        span = where if isinstance(where, n.Span) else _span(where)
        return RuleError(message, self.path, span.line, span.column, self.text, expected)

    def _declare(self, name: Token, kind: str) -> None:
        taken = {**{k: "constant" for k in self.constants}, **{k: "signal" for k in self.signals},
                 **{k: "action" for k in self.actions}, **{k: "label" for k in self.labels}}
        if str(name) in taken:
            raise self.error(f"'{name}' is already declared as a {taken[str(name)]}", name,
                             f"a new {kind} name")

    # ---- program -----------------------------------------------------------
    def program(self, tree: Tree) -> n.Program:
        items = _trees(tree)
        for item in items:  # pass 1: constants (folded in order)
            if item.data == "constants_block":
                for decl in _trees(item):
                    name = _tokens(decl, "NAME")[0]
                    self._declare(name, "constant")
                    value = self.constant_value(_trees(decl)[0])
                    self.constants[str(name)] = n.Constant(str(name), value, _span(name))
        for item in items:  # pass 1b: signals and actions (they define labels)
            if item.data == "signals_block":
                for decl in _trees(item):
                    self.signal(decl)
            elif item.data == "actions_block":
                for decl in _trees(item):
                    self.action(decl)
        model: list[n.Equation] = []
        rules: list[n.Rule] = []
        invariant, fallback = None, None
        for item in items:  # pass 2: expressions
            if item.data == "model_block":
                model.extend(self.equations(item, model))
            elif item.data == "invariant_decl":
                if invariant is not None:
                    raise self.error("a second invariant: declaration", item, "one invariant")
                invariant = self.boolean(_trees(item)[0])
                self.check_state_only(invariant, "the invariant")
            elif item.data == "rule_decl":
                rules.append(self.rule(item, rules))
            elif item.data == "fallback_decl":
                if fallback is not None:
                    raise self.error("a second fallback: declaration", item, "one fallback")
                fallback = self.fallback(_trees(item)[0])
        program = n.Program(tuple(self.signals.values()), tuple(self.actions.values()),
                            tuple(self.constants.values()), tuple(model), invariant,
                            tuple(rules), fallback, path=self.path)
        for rule in program.rules:
            self.check_next_bodies(program, rule.body)
        return program

    def signal(self, decl: Tree) -> None:
        name = _tokens(decl, "NAME")[0]
        self._declare(name, "signal")
        parts = {t.data: t for t in _trees(decl)}
        ref = parts["obs_ref"]
        keys = _tokens(ref, "NAME")
        index = self.index(_trees(ref)[0]) if _trees(ref) else ()
        low = high = None
        if "range" in parts:
            low, high = self.range(parts["range"])
        labels = self.label_set(_trees(parts["enum"])[0]) if "enum" in parts else ()
        self.signals[str(name)] = n.Signal(str(name), str(keys[0]) if keys else None, index,
                                           low, high, labels, _span(name))

    def action(self, decl: Tree) -> None:
        name = _tokens(decl, "NAME")[0]
        self._declare(name, "action")
        parts = {t.data: t for t in _trees(decl)}
        index = self.index(parts["index"]) if "index" in parts else None
        if index is not None and len(index) != 1:
            raise self.error("an action index takes exactly one number", parts["index"],
                             "action[i]")
        position = index[0] if index else None
        if decl.data == "continuous_action":
            low, high = self.range(parts["range"])
            action = n.Action(str(name), position if position is not None else 0, (), low, high,
                              _span(name))
        else:
            action = n.Action(str(name), position, self.label_set(parts["label_set"]),
                              span=_span(name))
        self.actions[str(name)] = action

    def index(self, tree: Tree) -> tuple[int, ...]:
        return tuple(self.integer(tok) for tok in _tokens(tree, "NUMBER"))

    def integer(self, tok: Token, negative: bool = False) -> int:
        value = float(tok)
        if value != int(value):
            raise self.error(f"'{tok}' is not an integer", tok, "an integer")
        return -int(value) if negative else int(value)

    def range(self, tree: Tree) -> tuple[float, float]:
        low, high = (self.constant_value(t) for t in _trees(tree))
        if not low <= high:
            raise self.error(f"empty range [{low}, {high}]", tree, "low <= high")
        return low, high

    def label_set(self, tree: Tree) -> tuple[tuple[str, int], ...]:
        labels = []
        for label in _trees(tree):
            name = _tokens(label, "NAME")[0]
            signed = _trees(label)[0]
            value = self.integer(_tokens(signed, "NUMBER")[0], bool(_tokens(signed, "MINUS")))
            if self.labels.get(str(name), value) != value:
                raise self.error(f"label '{name}' is already declared with value "
                                 f"{self.labels[str(name)]}", name, "a new label name")
            if str(name) in {**self.constants, **self.signals, **self.actions}:
                self._declare(name, "label")
            self.labels[str(name)] = value
            labels.append((str(name), value))
        return tuple(labels)

    def constant_value(self, tree: Tree) -> float:
        expr = self.numeric(tree)
        value = fold(expr)
        if value is None:
            raise self.error("this must be a constant expression", tree,
                             "numbers, declared constants and + - * / abs min max")
        return value

    def equations(self, block: Tree, earlier: list[n.Equation]) -> list[n.Equation]:
        out: list[n.Equation] = []
        seen = {e.target for e in earlier}
        for eq in _trees(block):
            target = _tokens(eq, "NAME")[0]
            if str(target) not in self.signals:
                raise self.error(f"'{target}' is not a declared signal"
                                 + suggest(str(target), self.signals), target,
                                 "a signal name before the prime")
            if str(target) in seen:
                raise self.error(f"a second equation for {target}'", target, "one per signal")
            seen.add(str(target))
            self.in_model = True
            expr = self.numeric(_trees(eq)[0])
            self.in_model = False
            for node in n.walk(expr):
                if isinstance(node, n.Binary) and node.op == "/" and _has_any(node.right):
                    raise self.error("division by a term containing any(...)", node.span,
                                     "a deterministic divisor")
                if isinstance(node, n.IfThenElse) and _has_any(node.condition):
                    raise self.error("an if-condition containing any(...)", node.span,
                                     "a deterministic condition")
            out.append(n.Equation(str(target), expr, _span(target)))
        return out

    def rule(self, tree: Tree, earlier: list[n.Rule]) -> n.Rule:
        name = _tokens(tree, "NAME")[0]
        if any(r.name == str(name) for r in earlier):
            raise self.error(f"a second rule named '{name}'", name, "a unique rule name")
        kind = str(_trees(tree)[0].children[0])
        strings = _tokens(tree, "STRING")
        body = self.boolean(_trees(tree)[1])
        return n.Rule(str(name), kind, strings[0][1:-1] if strings else "", body, _span(name))

    def fallback(self, tree: Tree) -> n.Fallback:
        if tree.data == "fallback_ranked":
            return n.Fallback(True, span=_span(tree))
        if tree.data == "fallback_label":
            tok = tree.children[0]
            return n.Fallback(False, (float(self.label_value(tok)),), (str(tok),), _span(tok))
        values, text = [], []
        for item in _trees(tree):
            child = item.children[0]
            if isinstance(child, Token):
                values.append(float(self.label_value(child)))
                text.append(str(child))
            else:
                number = float(_tokens(child, "NUMBER")[0])
                values.append(-number if _tokens(child, "MINUS") else number)
                text.append(repr(values[-1]))
        return n.Fallback(False, tuple(values), tuple(text), _span(tree))

    def label_value(self, tok: Token) -> int:
        if str(tok) not in self.labels:
            raise self.error(f"unknown action label '{tok}'" + suggest(str(tok), self.labels),
                             tok, "'ranked', an action label or [values]")
        return self.labels[str(tok)]

    # ---- expressions -------------------------------------------------------
    def numeric(self, tree: Tree) -> n.NumExpr:
        expr = self.expr(tree)
        if not isinstance(expr, n.NUM_TYPES):
            raise self.error("expected a number here, found a condition", tree,
                             "a numeric expression")
        return expr  # type: ignore[return-value]

    def boolean(self, tree: Tree) -> n.BoolExpr:
        expr = self.expr(tree)
        if not isinstance(expr, n.BOOL_TYPES):
            raise self.error("expected a condition here, found a number", tree,
                             "a comparison or a boolean expression")
        return expr  # type: ignore[return-value]

    def expr(self, tree: Tree) -> n.Expr:
        handler: Callable[[Tree], n.Expr] = getattr(self, "x_" + tree.data.rstrip("_"), None)
        if handler is None:  # a parenthesised expression: ( expr )
            return self.expr(_trees(tree)[0])
        return handler(tree)

    def x_number(self, t: Tree) -> n.Expr:
        return n.Number(float(t.children[0]), _span(t))

    def x_true(self, t: Tree) -> n.Expr:
        return n.BoolConst(True, _span(t))

    def x_false(self, t: Tree) -> n.Expr:
        return n.BoolConst(False, _span(t))

    def x_name(self, t: Tree) -> n.Expr:
        tok = t.children[0]
        name, span = str(tok), _span(tok)
        if name in self.constants:
            return n.ConstantRef(name, self.constants[name].value, span)
        if name in self.signals:
            return n.SignalRef(name, span)
        if name in self.actions:
            return n.ActionRef(name, span)
        if name in self.labels:
            return n.LabelRef(name, self.labels[name], span)
        known = [*self.signals, *self.actions, *self.constants, *self.labels]
        raise self.error(f"unknown name '{name}'" + suggest(name, known), tok,
                         "a declared signal, action, constant or label")

    def x_call(self, t: Tree) -> n.Expr:
        function = str(_trees(t)[0].children[0])
        args = tuple(self.numeric(a) for a in _trees(t)[1:])
        if function == "abs" and len(args) != 1:
            raise self.error("abs takes exactly one argument", t, "abs(x)")
        if function != "abs" and len(args) < 2:
            raise self.error(f"{function} takes at least two arguments", t, f"{function}(a, b)")
        return n.Call(function, args, _span(t))

    def x_any(self, t: Tree) -> n.Expr:
        if not self.in_model:
            raise self.error("any(low, high) is only allowed in model: equations", t,
                             "a deterministic expression")
        low, high = (self.numeric(a) for a in _trees(t))
        if _has_any(low) or _has_any(high):
            raise self.error("the bounds of any(...) must be deterministic", t, "any(low, high)")
        return n.Any(low, high, _span(t))

    def x_if(self, t: Tree) -> n.Expr:
        cond, then, otherwise = _trees(t)
        return n.IfThenElse(self.boolean(cond), self.numeric(then), self.numeric(otherwise),
                            _span(t))

    def x_negate(self, t: Tree) -> n.Expr:
        return n.Negate(self.numeric(_trees(t)[0]), _span(t))

    def x_power(self, t: Tree) -> n.Expr:
        exponent = self.integer(_tokens(t, "NUMBER")[0])
        return n.Power(self.numeric(_trees(t)[0]), exponent, _span(t))

    def x_binary(self, t: Tree) -> n.Expr:
        left, op, right = t.children
        return n.Binary(str(op), self.numeric(left), self.numeric(right), _span(t))

    def x_compare(self, t: Tree) -> n.Expr:
        left, op, right = t.children
        lhs, rhs = self.numeric(left), self.numeric(right)
        discrete = _integral(lhs, self) and _integral(rhs, self) and (
            _has_discrete(lhs, self) or _has_discrete(rhs, self))
        return n.Compare(str(op), lhs, rhs, discrete, _span(t))

    def x_not(self, t: Tree) -> n.Expr:
        return n.Not(self.boolean(_trees(t)[0]), _span(t))

    def x_and(self, t: Tree) -> n.Expr:
        return n.And(tuple(self.boolean(c) for c in _trees(t)), _span(t))

    def x_or(self, t: Tree) -> n.Expr:
        return n.Or(tuple(self.boolean(c) for c in _trees(t)), _span(t))

    def x_implies(self, t: Tree) -> n.Expr:
        left, right = _trees(t)
        return n.Implies(self.boolean(left), self.boolean(right), _span(t))

    def x_prev(self, t: Tree) -> n.Expr:
        return n.Prev(self.boolean(_trees(t)[0]), _span(t))

    def x_next(self, t: Tree) -> n.Expr:
        return n.Next(self.boolean(_trees(t)[0]), _span(t))

    def x_window(self, t: Tree) -> n.Expr:
        op = str(_trees(t)[0].children[0])
        low_tok, high_tok = _tokens(t, "NUMBER")
        low, high = self.integer(low_tok), self.integer(high_tok)
        if low > high:
            raise self.error(f"empty window [{low}, {high}]", low_tok, "[low, high] with low <= high")
        return n.Window(op, low, high, self.boolean(_trees(t)[1]), _span(t))

    # ---- semantic checks ---------------------------------------------------
    def check_state_only(self, expr: n.Expr, what: str) -> None:
        for node in n.walk(expr):
            if isinstance(node, n.ActionRef) or n.is_past(node) or n.is_future(node):
                raise self.error(f"{what} may only read state signals", node.span,
                                 "signals, constants and labels")

    def check_next_bodies(self, program: n.Program, body: n.Expr) -> None:
        """Under a model, next() bodies are evaluated with intervals: keep them exact."""
        if not program.model:
            return
        unsure = nondeterministic_signals(program)
        for node in n.walk(body):
            if not isinstance(node, n.Next):
                continue
            for inner in n.walk(node.body):
                if isinstance(inner, n.Binary) and inner.op == "/" and _reads(inner.right, unsure):
                    raise self.error("division by a next-state value that the model leaves "
                                     "uncertain", inner.span, "a deterministic divisor")
                if isinstance(inner, n.IfThenElse) and _reads(inner.condition, unsure):
                    raise self.error("an if-condition on an uncertain next-state value",
                                     inner.span, "a deterministic condition")


def _integral(expr: n.Expr, b: _Builder) -> bool:
    if isinstance(expr, n.LabelRef):
        return True
    if isinstance(expr, (n.Number, n.ConstantRef)):
        return math.isfinite(expr.value) and float(expr.value).is_integer()
    if isinstance(expr, n.SignalRef):
        return bool(b.signals[expr.name].labels)
    if isinstance(expr, n.ActionRef):
        return b.actions[expr.name].discrete
    if isinstance(expr, (n.Negate, n.Call)) or (isinstance(expr, n.Binary) and expr.op != "/"):
        return all(_integral(c, b) for c in n.children(expr))
    return False


def _has_discrete(expr: n.Expr, b: _Builder) -> bool:
    return any((isinstance(x, n.SignalRef) and b.signals[x.name].labels)
               or (isinstance(x, n.ActionRef) and b.actions[x.name].discrete)
               for x in n.walk(expr))
