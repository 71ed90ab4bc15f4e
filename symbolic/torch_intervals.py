"""Interval evaluation in torch: ``next(...)`` at the real step under the declared model.

The model's ``any(low, high)`` terms make the next state a box, not a point. We
evaluate the ``next`` body over that box with interval arithmetic, which is sound
(a formula reported "holds for all" really does) and exact when each uncertain
value enters the formula monotonically, as in braking-distance invariants.
``compile_z3`` encodes exactly the same interval rules, so the static checks
reason about what the shield will actually do.

Shapes: every bound is a tensor broadcastable to (B, T).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from . import nodes as n

Interval = tuple[Tensor, Tensor]            # (low, high)
Quad = tuple[Tensor, Tensor, Tensor, Tensor]  # (holds for all, holds for some, rob low, rob high)
IntervalEnv = dict[str, Interval]
NumFn = Callable[[IntervalEnv], Interval]
BoolFn = Callable[[IntervalEnv], Quad]


def _t(value: float, dtype: torch.dtype) -> Tensor:
    return torch.tensor(value, dtype=dtype)


def interval_abs(lo: Tensor, hi: Tensor) -> Interval:
    zero = torch.zeros((), dtype=lo.dtype)
    low = torch.where(lo >= 0, lo, torch.where(hi <= 0, -hi, zero))
    return low, torch.maximum(lo.abs(), hi.abs())


def interval_mul(a: Interval, b: Interval) -> Interval:
    if a[0] is a[1] and b[0] is b[1]:  # both exact: one product
        p = a[0] * b[0]
        return p, p
    products = torch.stack(torch.broadcast_tensors(a[0] * b[0], a[0] * b[1], a[1] * b[0],
                                                   a[1] * b[1]))
    return products.amin(0), products.amax(0)


def interval_power(a: Interval, k: int) -> Interval:
    lo_k, hi_k = a[0] ** k, a[1] ** k
    if k % 2 == 1:
        return lo_k, hi_k
    zero = torch.zeros((), dtype=lo_k.dtype)
    low = torch.where(a[0] >= 0, lo_k, torch.where(a[1] <= 0, hi_k, zero))
    return low, torch.maximum(lo_k, hi_k)


def compile_num(expr: n.NumExpr, dtype: torch.dtype) -> NumFn:
    """Numeric expression -> function of an interval environment."""
    if isinstance(expr, (n.Number, n.ConstantRef, n.LabelRef)):
        c = _t(float(expr.value), dtype)
        return lambda env: (c, c)
    if isinstance(expr, (n.SignalRef, n.ActionRef)):
        name = expr.name
        return lambda env: env[name]
    if isinstance(expr, n.Negate):
        f = compile_num(expr.operand, dtype)
        return lambda env: (lambda a: (-a[1], -a[0]))(f(env))
    if isinstance(expr, n.Binary):
        fa, fb = compile_num(expr.left, dtype), compile_num(expr.right, dtype)
        if expr.op == "+":
            return lambda env: (lambda a, b: (a[0] + b[0], a[1] + b[1]))(fa(env), fb(env))
        if expr.op == "-":
            return lambda env: (lambda a, b: (a[0] - b[1], a[1] - b[0]))(fa(env), fb(env))
        if expr.op == "*":
            return lambda env: interval_mul(fa(env), fb(env))

        def divide(env: IntervalEnv) -> Interval:  # the parser made the divisor exact
            a, d = fa(env), fb(env)[0]
            return (torch.where(d >= 0, a[0] / d, a[1] / d),
                    torch.where(d >= 0, a[1] / d, a[0] / d))
        return divide
    if isinstance(expr, n.Power):
        f, k = compile_num(expr.base, dtype), expr.exponent
        return lambda env: interval_power(f(env), k)
    if isinstance(expr, n.Call):
        fs = [compile_num(a, dtype) for a in expr.args]
        if expr.function == "abs":
            return lambda env: interval_abs(*fs[0](env))
        pick = torch.minimum if expr.function == "min" else torch.maximum

        def extreme(env: IntervalEnv) -> Interval:
            values = [f(env) for f in fs]
            lo, hi = values[0]
            for v in values[1:]:
                lo, hi = pick(lo, v[0]), pick(hi, v[1])
            return lo, hi
        return extreme
    if isinstance(expr, n.Any):
        flo, fhi = compile_num(expr.low, dtype), compile_num(expr.high, dtype)
        return lambda env: (flo(env)[0], fhi(env)[1])
    if isinstance(expr, n.IfThenElse):
        fc = compile_bool(expr.condition, dtype)
        ft, fo = compile_num(expr.then, dtype), compile_num(expr.otherwise, dtype)

        def choose(env: IntervalEnv) -> Interval:
            c = fc(env)[0]  # the parser made the condition exact, so "for all" is its value
            a, b = ft(env), fo(env)
            return torch.where(c, a[0], b[0]), torch.where(c, a[1], b[1])
        return choose
    raise TypeError(f"not a numeric node: {expr!r}")


def compare(op: str, discrete: bool, l: Interval, r: Interval) -> Quad:
    """Interval comparison; the margin m keeps integer robustness signs right."""
    if op in (">", ">="):
        op, l, r = {">": "<", ">=": "<="}[op], r, l
    if op in ("<", "<="):
        m = (0.5 if op == "<=" else -0.5) if discrete else 0.0
        if op == "<=":
            every, some = l[1] <= r[0], l[0] <= r[1]
        else:
            every, some = l[1] < r[0], l[0] < r[1]
        return every, some, r[0] - l[1] + m, r[1] - l[0] + m
    d_lo, d_hi = interval_abs(r[0] - l[1], r[1] - l[0])
    equal_all = (l[0] == l[1]) & (r[0] == r[1]) & (l[0] == r[0])
    overlap = (l[0] <= r[1]) & (r[0] <= l[1])
    m = 0.5 if discrete else 0.0
    if op == "==":
        return equal_all, overlap, -d_hi + m, -d_lo + m
    return (l[1] < r[0]) | (r[1] < l[0]), ~equal_all, d_lo - m, d_hi - m


def _not(q: Quad) -> Quad:
    return ~q[1], ~q[0], -q[3], -q[2]


def _join(quads: list[Quad], conjunction: bool) -> Quad:
    every, some, lo, hi = quads[0]
    for q in quads[1:]:
        if conjunction:
            every, some = every & q[0], some & q[1]
            lo, hi = torch.minimum(lo, q[2]), torch.minimum(hi, q[3])
        else:
            every, some = every | q[0], some | q[1]
            lo, hi = torch.maximum(lo, q[2]), torch.maximum(hi, q[3])
    return every, some, lo, hi


def compile_bool(expr: n.BoolExpr, dtype: torch.dtype) -> BoolFn:
    """Boolean expression (no temporal operators) -> interval truth and robustness."""
    if isinstance(expr, n.BoolConst):
        t = torch.tensor(expr.value)
        r = _t(float("inf") if expr.value else float("-inf"), dtype)
        return lambda env: (t, t, r, r)
    if isinstance(expr, n.Compare):
        fl, fr = compile_num(expr.left, dtype), compile_num(expr.right, dtype)
        op, discrete = expr.op, expr.discrete
        return lambda env: compare(op, discrete, fl(env), fr(env))
    if isinstance(expr, n.Not):
        f = compile_bool(expr.operand, dtype)
        return lambda env: _not(f(env))
    if isinstance(expr, (n.And, n.Or)):
        fs = [compile_bool(o, dtype) for o in expr.operands]
        conjunction = isinstance(expr, n.And)
        return lambda env: _join([f(env) for f in fs], conjunction)
    if isinstance(expr, n.Implies):
        fa, fb = compile_bool(expr.left, dtype), compile_bool(expr.right, dtype)
        return lambda env: _join([_not(fa(env)), fb(env)], False)
    raise TypeError(f"temporal operators cannot be evaluated under the model: {expr!r}")
