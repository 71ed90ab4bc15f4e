"""Pretty printer: AST -> canonical rules text that parses back to the same AST.

Sub-expressions are parenthesised whenever they are not atoms, so the printer
needs no precedence table and round trips are exact (parentheses create no
nodes). Floats print with ``repr`` so they read back bit-identical.
"""
from __future__ import annotations

from . import nodes as n


def number(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _atom(expr: n.Expr) -> str:
    text = expression(expr)
    simple = isinstance(expr, (n.Number, n.SignalRef, n.ActionRef, n.ConstantRef, n.LabelRef,
                               n.BoolConst, n.Call, n.Any, n.IfThenElse, n.Prev, n.Next,
                               n.Window))
    if isinstance(expr, n.Number) and expr.value < 0:
        simple = False
    return text if simple else f"({text})"


def expression(expr: n.Expr) -> str:
    """One expression in source syntax."""
    if isinstance(expr, n.Number):
        return number(expr.value)
    if isinstance(expr, (n.SignalRef, n.ActionRef, n.ConstantRef, n.LabelRef)):
        return expr.name
    if isinstance(expr, n.BoolConst):
        return "true" if expr.value else "false"
    if isinstance(expr, n.Negate):
        return "-" + _atom(expr.operand)
    if isinstance(expr, n.Binary):
        return f"{_atom(expr.left)} {expr.op} {_atom(expr.right)}"
    if isinstance(expr, n.Power):
        return f"{_atom(expr.base)}^{expr.exponent}"
    if isinstance(expr, n.Call):
        return f"{expr.function}({', '.join(expression(a) for a in expr.args)})"
    if isinstance(expr, n.Any):
        return f"any({expression(expr.low)}, {expression(expr.high)})"
    if isinstance(expr, n.IfThenElse):
        return (f"(if {expression(expr.condition)} then {expression(expr.then)} "
                f"else {expression(expr.otherwise)})")
    if isinstance(expr, n.Compare):
        return f"{_atom(expr.left)} {expr.op} {_atom(expr.right)}"
    if isinstance(expr, n.Not):
        return "not " + _atom(expr.operand)
    if isinstance(expr, n.And):
        return " and ".join(_atom(o) for o in expr.operands)
    if isinstance(expr, n.Or):
        return " or ".join(_atom(o) for o in expr.operands)
    if isinstance(expr, n.Implies):
        return f"{_atom(expr.left)} -> {_atom(expr.right)}"
    if isinstance(expr, n.Prev):
        return f"prev({expression(expr.body)})"
    if isinstance(expr, n.Next):
        return f"next({expression(expr.body)})"
    if isinstance(expr, n.Window):
        return f"{expr.op}[{expr.low},{expr.high}]({expression(expr.body)})"
    raise TypeError(f"not an expression node: {expr!r}")


def _labels(labels: tuple[tuple[str, int], ...]) -> str:
    return "{" + ", ".join(f"{name}={value}" for name, value in labels) + "}"


def program(prog: n.Program) -> str:
    """A whole rules file in canonical layout."""
    out: list[str] = []
    if prog.constants:
        out.append("constants:")
        out += [f"  {c.name} = {number(c.value)}" for c in prog.constants]
    if prog.signals:
        out.append("signals:")
        for s in prog.signals:
            ref = "obs" + (f".{s.key}" if s.key else "")
            if s.index:
                ref += "[" + ", ".join(str(i) for i in s.index) + "]"
            line = f"  {s.name} = {ref}"
            if s.low is not None:
                line += f" in [{number(s.low)}, {number(s.high)}]"  # type: ignore[arg-type]
            if s.labels:
                line += " enum " + _labels(s.labels)
            out.append(line)
    if prog.actions:
        out.append("actions:")
        for a in prog.actions:
            if a.discrete and a.index is None:
                out.append(f"  {a.name} : {_labels(a.labels)}")
            elif a.discrete:
                out.append(f"  {a.name} = action[{a.index}] : {_labels(a.labels)}")
            else:
                out.append(f"  {a.name} = action[{a.index}] in [{number(a.low)}, "  # type: ignore[arg-type]
                           f"{number(a.high)}]")  # type: ignore[arg-type]
    if prog.model:
        out.append("model:")
        out += [f"  {e.target}' = {expression(e.expr)}" for e in prog.model]
    if prog.invariant is not None:
        out.append(f"invariant: {expression(prog.invariant)}")
    for r in prog.rules:
        description = f' "{r.description}"' if r.description else ""
        out.append(f"rule {r.name} ({r.kind}){description}:\n  {expression(r.body)}")
    if prog.fallback is not None:
        f = prog.fallback
        if f.ranked:
            out.append("fallback: ranked")
        elif len(f.text) == 1 and not f.text[0][0].isdigit() and not f.text[0][0] == "-":
            out.append(f"fallback: {f.text[0]}")
        else:
            out.append("fallback: [" + ", ".join(f.text) + "]")
    return "\n".join(out) + "\n"
