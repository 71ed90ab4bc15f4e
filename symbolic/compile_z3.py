"""Compile the AST into z3 formulas for the static checks in ``verify.py``.

A formula is built against an ``Env`` that maps names to z3 terms at some time
lag. Step semantics, matching what the real-step shield enforces:
  * past operators read lagged copies of every signal and action (fresh
    variables inside their declared domains), i.e. any history is possible;
  * ``next`` under a declared model uses the same interval rules as
    ``torch_intervals`` (encoded exactly, quantifier-free), so "no dead end"
    proved here means the torch shield will find an allowed action;
  * ``next``/``always``/``eventually`` without a model read lagged copies
    (planner-only rules; they never take part in dead-end checks).
All arithmetic is over exact reals; floats from the source convert exactly.
"""
from __future__ import annotations

from fractions import Fraction

import z3

from . import nodes as n
from .analysis import is_step_evaluable

ZInterval = tuple[z3.ArithRef, z3.ArithRef]
UNBOUNDED = 10 ** 30  # stands in for an undeclared range (torch uses +-inf)


def real(value: float) -> z3.ArithRef:
    q = Fraction(value)
    return z3.RealVal(f"{q.numerator}/{q.denominator}")


class Frame:
    """All variables of one query, with the domain constraints of each one created."""

    def __init__(self, program: n.Program) -> None:
        _NONNEG.clear()  # forgetting facts only costs speed, never soundness
        self.program = program
        self.constraints: list[z3.BoolRef] = []
        self._vars: dict[tuple[str, int], z3.ArithRef] = {}

    def var(self, name: str, lag: int) -> z3.ArithRef:
        if (name, lag) not in self._vars:
            label = name if lag == 0 else f"{name}@{lag:+d}"
            v = z3.Real(label)
            self._vars[(name, lag)] = v
            self.constraints += domain(self.program, name, v)
        return self._vars[(name, lag)]

    def variables(self) -> dict[tuple[str, int], z3.ArithRef]:
        return dict(self._vars)


def domain(program: n.Program, name: str, v: z3.ArithRef) -> list[z3.BoolRef]:
    """Declared range and/or label set of a signal or action."""
    decl = next((d for d in (*program.signals, *program.actions) if d.name == name))
    out = []
    if decl.low is not None:
        out += [v >= real(decl.low), v <= real(decl.high)]
    if decl.labels and decl.low is None:
        out.append(z3.Or([v == value for _, value in decl.labels]))
    elif decl.labels:
        out.append(z3.IsInt(v))
    return out


class Env:
    """Names -> terms at one lag; ``overrides`` pin current-step values (e.g. an action)."""

    def __init__(self, frame: Frame, lag: int = 0, overrides: dict[str, z3.ArithRef] | None = None):
        self.frame, self.lag, self.overrides = frame, lag, overrides or {}

    def get(self, name: str) -> z3.ArithRef:
        return self.overrides.get(name) if name in self.overrides else self.frame.var(name, self.lag)

    def shifted(self, delta: int) -> "Env":
        return Env(self.frame, self.lag + delta)


# Terms known to be >= 0 (by z3 AST id). Interval rules use this to skip case
# splits (e.g. max(v, 0)^2 is monotone), which keeps nonlinear checks fast.
# Values keep the terms alive so an id is never reused while it is registered.
_NONNEG: dict[int, z3.ArithRef] = {}


def _nonneg(term: z3.ArithRef) -> bool:
    if term.get_id() in _NONNEG:
        return True
    simple = z3.simplify(term) if z3.is_rational_value(z3.simplify(term)) else None
    return simple is not None and simple.as_fraction() >= 0


def _mark(term: z3.ArithRef, nonneg: bool = True) -> z3.ArithRef:
    if nonneg:
        _NONNEG[term.get_id()] = term
    return term


def _min(a: z3.ArithRef, b: z3.ArithRef) -> z3.ArithRef:
    return _mark(z3.If(a <= b, a, b), _nonneg(a) and _nonneg(b))


def _max(a: z3.ArithRef, b: z3.ArithRef) -> z3.ArithRef:
    return _mark(z3.If(a >= b, a, b), _nonneg(a) or _nonneg(b))


def _pow(x: z3.ArithRef, k: int) -> z3.ArithRef:
    out = z3.RealVal(1)
    for _ in range(k):
        out = out * x
    return out


class Z3Compiler:
    def __init__(self, program: n.Program) -> None:
        _NONNEG.clear()  # forgetting facts only costs speed, never soundness
        self.program = program
        self.equations = {e.target: e.expr for e in program.model}

    def rule(self, rule: n.Rule, env: Env) -> z3.BoolRef:
        return self.boolean(rule.body, env)

    # ---- point semantics ---------------------------------------------------
    def num(self, expr: n.NumExpr, env: Env) -> z3.ArithRef:
        if isinstance(expr, (n.Number, n.ConstantRef, n.LabelRef)):
            return real(float(expr.value))
        if isinstance(expr, (n.SignalRef, n.ActionRef)):
            return env.get(expr.name)
        if isinstance(expr, n.Negate):
            return -self.num(expr.operand, env)
        if isinstance(expr, n.Binary):
            a, b = self.num(expr.left, env), self.num(expr.right, env)
            return {"+": a + b, "-": a - b, "*": a * b}[expr.op] if expr.op != "/" else a / b
        if isinstance(expr, n.Power):
            return _pow(self.num(expr.base, env), expr.exponent)
        if isinstance(expr, n.Call):
            args = [self.num(a, env) for a in expr.args]
            if expr.function == "abs":
                return z3.If(args[0] >= 0, args[0], -args[0])
            out = args[0]
            for a in args[1:]:
                out = _min(out, a) if expr.function == "min" else _max(out, a)
            return out
        if isinstance(expr, n.IfThenElse):
            return z3.If(self.boolean(expr.condition, env), self.num(expr.then, env),
                         self.num(expr.otherwise, env))
        raise TypeError(f"any(...) outside a model equation: {expr!r}")

    def boolean(self, expr: n.BoolExpr, env: Env) -> z3.BoolRef:
        if isinstance(expr, n.BoolConst):
            return z3.BoolVal(expr.value)
        if isinstance(expr, n.Compare):
            a, b = self.num(expr.left, env), self.num(expr.right, env)
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b,
                    "!=": a != b}[expr.op]
        if isinstance(expr, n.Not):
            return z3.Not(self.boolean(expr.operand, env))
        if isinstance(expr, n.And):
            return z3.And([self.boolean(o, env) for o in expr.operands])
        if isinstance(expr, n.Or):
            return z3.Or([self.boolean(o, env) for o in expr.operands])
        if isinstance(expr, n.Implies):
            return z3.Implies(self.boolean(expr.left, env), self.boolean(expr.right, env))
        if isinstance(expr, n.Prev):
            return self.boolean(expr.body, env.shifted(-1))
        if isinstance(expr, n.Next):
            if self.program.model and is_step_evaluable(self.program, expr):
                return self.ibool(expr.body, self.successor(env))[0]
            return self.boolean(expr.body, env.shifted(1))
        if isinstance(expr, n.Window):
            sign = -1 if expr.op in n.PAST_WINDOWS else 1
            parts = [self.boolean(expr.body, env.shifted(sign * k))
                     for k in range(expr.low, expr.high + 1)]
            every = expr.op in ("always", "historically")
            return z3.And(parts) if every else z3.Or(parts)
        raise TypeError(f"not a boolean node: {expr!r}")

    # ---- interval semantics (next under the model) -------------------------
    def successor(self, env: Env) -> dict[str, ZInterval]:
        now = {d.name: (env.get(d.name),) * 2 for d in (*self.program.signals,
                                                        *self.program.actions)}
        box: dict[str, ZInterval] = {}
        for d in (*self.program.signals, *self.program.actions):
            if d.name in self.equations and isinstance(d, n.Signal):
                box[d.name] = self.inum(self.equations[d.name], now)
            else:
                values = [v for _, v in d.labels]
                low = d.low if d.low is not None else (min(values) if values else -UNBOUNDED)
                high = d.high if d.high is not None else (max(values) if values else UNBOUNDED)
                box[d.name] = (real(low), real(high))
        return box

    def inum(self, expr: n.NumExpr, box: dict[str, ZInterval]) -> ZInterval:
        if isinstance(expr, (n.Number, n.ConstantRef, n.LabelRef)):
            c = real(float(expr.value))
            return c, c
        if isinstance(expr, (n.SignalRef, n.ActionRef)):
            return box[expr.name]
        if isinstance(expr, n.Negate):
            lo, hi = self.inum(expr.operand, box)
            return (-lo, -lo) if lo is hi else (-hi, -lo)
        if isinstance(expr, n.Binary):
            a, b = self.inum(expr.left, box), self.inum(expr.right, box)
            if expr.op == "+":
                both = _nonneg(a[0]) and _nonneg(b[0])
                return _exact(a, b, _mark(a[0] + b[0], both), _mark(a[1] + b[1], both))
            if expr.op == "-":
                return _exact(a, b, a[0] - b[1], a[1] - b[0])
            if expr.op == "*":
                return _imul(a, b)
            d = b[0]  # the parser made divisors exact
            if a[0] is a[1]:
                q = a[0] / d
                return q, q
            if z3.is_true(z3.simplify(d > 0)):  # a positive constant: monotone
                return _mark(a[0] / d, _nonneg(a[0])), _mark(a[1] / d, _nonneg(a[0]))
            return z3.If(d >= 0, a[0] / d, a[1] / d), z3.If(d >= 0, a[1] / d, a[0] / d)
        if isinstance(expr, n.Power):
            lo, hi = self.inum(expr.base, box)
            lo_k, hi_k = _pow(lo, expr.exponent), _pow(hi, expr.exponent)
            if lo is hi:
                return lo_k, lo_k
            if expr.exponent % 2 or _nonneg(lo):
                return _mark(lo_k, _nonneg(lo)), _mark(hi_k, _nonneg(lo))
            low = z3.If(lo >= 0, lo_k, z3.If(hi <= 0, hi_k, z3.RealVal(0)))
            return _mark(low), _max(_mark(lo_k), _mark(hi_k))
        if isinstance(expr, n.Call):
            args = [self.inum(a, box) for a in expr.args]
            if expr.function == "abs":
                lo, hi = args[0]
                if lo is hi:
                    a = _mark(z3.If(lo >= 0, lo, -lo))
                    return a, a
                if _nonneg(lo):
                    return lo, hi
                return (z3.If(lo >= 0, lo, z3.If(hi <= 0, -hi, z3.RealVal(0))),
                        _max(z3.If(lo >= 0, lo, -lo), z3.If(hi >= 0, hi, -hi)))
            pick = _min if expr.function == "min" else _max
            lo, hi = args[0]
            exact = lo is hi
            for a in args[1:]:
                exact = exact and a[0] is a[1]
                lo, hi = pick(lo, a[0]), pick(hi, a[1])
            return (lo, lo) if exact else (lo, hi)
        if isinstance(expr, n.Any):
            return self.inum(expr.low, box)[0], self.inum(expr.high, box)[1]
        if isinstance(expr, n.IfThenElse):
            c = self.ibool(expr.condition, box)[0]  # exact by the parser's checks
            a, b = self.inum(expr.then, box), self.inum(expr.otherwise, box)
            if a[0] is a[1] and b[0] is b[1]:
                v = z3.If(c, a[0], b[0])
                return v, v
            return z3.If(c, a[0], b[0]), z3.If(c, a[1], b[1])
        raise TypeError(f"not a numeric node: {expr!r}")

    def ibool(self, expr: n.BoolExpr, box: dict[str, ZInterval]) -> tuple[z3.BoolRef, z3.BoolRef]:
        """(holds for every value in the box, holds for some value)."""
        if isinstance(expr, n.BoolConst):
            return z3.BoolVal(expr.value), z3.BoolVal(expr.value)
        if isinstance(expr, n.Compare):
            op, l, r = expr.op, self.inum(expr.left, box), self.inum(expr.right, box)
            if op in (">", ">="):
                op, l, r = {">": "<", ">=": "<="}[op], r, l
            if op == "<=":
                return l[1] <= r[0], l[0] <= r[1]
            if op == "<":
                return l[1] < r[0], l[0] < r[1]
            equal_all = z3.And(l[0] == l[1], r[0] == r[1], l[0] == r[0])
            overlap = z3.And(l[0] <= r[1], r[0] <= l[1])
            if op == "==":
                return equal_all, overlap
            return z3.Or(l[1] < r[0], r[1] < l[0]), z3.Not(equal_all)
        if isinstance(expr, n.Not):
            every, some = self.ibool(expr.operand, box)
            return z3.Not(some), z3.Not(every)
        if isinstance(expr, (n.And, n.Or)):
            parts = [self.ibool(o, box) for o in expr.operands]
            join = z3.And if isinstance(expr, n.And) else z3.Or
            return join([p[0] for p in parts]), join([p[1] for p in parts])
        if isinstance(expr, n.Implies):
            a, b = self.ibool(expr.left, box), self.ibool(expr.right, box)
            return z3.Or(z3.Not(a[1]), b[0]), z3.Or(z3.Not(a[0]), b[1])
        raise TypeError(f"temporal operators cannot be evaluated under the model: {expr!r}")


def _exact(a: ZInterval, b: ZInterval, lo: z3.ArithRef, hi: z3.ArithRef) -> ZInterval:
    return (lo, lo) if a[0] is a[1] and b[0] is b[1] else (lo, hi)


def _imul(a: ZInterval, b: ZInterval) -> ZInterval:
    if a[0] is a[1] and b[0] is b[1]:
        p = a[0] * b[0]
        return p, p
    if b[0] is b[1]:
        a, b = b, a
    if a[0] is a[1]:  # exact times interval: the sign of the exact factor decides
        k = a[0]
        if z3.is_rational_value(z3.simplify(k)):
            value = z3.simplify(k).as_fraction()
            if value >= 0:
                return _mark(k * b[0], _nonneg(b[0])), _mark(k * b[1], _nonneg(b[0]))
            return k * b[1], k * b[0]
        return z3.If(k >= 0, k * b[0], k * b[1]), z3.If(k >= 0, k * b[1], k * b[0])
    if _nonneg(a[0]) and _nonneg(b[0]):  # both intervals in [0, inf): monotone
        return _mark(a[0] * b[0]), _mark(a[1] * b[1])
    products = [a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]]
    lo, hi = products[0], products[0]
    for p in products[1:]:
        lo, hi = _min(lo, p), _max(hi, p)
    return lo, hi
