"""Small static facts about expressions, shared by the parser and both compilers."""
from __future__ import annotations

from . import nodes as n

_ARITH = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
          "/": lambda a, b: a / b}


def nondeterministic_signals(program: n.Program) -> set[str]:
    """Names whose next value is not a single number under the model."""
    exact = {e.target for e in program.model if not has_any(e.expr)}
    return {s.name for s in program.signals if s.name not in exact} | {
        a.name for a in program.actions}


def is_step_evaluable(program: n.Program, body: n.Expr) -> bool:
    """True if the real-step shield can evaluate this formula.

    Past operators use monitor state; ``next`` needs a declared model and a body
    without temporal operators. ``always``/``eventually`` belong to the planner.
    """
    for node in n.walk(body):
        if isinstance(node, n.Window) and node.op in n.FUTURE_WINDOWS:
            return False
        if isinstance(node, n.Next):
            if not program.model:
                return False
            if any(n.is_past(i) or n.is_future(i) for i in n.walk(node.body)):
                return False
    return True


def fold(expr: n.Expr) -> float | None:
    """Value of a constant numeric expression, or None if it reads signals/actions."""
    if isinstance(expr, n.Number):
        return expr.value
    if isinstance(expr, (n.ConstantRef, n.LabelRef)):
        return float(expr.value)
    if isinstance(expr, n.Negate):
        inner = fold(expr.operand)
        return None if inner is None else -inner
    if isinstance(expr, n.Binary):
        a, b = fold(expr.left), fold(expr.right)
        if a is None or b is None or (expr.op == "/" and b == 0):
            return None
        return _ARITH[expr.op](a, b)
    if isinstance(expr, n.Power):
        base = fold(expr.base)
        return None if base is None else base ** expr.exponent
    if isinstance(expr, n.Call):
        args = [fold(a) for a in expr.args]
        if any(a is None for a in args):
            return None
        return abs(args[0]) if expr.function == "abs" else (min if expr.function == "min"
                                                             else max)(args)
    return None


def has_any(expr: n.Expr) -> bool:
    return any(isinstance(node, n.Any) for node in n.walk(expr))


def reads(expr: n.Expr, names: set[str]) -> bool:
    return any(isinstance(node, (n.SignalRef, n.ActionRef)) and node.name in names
               for node in n.walk(expr))
