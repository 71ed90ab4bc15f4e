"""Bind declared signals and actions to an env's native observation/action format.

Observations arrive batched on the leading axes: an array (*lead, *obs_shape)
or a dict {key: (*lead, ...)}; numpy or torch. Actions are env-native: int
(*lead,) for Discrete, (*lead, k) ints for MultiDiscrete, floats (*lead, d) for
Box. ``lead`` is (N,) at the real step and (N, T) for trajectories.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any as AnyType

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from . import nodes as n
from .errors import suggest


@dataclass(frozen=True)
class ActionLayout:
    """How declared actions map onto the env's action array."""

    kind: str                     # "discrete" | "multi" | "box" | "none"
    choices: np.ndarray | None    # (C, *action_shape) every discrete action, in order
    low: np.ndarray | None = None   # (d,) box bounds: declared range within the space
    high: np.ndarray | None = None
    start: int = 0                # Discrete start, so column j of masks is action start + j


def layout(program: n.Program, action_space: spaces.Space | None) -> ActionLayout:
    """Action layout from the space when given, else inferred from the declarations."""
    acts = program.actions
    if isinstance(action_space, spaces.Discrete):
        start = int(action_space.start)
        return ActionLayout("discrete", np.arange(start, start + int(action_space.n)), start=start)
    if isinstance(action_space, spaces.MultiDiscrete):
        nvec = [int(k) for k in np.asarray(action_space.nvec).reshape(-1)]
        return ActionLayout("multi", np.array(list(itertools.product(*map(range, nvec)))))
    if isinstance(action_space, spaces.Box):
        low = np.asarray(action_space.low, dtype=np.float64).reshape(-1).copy()
        high = np.asarray(action_space.high, dtype=np.float64).reshape(-1).copy()
        for a in acts:
            if not a.discrete and a.index is not None and a.index < low.size:
                low[a.index] = max(low[a.index], a.low)  # type: ignore[arg-type]
                high[a.index] = min(high[a.index], a.high)  # type: ignore[arg-type]
        return ActionLayout("box", None, low, high)
    if action_space is not None:
        raise ValueError(f"unsupported action space {action_space}")
    if not acts:
        return ActionLayout("none", None)
    if all(a.discrete and a.index is None for a in acts):
        top = max(v for a in acts for _, v in a.labels)
        return ActionLayout("discrete", np.arange(top + 1))
    if all(a.discrete for a in acts):
        size = max(a.index or 0 for a in acts) + 1
        nvec = [1] * size
        for a in acts:
            nvec[a.index or 0] = max(v for _, v in a.labels) + 1
        return ActionLayout("multi", np.array(list(itertools.product(*map(range, nvec)))))
    size = max(a.index or 0 for a in acts) + 1
    low, high = np.full(size, -np.inf), np.full(size, np.inf)
    for a in acts:
        low[a.index or 0], high[a.index or 0] = a.low, a.high
    return ActionLayout("box", None, low, high)


def _take(array: AnyType, lead: int, index: tuple[int, ...], what: str,
          dtype: torch.dtype) -> Tensor:
    if array.ndim != lead + len(index):
        raise ValueError(f"{what}: expected {lead} batch axes plus {len(index)} index axes, "
                         f"got shape {tuple(array.shape)}")
    picked = array[(Ellipsis, *index)] if index else array
    if isinstance(picked, Tensor):
        return picked.to(dtype=dtype, device="cpu")
    return torch.as_tensor(np.asarray(picked, dtype=np.float64)).to(dtype)


def observation_values(program: n.Program, obs: AnyType, lead: int,
                       dtype: torch.dtype) -> dict[str, Tensor]:
    """Signal name -> tensor of shape ``lead`` axes."""
    out = {}
    for s in program.signals:
        if s.key is not None:
            if not isinstance(obs, dict) and not hasattr(obs, "keys"):
                raise ValueError(f"signal {s.name} reads obs.{s.key} but observations are not a dict")
            array = obs[s.key]
        else:
            array = obs
        if not isinstance(array, Tensor):
            array = np.asarray(array)
        out[s.name] = _take(array, lead, s.index, f"signal {s.name}", dtype)
    return out


def action_values(program: n.Program, kind: str, action: AnyType, lead: int,
                  dtype: torch.dtype) -> dict[str, Tensor]:
    """Action name -> tensor of shape ``lead`` axes."""
    if not isinstance(action, Tensor):
        action = np.asarray(action)
    if kind == "discrete" and action.ndim == lead + 1 and action.shape[-1] == 1:
        action = action[..., 0]  # accept (N, 1) for Discrete
    out = {}
    for a in program.actions:
        index = () if kind == "discrete" else (a.index or 0,)
        out[a.name] = _take(action, lead, index, f"action {a.name}", dtype)
    return out


def check_bindings(program: n.Program, observation_space: spaces.Space | None,
                   action_space: spaces.Space | None) -> list[tuple[str, n.Span]]:
    """Problems binding the declarations to the spaces: (message, span) pairs."""
    problems: list[tuple[str, n.Span]] = []
    if observation_space is not None:
        for s in program.signals:
            space = observation_space
            if s.key is not None:
                if not isinstance(space, spaces.Dict):
                    problems.append((f"signal {s.name} reads obs.{s.key} but the observation "
                                     f"space is not a Dict", s.span))
                    continue
                if s.key not in space.spaces:
                    problems.append((f"signal {s.name}: observation has no key '{s.key}'"
                                     + suggest(s.key, space.spaces), s.span))
                    continue
                space = space.spaces[s.key]
            elif isinstance(space, spaces.Dict):
                problems.append((f"signal {s.name} needs obs.<key>[...] for a Dict "
                                 f"observation space (keys: {', '.join(space.spaces)})", s.span))
                continue
            shape = tuple(space.shape or ())
            if len(s.index) != len(shape) or any(not 0 <= i < d for i, d in zip(s.index, shape)):
                problems.append((f"signal {s.name}: index {list(s.index)} is outside the "
                                 f"observation shape {shape}", s.span))
    if action_space is not None:
        problems += _check_actions(program, action_space)
    return problems


def _check_actions(program: n.Program, space: spaces.Space) -> list[tuple[str, n.Span]]:
    problems: list[tuple[str, n.Span]] = []
    for a in program.actions:
        if isinstance(space, spaces.Discrete):
            start, stop = int(space.start), int(space.start + space.n)
            if not a.discrete or a.index is not None:
                problems.append((f"action {a.name}: the action space is Discrete({space.n}); "
                                 f"declare labels as `{a.name} : {{...}}`", a.span))
            for label, value in a.labels:
                if not start <= value < stop:
                    problems.append((f"action label {label}={value} is outside "
                                     f"Discrete({space.n}) (values {start}..{stop - 1})", a.span))
        elif isinstance(space, spaces.MultiDiscrete):
            nvec = np.asarray(space.nvec).reshape(-1)
            if not a.discrete or a.index is None or a.index >= nvec.size:
                problems.append((f"action {a.name}: MultiDiscrete{tuple(nvec)} needs "
                                 f"`{a.name} = action[i] : {{...}}` with i < {nvec.size}", a.span))
                continue
            for label, value in a.labels:
                if not 0 <= value < nvec[a.index]:
                    problems.append((f"action label {label}={value} is outside component "
                                     f"{a.index} (n={nvec[a.index]})", a.span))
        elif isinstance(space, spaces.Box):
            size = int(np.prod(space.shape))
            if a.discrete or a.index is None or a.index >= size:
                problems.append((f"action {a.name}: the Box action space has {size} "
                                 f"dimension(s); declare `{a.name} = action[i] in [lo, hi]`", a.span))
                continue
            low, high = float(space.low.reshape(-1)[a.index]), float(space.high.reshape(-1)[a.index])
            if a.low < low or a.high > high:  # type: ignore[operator]
                problems.append((f"action {a.name}: declared range [{a.low}, {a.high}] exceeds the "
                                 f"Box bounds [{low}, {high}]", a.span))
        else:
            problems.append((f"unsupported action space {space}", a.span))
    fallback = program.fallback
    if fallback is not None and not fallback.ranked:
        size = {spaces.Discrete: 1}.get(type(space), int(np.prod(space.shape or (1,))))
        if len(fallback.values) != size:
            problems.append((f"fallback has {len(fallback.values)} value(s) but actions have "
                             f"{size}", fallback.span))
    return problems


def native_action(program: n.Program, lay: ActionLayout, values: tuple[float, ...]) -> np.ndarray:
    """A fallback vector as one env-native action (scalar for Discrete)."""
    if lay.kind == "discrete":
        return np.asarray(int(values[0]))
    if lay.kind == "multi":
        return np.asarray([int(v) for v in values])
    return np.asarray(values, dtype=np.float64)
