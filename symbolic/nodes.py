"""The typed AST of the rule language: frozen dataclasses with source spans.

One AST, compiled two ways (``compile_torch`` for batched evaluation, ``compile_z3``
for static checks). Spans are excluded from equality so that
``parse(pretty(parse(text))) == parse(text)`` holds even though positions move.

Expressions are either numeric (``NumExpr``) or boolean (``BoolExpr``); the
parser checks the types, so compilers can trust them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Union


@dataclass(frozen=True)
class Span:
    """1-based line/column of the first character of a construct."""

    line: int = 0
    column: int = 0


def _span() -> Span:
    return field(default_factory=Span, compare=False, repr=False)  # type: ignore[return-value]


# ---- numeric expressions ---------------------------------------------------
@dataclass(frozen=True)
class Number:
    value: float
    span: Span = _span()


@dataclass(frozen=True)
class SignalRef:
    """A named observation signal (state) at the current step."""

    name: str
    span: Span = _span()


@dataclass(frozen=True)
class ActionRef:
    """A named action (discrete label variable or continuous dimension)."""

    name: str
    span: Span = _span()


@dataclass(frozen=True)
class ConstantRef:
    """A declared numeric constant; ``value`` is already folded."""

    name: str
    value: float
    span: Span = _span()


@dataclass(frozen=True)
class LabelRef:
    """An enum or action label such as ``lava`` or ``forward``."""

    name: str
    value: int
    span: Span = _span()


@dataclass(frozen=True)
class Negate:
    operand: "NumExpr"
    span: Span = _span()


@dataclass(frozen=True)
class Binary:
    op: str  # one of + - * /
    left: "NumExpr"
    right: "NumExpr"
    span: Span = _span()


@dataclass(frozen=True)
class Power:
    base: "NumExpr"
    exponent: int  # a natural-number literal, so interval bounds stay exact
    span: Span = _span()


@dataclass(frozen=True)
class Call:
    function: str  # abs | min | max
    args: tuple["NumExpr", ...]
    span: Span = _span()


@dataclass(frozen=True)
class Any:
    """A nondeterministic value in [low, high]; only allowed in ``model:`` equations."""

    low: "NumExpr"
    high: "NumExpr"
    span: Span = _span()


@dataclass(frozen=True)
class IfThenElse:
    condition: "BoolExpr"
    then: "NumExpr"
    otherwise: "NumExpr"
    span: Span = _span()


# ---- boolean expressions ---------------------------------------------------
@dataclass(frozen=True)
class BoolConst:
    value: bool
    span: Span = _span()


@dataclass(frozen=True)
class Compare:
    op: str  # one of < <= > >= == !=
    left: "NumExpr"
    right: "NumExpr"
    # Both sides integer-valued (enum signals, discrete actions, labels): the
    # robustness then uses a 0.5 margin so its sign matches the truth value.
    discrete: bool = False
    span: Span = _span()


@dataclass(frozen=True)
class Not:
    operand: "BoolExpr"
    span: Span = _span()


@dataclass(frozen=True)
class And:
    operands: tuple["BoolExpr", ...]
    span: Span = _span()


@dataclass(frozen=True)
class Or:
    operands: tuple["BoolExpr", ...]
    span: Span = _span()


@dataclass(frozen=True)
class Implies:
    left: "BoolExpr"
    right: "BoolExpr"
    span: Span = _span()


@dataclass(frozen=True)
class Prev:
    """Body held at the previous step; false at the first step of an episode."""

    body: "BoolExpr"
    span: Span = _span()


@dataclass(frozen=True)
class Next:
    """Body holds at the next step (imagined trace, or the declared model at the real step)."""

    body: "BoolExpr"
    span: Span = _span()


PAST_WINDOWS = ("historically", "once")
FUTURE_WINDOWS = ("always", "eventually")


@dataclass(frozen=True)
class Window:
    """Bounded temporal operator over steps [low, high] (past: t-high..t-low)."""

    op: str  # always | eventually | historically | once
    low: int
    high: int
    body: "BoolExpr"
    span: Span = _span()


NumExpr = Union[Number, SignalRef, ActionRef, ConstantRef, LabelRef, Negate, Binary,
                Power, Call, Any, IfThenElse]
BoolExpr = Union[BoolConst, Compare, Not, And, Or, Implies, Prev, Next, Window]
Expr = Union[NumExpr, BoolExpr]
NUM_TYPES = (Number, SignalRef, ActionRef, ConstantRef, LabelRef, Negate, Binary, Power,
             Call, Any, IfThenElse)
BOOL_TYPES = (BoolConst, Compare, Not, And, Or, Implies, Prev, Next, Window)


# ---- declarations ----------------------------------------------------------
@dataclass(frozen=True)
class Signal:
    """``name = obs[.key][i, j, ...] [in [low, high]] [enum {...}]``."""

    name: str
    key: str | None  # dict-observation key, None for array observations
    index: tuple[int, ...]
    low: float | None = None
    high: float | None = None
    labels: tuple[tuple[str, int], ...] = ()  # enum labels; non-empty => integer-valued
    span: Span = _span()


@dataclass(frozen=True)
class Action:
    """A discrete label variable (``labels``) or a continuous dimension (``low``/``high``)."""

    name: str
    index: int | None  # component of a MultiDiscrete/Box action; None = the whole Discrete action
    labels: tuple[tuple[str, int], ...] = ()
    low: float | None = None
    high: float | None = None
    span: Span = _span()

    @property
    def discrete(self) -> bool:
        return bool(self.labels)


@dataclass(frozen=True)
class Constant:
    name: str
    value: float
    span: Span = _span()


@dataclass(frozen=True)
class Equation:
    """``name' = expr``: the next value of a state signal under the declared model."""

    target: str
    expr: NumExpr
    span: Span = _span()


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str  # hard | soft
    description: str
    body: BoolExpr
    span: Span = _span()


@dataclass(frozen=True)
class Fallback:
    """``ranked`` (most robust allowed action) or a constant action (labels or numbers)."""

    ranked: bool
    values: tuple[float, ...] = ()
    text: tuple[str, ...] = ()  # the source spelling of each value, for printing
    span: Span = _span()


@dataclass(frozen=True)
class Program:
    signals: tuple[Signal, ...]
    actions: tuple[Action, ...]
    constants: tuple[Constant, ...]
    model: tuple[Equation, ...]
    invariant: BoolExpr | None
    rules: tuple[Rule, ...]
    fallback: Fallback | None
    path: str = field(default="<string>", compare=False)

    def signal(self, name: str) -> Signal:
        return next(s for s in self.signals if s.name == name)

    def action(self, name: str) -> Action:
        return next(a for a in self.actions if a.name == name)


def children(node: Expr) -> tuple[Expr, ...]:
    """Direct sub-expressions, in source order."""
    if isinstance(node, (Negate,)):
        return (node.operand,)
    if isinstance(node, Not):
        return (node.operand,)
    if isinstance(node, (Binary, Implies)):
        return (node.left, node.right)
    if isinstance(node, Compare):
        return (node.left, node.right)
    if isinstance(node, Power):
        return (node.base,)
    if isinstance(node, Call):
        return node.args
    if isinstance(node, Any):
        return (node.low, node.high)
    if isinstance(node, IfThenElse):
        return (node.condition, node.then, node.otherwise)
    if isinstance(node, (And, Or)):
        return node.operands
    if isinstance(node, (Prev, Next, Window)):
        return (node.body,)
    return ()


def walk(node: Expr) -> Iterator[Expr]:
    """Pre-order traversal; the order defines stable keys for monitor registers."""
    yield node
    for child in children(node):
        yield from walk(child)


def is_past(node: Expr) -> bool:
    return isinstance(node, Prev) or (isinstance(node, Window) and node.op in PAST_WINDOWS)


def is_future(node: Expr) -> bool:
    return isinstance(node, Next) or (isinstance(node, Window) and node.op in FUTURE_WINDOWS)
