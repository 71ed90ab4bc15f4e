"""A deliberately plain evaluator: one state at a time, recursive, pure Python floats.

It exists to test ``compile_torch`` (which must agree with it everywhere) and
is too slow for anything else. Semantics are spelled out once more here:
robustness > 0 means satisfied; NaN robustness is a violation; future steps
past the end of the trace are NaN; past steps before the start are neutral.
"""
from __future__ import annotations

import math

from . import nodes as n
from .analysis import is_step_evaluable

INF = math.inf
NAN = math.nan
Frame = dict[str, float]   # name -> value at one step


def _min(a: float, b: float) -> float:
    return NAN if math.isnan(a) or math.isnan(b) else min(a, b)


def _max(a: float, b: float) -> float:
    return NAN if math.isnan(a) or math.isnan(b) else max(a, b)


def number(expr: n.NumExpr, frame: Frame) -> float:
    if isinstance(expr, (n.Number, n.ConstantRef, n.LabelRef)):
        return float(expr.value)
    if isinstance(expr, (n.SignalRef, n.ActionRef)):
        return frame.get(expr.name, NAN)
    if isinstance(expr, n.Negate):
        return -number(expr.operand, frame)
    if isinstance(expr, n.Binary):
        a, b = number(expr.left, frame), number(expr.right, frame)
        if expr.op == "/":
            if b == 0:
                return NAN if a == 0 or math.isnan(a) else math.copysign(INF, a) * math.copysign(1, b)
            return a / b
        return a + b if expr.op == "+" else a - b if expr.op == "-" else a * b
    if isinstance(expr, n.Power):
        return number(expr.base, frame) ** expr.exponent
    if isinstance(expr, n.Call):
        args = [number(a, frame) for a in expr.args]
        if expr.function == "abs":
            return abs(args[0])
        out = args[0]
        for a in args[1:]:
            out = _min(out, a) if expr.function == "min" else _max(out, a)
        return out
    if isinstance(expr, n.IfThenElse):
        truth, rob = formula(expr.condition, [frame], 0)
        if math.isnan(rob):
            return NAN
        return number(expr.then if truth else expr.otherwise, frame)
    raise TypeError(f"unexpected node {expr!r}")


def _compare(op: str, discrete: bool, a: float, b: float) -> tuple[bool, float]:
    m = 0.5 if discrete else 0.0
    d = b - a
    table = {"<=": (a <= b, d + m), "<": (a < b, d - m), ">=": (a >= b, m - d),
             ">": (a > b, -d - m), "==": (a == b, m - abs(d)), "!=": (a != b, abs(d) - m)}
    return table[op]


def formula(expr: n.BoolExpr, trace: list[Frame], t: int, program: n.Program | None = None
            ) -> tuple[bool, float]:
    """(truth, robustness) of ``expr`` at step t of ``trace``.

    With ``program`` given (step semantics), ``next`` uses the model's
    intervals, as the real-step shield does.
    """
    if isinstance(expr, n.BoolConst):
        return expr.value, INF if expr.value else -INF
    if isinstance(expr, n.Compare):
        frame = trace[t] if 0 <= t < len(trace) else {}
        return _compare(expr.op, expr.discrete, number(expr.left, frame), number(expr.right, frame))
    if isinstance(expr, n.Not):
        truth, rob = formula(expr.operand, trace, t, program)
        return not truth, -rob
    if isinstance(expr, (n.And, n.Or)):
        results = [formula(o, trace, t, program) for o in expr.operands]
        conj = isinstance(expr, n.And)
        truth = all(r[0] for r in results) if conj else any(r[0] for r in results)
        rob = results[0][1]
        for r in results[1:]:
            rob = _min(rob, r[1]) if conj else _max(rob, r[1])
        return truth, rob
    if isinstance(expr, n.Implies):
        (ta, ra), (tb, rb) = formula(expr.left, trace, t, program), formula(expr.right, trace, t, program)
        return (not ta) or tb, _max(-ra, rb)
    if isinstance(expr, n.Next) and program is not None and program.model \
            and is_step_evaluable(program, expr):
        every, _, low, _ = interval_formula(expr.body, successor(program, trace[t]))
        return every, low
    if isinstance(expr, (n.Next, n.Prev, n.Window)):
        if isinstance(expr, n.Next):
            op, low, high = "always", 1, 1
        elif isinstance(expr, n.Prev):
            op, low, high = "prev", 1, 1
        else:
            op, low, high = expr.op, expr.low, expr.high
        past = op in ("historically", "once", "prev")
        every = op in ("always", "historically")
        truth, rob = every, INF if every else -INF
        for k in range(low, high + 1):
            s = t - k if past else t + k
            if s < 0:  # before the first step: neutral (prev/once false, historically true)
                continue
            if s >= len(trace):
                tk, rk = False, NAN  # past the horizon: unknown, so a violation
            else:
                tk, rk = formula(expr.body, trace, s, program)
            truth = (truth and tk) if every else (truth or tk)
            rob = _min(rob, rk) if every else _max(rob, rk)
        return truth, rob
    raise TypeError(f"unexpected node {expr!r}")


# ---- intervals (next under the model) --------------------------------------
Box = dict[str, tuple[float, float]]


def successor(program: n.Program, frame: Frame) -> Box:
    now = {k: (v, v) for k, v in frame.items()}
    equations = {e.target: e.expr for e in program.model}
    box: Box = {}
    for d in (*program.signals, *program.actions):
        if isinstance(d, n.Signal) and d.name in equations:
            box[d.name] = interval(equations[d.name], now)
        else:
            values = [v for _, v in d.labels]
            low = d.low if d.low is not None else (min(values) if values else -INF)
            high = d.high if d.high is not None else (max(values) if values else INF)
            box[d.name] = (low, high)
    return box


def interval(expr: n.NumExpr, box: Box) -> tuple[float, float]:
    if isinstance(expr, (n.Number, n.ConstantRef, n.LabelRef)):
        return float(expr.value), float(expr.value)
    if isinstance(expr, (n.SignalRef, n.ActionRef)):
        return box.get(expr.name, (NAN, NAN))
    if isinstance(expr, n.Negate):
        lo, hi = interval(expr.operand, box)
        return -hi, -lo
    if isinstance(expr, n.Binary):
        (a, b), (c, d) = interval(expr.left, box), interval(expr.right, box)
        if expr.op == "+":
            return a + c, b + d
        if expr.op == "-":
            return a - d, b - c
        if expr.op == "*":
            p = [a * c, a * d, b * c, b * d]
            return (NAN, NAN) if any(map(math.isnan, p)) else (min(p), max(p))
        return (a / c, b / c) if c >= 0 else (b / c, a / c)
    if isinstance(expr, n.Power):
        lo, hi = interval(expr.base, box)
        k = expr.exponent
        if k % 2:
            return lo ** k, hi ** k
        low = lo ** k if lo >= 0 else hi ** k if hi <= 0 else 0.0
        return low, max(lo ** k, hi ** k)
    if isinstance(expr, n.Call):
        args = [interval(a, box) for a in expr.args]
        if expr.function == "abs":
            lo, hi = args[0]
            return (lo if lo >= 0 else -hi if hi <= 0 else 0.0), max(abs(lo), abs(hi))
        pick = _min if expr.function == "min" else _max
        lo, hi = args[0]
        for a in args[1:]:
            lo, hi = pick(lo, a[0]), pick(hi, a[1])
        return lo, hi
    if isinstance(expr, n.Any):
        return interval(expr.low, box)[0], interval(expr.high, box)[1]
    if isinstance(expr, n.IfThenElse):
        chosen = expr.then if interval_formula(expr.condition, box)[0] else expr.otherwise
        return interval(chosen, box)
    raise TypeError(f"unexpected node {expr!r}")


def interval_formula(expr: n.BoolExpr, box: Box) -> tuple[bool, bool, float, float]:
    """(holds for all values in the box, for some, robustness low, high)."""
    if isinstance(expr, n.BoolConst):
        r = INF if expr.value else -INF
        return expr.value, expr.value, r, r
    if isinstance(expr, n.Compare):
        op, l, r = expr.op, interval(expr.left, box), interval(expr.right, box)
        if op in (">", ">="):
            op, l, r = {">": "<", ">=": "<="}[op], r, l
        if op in ("<", "<="):
            m = (0.5 if op == "<=" else -0.5) if expr.discrete else 0.0
            every = l[1] <= r[0] if op == "<=" else l[1] < r[0]
            some = l[0] <= r[1] if op == "<=" else l[0] < r[1]
            return every, some, r[0] - l[1] + m, r[1] - l[0] + m
        d_lo, d_hi = r[0] - l[1], r[1] - l[0]
        a_lo = d_lo if d_lo >= 0 else -d_hi if d_hi <= 0 else 0.0
        a_hi = _max(abs(d_lo), abs(d_hi))
        if math.isnan(d_lo) or math.isnan(d_hi):
            a_lo = NAN
        equal_all = l[0] == l[1] and r[0] == r[1] and l[0] == r[0]
        overlap = l[0] <= r[1] and r[0] <= l[1]
        m = 0.5 if expr.discrete else 0.0
        if op == "==":
            return equal_all, overlap, -a_hi + m, -a_lo + m
        return (l[1] < r[0]) or (r[1] < l[0]), not equal_all, a_lo - m, a_hi - m
    if isinstance(expr, n.Not):
        every, some, lo, hi = interval_formula(expr.operand, box)
        return not some, not every, -hi, -lo
    if isinstance(expr, n.Implies):
        return interval_formula(n.Or((n.Not(expr.left), expr.right)), box)
    if isinstance(expr, (n.And, n.Or)):
        parts = [interval_formula(o, box) for o in expr.operands]
        conj = isinstance(expr, n.And)
        join, pick = (all, _min) if conj else (any, _max)
        lo, hi = parts[0][2], parts[0][3]
        for p in parts[1:]:
            lo, hi = pick(lo, p[2]), pick(hi, p[3])
        return join(p[0] for p in parts), join(p[1] for p in parts), lo, hi
    raise TypeError(f"unexpected node {expr!r}")


def rule_ok(rule: n.Rule, trace: list[Frame], t: int, program: n.Program | None = None) -> bool:
    """The rule holds at step t (NaN robustness counts as a violation)."""
    truth, rob = formula(rule.body, trace, t, program)
    return bool(truth) and not math.isnan(rob)
