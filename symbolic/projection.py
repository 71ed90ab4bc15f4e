"""Projection of a vetoed continuous action onto the allowed set.

Three stages, cheapest first; every result is re-checked by the torch
evaluator (the single source of truth), so a stage can only fail, never lie:
  1. exact clamp, when every hard rule is bound-style:
     ``guard(state) -> action_k <= bound(state)`` (also >=, ==, abs(a) <= b,
     conjunctions), giving per-dimension bounds [low(s), high(s)];
  2. sample-and-filter: candidates around the proposal and across the box,
     keep the nearest allowed one (VSRL-style);
  3. z3 Optimize minimising the L1 distance (slow; a few rows at most).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import z3
from torch import Tensor

from . import nodes as n
from .compile_torch import NumFn, TorchProgram, Trace
from .compile_z3 import Env, Frame, Z3Compiler, domain, real


@dataclass
class Bound:
    guard: object | None   # compiled BoolFn or None (always active)
    dim: int
    upper: bool            # True: action <= bound, False: action >= bound
    value: NumFn
    strict: bool


def _reads_action(expr: n.Expr) -> bool:
    return any(isinstance(x, n.ActionRef) for x in n.walk(expr))


def _atoms(expr: n.BoolExpr, program: n.Program) -> list[tuple[str, bool, n.NumExpr, bool]] | None:
    """(action name, upper?, bound, strict) for a conjunction of bound atoms, else None."""
    if isinstance(expr, n.And):
        out = []
        for operand in expr.operands:
            atoms = _atoms(operand, program)
            if atoms is None:
                return None
            out += atoms
        return out
    if not isinstance(expr, n.Compare) or expr.op == "!=":
        return None
    left, right, op = expr.left, expr.right, expr.op
    if _reads_action(right) and not _reads_action(left):  # mirror "e <= a" into "a >= e"
        left, right = right, left
        op = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "=="}[op]
    if _reads_action(right):
        return None
    strict = op in ("<", ">")
    if isinstance(left, n.ActionRef) and not program.action(left.name).discrete:
        if op == "==":
            return [(left.name, True, right, False), (left.name, False, right, False)]
        return [(left.name, op in ("<", "<="), right, strict)]
    if (isinstance(left, n.Call) and left.function == "abs" and op in ("<", "<=")
            and isinstance(left.args[0], n.ActionRef)):
        name = left.args[0].name
        return [(name, True, right, strict), (name, False, n.Negate(right), strict)]
    return None


def extract_bounds(program: n.Program, compiled: TorchProgram) -> list[Bound] | None:
    """Bounds from every hard rule, or None if some hard rule is not bound-style."""
    bounds: list[Bound] = []
    for rule in program.rules:
        if rule.kind != "hard":
            continue
        body, guard = rule.body, None
        if any(n.is_past(x) or n.is_future(x) for x in n.walk(body)):
            return None
        if isinstance(body, n.Implies) and not _reads_action(body.left):
            guard, body = body.left, body.right
        atoms = _atoms(body, program)
        if atoms is None:
            return None
        for name, upper, value, strict in atoms:
            dim = program.action(name).index or 0
            bounds.append(Bound(compiled.compile_bool(guard) if guard is not None else None,
                                dim, upper, compiled.compile_num(value), strict))
    return bounds


def clamp(bounds: list[Bound], values: dict[str, Tensor], proposed: Tensor,
          low: Tensor, high: Tensor, dtype: torch.dtype) -> Tensor:
    """Clamp proposals (M, d) into [low(s), high(s)] from the active bounds."""
    rows = proposed.shape[0]
    trace = Trace({k: v.reshape(rows, 1) for k, v in values.items()}, (rows, 1), step=True)
    lo = low.to(dtype).expand(rows, -1).clone()
    hi = high.to(dtype).expand(rows, -1).clone()
    for b in bounds:
        value = b.value(trace).expand(rows, 1)[:, 0].to(dtype)
        if b.strict:  # step just inside a strict bound
            value = value - 1e-9 * value.abs().clamp(min=1.0) if b.upper else \
                value + 1e-9 * value.abs().clamp(min=1.0)
        if b.guard is not None:
            truth, rob = b.guard(trace)
            active = (truth | torch.isnan(rob)).expand(rows, 1)[:, 0]  # unknown guard: active
        else:
            active = torch.ones(rows, dtype=torch.bool)
        if b.upper:
            hi[:, b.dim] = torch.where(active, torch.minimum(hi[:, b.dim], value), hi[:, b.dim])
        else:
            lo[:, b.dim] = torch.where(active, torch.maximum(lo[:, b.dim], value), lo[:, b.dim])
    return torch.maximum(torch.minimum(proposed.to(dtype), hi), lo)


def samples(proposed: Tensor, low: Tensor, high: Tensor, count: int,
            generator: torch.Generator) -> Tensor:
    """(M, count, d) candidates: half near each proposal at several scales, half uniform."""
    rows, dims = proposed.shape
    width = torch.where(torch.isfinite(high - low), high - low, torch.ones_like(low))
    lo = torch.where(torch.isfinite(low), low, proposed.amin(0) - 10 * width)
    hi = torch.where(torch.isfinite(high), high, proposed.amax(0) + 10 * width)
    near = count // 2
    scales = torch.logspace(-3, 0, near, dtype=proposed.dtype)[None, :, None] * width
    local = proposed[:, None, :] + scales * torch.randn(rows, near, dims, generator=generator,
                                                        dtype=proposed.dtype)
    uniform = lo + (hi - lo) * torch.rand(rows, count - near, dims, generator=generator,
                                          dtype=proposed.dtype)
    return torch.maximum(torch.minimum(torch.cat([local, uniform], 1), hi), lo)


def z3_project(program: n.Program, state: dict[str, float], proposed: np.ndarray,
               timeout_ms: int = 50) -> np.ndarray | None:
    """Nearest allowed action in L1 (hard step rules without past operators), or None."""
    frame = Frame(program)
    acts = {a.name: z3.Real(a.name) for a in program.actions}
    pins = {k: real(v) for k, v in state.items() if np.isfinite(v)}
    if len(pins) != len(state):
        return None  # NaN state: nothing can be proven allowed
    env = Env(frame, 0, {**pins, **acts})
    compiler = Z3Compiler(program)
    opt = z3.Optimize()
    opt.set("timeout", timeout_ms)
    for rule in program.rules:
        if rule.kind == "hard":
            opt.add(compiler.rule(rule, env))
    cost = []
    for a in program.actions:
        opt.add(*domain(program, a.name, acts[a.name]))
        gap = z3.Real(f"gap_{a.name}")
        target = real(float(proposed[a.index or 0]))
        opt.add(gap >= acts[a.name] - target, gap >= target - acts[a.name])
        cost.append(gap)
    opt.add(*frame.constraints)
    opt.minimize(z3.Sum(cost) if cost else z3.RealVal(0))
    if opt.check() != z3.sat:
        return None
    model = opt.model()
    out = np.array(proposed, dtype=np.float64, copy=True)
    for a in program.actions:
        value = model.eval(acts[a.name], model_completion=True)
        if z3.is_algebraic_value(value):
            value = value.approx(12)
        out[a.index or 0] = float(value.as_fraction())
    return out
