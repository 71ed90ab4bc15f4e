"""Compile the AST into batched torch predicates: a truth mask and a robustness margin.

Everything is evaluated on traces of shape (B, T) -- B independent rows (envs,
imagined trajectories, or candidate actions), T time steps -- with no Python
loop over rows or steps. The real step is the special case T = 1 where past
operators read the shield's monitor registers and ``next`` uses the model.

Semantics (the same in ``reference.py`` and ``compile_z3.py``):
  * robustness > 0 means satisfied (STL style); truth is computed exactly.
  * NaN anywhere a rule reads makes its robustness NaN (torch.minimum/maximum
    and amin/amax propagate NaN), and a NaN robustness is a violation. This is
    what stops ``not(nan > 2)`` from passing.
  * future windows that run past the end of the trace are padded with NaN, so
    overrunning the horizon is a violation, never an optimistic pass.
  * past windows before the first step use neutral padding (historically: true,
    once/prev: false), i.e. an episode starts with empty history.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from . import nodes as n
from . import torch_intervals as iv
from .analysis import is_step_evaluable

Pair = tuple[Tensor, Tensor]  # (truth bool (B, T), robustness float (B, T))


@dataclass
class Trace:
    """Inputs of one evaluation; ``bodies`` is filled with past-operator body values."""

    values: dict[str, Tensor]                 # signal/action name -> (B, T)
    shape: tuple[int, int]                    # (B, T)
    step: bool = False                        # real step: next() under the model
    history: dict[str, Pair] = field(default_factory=dict)  # key -> (B, K) registers
    bodies: dict[str, Pair] = field(default_factory=dict)
    successor: iv.IntervalEnv | None = None   # cached next-state box (step mode)


NumFn = Callable[[Trace], Tensor]
BoolFn = Callable[[Trace], Pair]


def register_size(node: n.Expr) -> int:
    """How many past body values a past operator needs to remember."""
    return 1 if isinstance(node, n.Prev) else node.high  # type: ignore[union-attr]


def past_nodes(rule: n.Rule) -> list[tuple[str, n.Expr]]:
    """Past operators of a rule with stable keys ``rule:i`` (pre-order index)."""
    found = [node for node in n.walk(rule.body) if n.is_past(node)]
    return [(f"{rule.name}:{i}", node) for i, node in enumerate(found)]


class TorchProgram:
    """All rules of a program compiled to closures over a ``Trace``."""

    def __init__(self, program: n.Program, dtype: torch.dtype = torch.float64) -> None:
        self.program, self.dtype = program, dtype
        self.inf = torch.tensor(float("inf"), dtype=dtype)
        self.nan = torch.tensor(float("nan"), dtype=dtype)
        self.registers: dict[str, int] = {}     # past-operator key -> register length
        self.neutral: dict[str, bool] = {}      # key -> truth before the first step
        self.step_evaluable = [is_step_evaluable(program, r.body) for r in program.rules]
        # Past operators are identified by object identity -> stable key "rule:i".
        self._keys = {id(node): key for rule in program.rules for key, node in past_nodes(rule)}
        self.rules = [self._bool(rule.body) for rule in program.rules]
        self._equations = {e.target: iv.compile_num(e.expr, dtype) for e in program.model}

    # ---- public ------------------------------------------------------------
    def evaluate(self, trace: Trace, rules: list[int] | None = None) -> tuple[Tensor, Tensor]:
        """Per-rule truth and robustness, each (B, R, T); NaN robustness -> violated.

        In step mode, rules that only the planner can check (always/eventually)
        report satisfied with robustness +inf.
        """
        indices = range(len(self.rules)) if rules is None else rules
        oks, robs = [], []
        for i in indices:
            if trace.step and not self.step_evaluable[i]:
                oks.append(torch.ones(trace.shape, dtype=torch.bool))
                robs.append(self.inf.expand(trace.shape))
                continue
            truth, rob = self.rules[i](trace)
            truth, rob = truth.expand(trace.shape), rob.expand(trace.shape)
            unknown = torch.isnan(rob)
            oks.append(truth & ~unknown)
            robs.append(torch.where(unknown, -self.inf, rob))
        if not oks:
            empty = torch.zeros((*trace.shape[:1], 0, trace.shape[1]))
            return empty.bool(), empty.to(self.dtype)
        return torch.stack(oks, 1), torch.stack(robs, 1)

    def compile_num(self, expr: n.NumExpr) -> NumFn:
        """A sub-expression on its own (used by projection to read bounds)."""
        return self._num(expr)

    def compile_bool(self, expr: n.BoolExpr) -> BoolFn:
        return self._bool(expr)

    # ---- numeric -----------------------------------------------------------
    def _num(self, expr: n.NumExpr) -> NumFn:
        if isinstance(expr, (n.Number, n.ConstantRef, n.LabelRef)):
            c = torch.tensor(float(expr.value), dtype=self.dtype)
            return lambda tr: c
        if isinstance(expr, (n.SignalRef, n.ActionRef)):
            name = expr.name
            return lambda tr: tr.values[name]
        if isinstance(expr, n.Negate):
            f = self._num(expr.operand)
            return lambda tr: -f(tr)
        if isinstance(expr, n.Binary):
            fa, fb = self._num(expr.left), self._num(expr.right)
            op = {"+": torch.add, "-": torch.sub, "*": torch.mul, "/": torch.div}[expr.op]
            return lambda tr: op(fa(tr), fb(tr))
        if isinstance(expr, n.Power):
            f, k = self._num(expr.base), expr.exponent
            return lambda tr: f(tr) ** k
        if isinstance(expr, n.Call):
            fs = [self._num(a) for a in expr.args]
            if expr.function == "abs":
                return lambda tr: fs[0](tr).abs()
            pick = torch.minimum if expr.function == "min" else torch.maximum

            def extreme(tr: Trace) -> Tensor:
                out = fs[0](tr)
                for f in fs[1:]:
                    out = pick(out, f(tr))
                return out
            return extreme
        if isinstance(expr, n.IfThenElse):
            fc = self._bool(expr.condition)
            ft, fo = self._num(expr.then), self._num(expr.otherwise)

            def choose(tr: Trace) -> Tensor:
                truth, rob = fc(tr)
                # An unknown (NaN) condition poisons the value, so the rule fails.
                return torch.where(torch.isnan(rob), self.nan, torch.where(truth, ft(tr), fo(tr)))
            return choose
        raise TypeError(f"any(...) outside a model equation: {expr!r}")

    # ---- boolean -----------------------------------------------------------
    def _bool(self, expr: n.BoolExpr) -> BoolFn:
        if isinstance(expr, n.BoolConst):
            t = torch.tensor(expr.value)
            r = self.inf if expr.value else -self.inf
            return lambda tr: (t, r)
        if isinstance(expr, n.Compare):
            return self._compare(expr)
        if isinstance(expr, n.Not):
            f = self._bool(expr.operand)
            return lambda tr: (lambda p: (~p[0], -p[1]))(f(tr))
        if isinstance(expr, (n.And, n.Or)):
            fs = [self._bool(o) for o in expr.operands]
            conj = isinstance(expr, n.And)

            def join(tr: Trace) -> Pair:
                truth, rob = fs[0](tr)
                for f in fs[1:]:
                    t2, r2 = f(tr)
                    truth = truth & t2 if conj else truth | t2
                    rob = torch.minimum(rob, r2) if conj else torch.maximum(rob, r2)
                return truth, rob
            return join
        if isinstance(expr, n.Implies):
            fa, fb = self._bool(expr.left), self._bool(expr.right)

            def implies(tr: Trace) -> Pair:
                (ta, ra), (tb, rb) = fa(tr), fb(tr)
                return ~ta | tb, torch.maximum(-ra, rb)
            return implies
        if n.is_past(expr):
            key = self._keys[id(expr)]
            return self._past(expr, key, self._bool(expr.body))  # type: ignore[union-attr]
        if isinstance(expr, n.Next):
            return self._next(expr)
        if isinstance(expr, n.Window):  # always / eventually
            f = self._bool(expr.body)
            low, high, every = expr.low, expr.high, expr.op == "always"
            return lambda tr: self._future(f(tr), tr, low, high, every)
        raise TypeError(f"not a boolean node: {expr!r}")

    def _compare(self, expr: n.Compare) -> BoolFn:
        fl, fr = self._num(expr.left), self._num(expr.right)
        op, m = expr.op, 0.5 if expr.discrete else 0.0
        truth_op = {"<": torch.lt, "<=": torch.le, ">": torch.gt, ">=": torch.ge,
                    "==": torch.eq, "!=": torch.ne}[op]

        def compare(tr: Trace) -> Pair:
            left, right = fl(tr), fr(tr)
            d = right - left
            if op == "<=":
                rob = d + m
            elif op == "<":
                rob = d - m
            elif op == ">=":
                rob = m - d
            elif op == ">":
                rob = -d - m
            elif op == "==":
                rob = m - d.abs()
            else:
                rob = d.abs() - m
            return truth_op(left, right), rob
        return compare

    def _past(self, expr: n.Expr, key: str, body: BoolFn) -> BoolFn:
        """historically/once/prev over a window of the trace plus the monitor register."""
        size = register_size(expr)
        low = 1 if isinstance(expr, n.Prev) else expr.low  # type: ignore[union-attr]
        every = isinstance(expr, n.Window) and expr.op == "historically"
        if size:
            self.registers[key] = size
            self.neutral[key] = every
        neutral_truth, neutral_rob = every, float("inf") if every else float("-inf")

        def past(tr: Trace) -> Pair:
            truth, rob = (x.expand(tr.shape) for x in body(tr))
            tr.bodies[key] = (truth, rob)
            if key in tr.history:
                prefix_t, prefix_r = tr.history[key]  # (B, size), oldest first
            else:
                prefix_t = torch.full((tr.shape[0], size), neutral_truth)
                prefix_r = torch.full((tr.shape[0], size), neutral_rob, dtype=self.dtype)
            t = torch.cat([prefix_t, truth], 1).unfold(1, size - low + 1, 1)[:, : tr.shape[1]]
            r = torch.cat([prefix_r, rob], 1).unfold(1, size - low + 1, 1)[:, : tr.shape[1]]
            if every:
                return t.all(-1), r.amin(-1)
            return t.any(-1), r.amax(-1)
        return past

    def _future(self, pair: Pair, tr: Trace, low: int, high: int, every: bool) -> Pair:
        """always/eventually over steps t+low..t+high, NaN-padded past the horizon."""
        truth, rob = (x.expand(tr.shape) for x in pair)
        pad_t = torch.zeros((tr.shape[0], high), dtype=torch.bool)
        pad_r = torch.full((tr.shape[0], high), float("nan"), dtype=self.dtype)
        t = torch.cat([truth, pad_t], 1).unfold(1, high - low + 1, 1)[:, low: low + tr.shape[1]]
        r = torch.cat([rob, pad_r], 1).unfold(1, high - low + 1, 1)[:, low: low + tr.shape[1]]
        if every:
            return t.all(-1), r.amin(-1)
        return t.any(-1), r.amax(-1)

    def _next(self, expr: n.Next) -> BoolFn:
        on_trace = self._bool(expr.body)
        under_model = (iv.compile_bool(expr.body, self.dtype) if self.program.model
                       and is_step_evaluable(self.program, expr) else None)

        def next_(tr: Trace) -> Pair:
            if tr.step and under_model is not None:
                every, _, lo, _ = under_model(self._successor(tr))
                return every, lo
            return self._future(on_trace(tr), tr, 1, 1, True)
        return next_

    def _successor(self, tr: Trace) -> iv.IntervalEnv:
        """The next-state box: model equations, else the declared range (sound)."""
        if tr.successor is not None:
            return tr.successor
        now = {k: (v, v) for k, v in tr.values.items()}
        box: iv.IntervalEnv = {}
        for s in self.program.signals:
            if s.name in self._equations:
                box[s.name] = self._equations[s.name](now)
            else:
                low, high = _domain(s.low, s.high, s.labels, self.dtype)
                box[s.name] = (low, high)
        for a in self.program.actions:  # the next action is unknown: its whole domain
            box[a.name] = _domain(a.low, a.high, a.labels, self.dtype)
        tr.successor = box
        return box


def _domain(low: float | None, high: float | None, labels: tuple, dtype: torch.dtype) -> iv.Interval:
    if labels:
        values = [v for _, v in labels]
        low = min(values) if low is None else low
        high = max(values) if high is None else high
    low = float("-inf") if low is None else low
    high = float("inf") if high is None else high
    return torch.tensor(low, dtype=dtype), torch.tensor(high, dtype=dtype)
