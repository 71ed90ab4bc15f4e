"""``RuleSet``: a parsed rules file bound to spaces, evaluated in batches with torch.

Shapes: N rows (envs or samples), R rules (hard and soft, in file order), H
imagined steps, C discrete candidate actions. Results are CPU torch tensors
(moved to the input's device when the observation was a torch tensor).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from typing import Any as AnyType

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from . import bindings, nodes as n
from .compile_torch import Pair, TorchProgram, Trace
from .errors import RuleError, suggest
from .parser import parse

BIG = 1e9  # reported robustness is clamped to [-BIG, BIG] so averages stay finite
History = dict[str, Pair]  # monitor registers: key -> (truth (N, K), robustness (N, K))


@dataclass
class Evaluation:
    ok: Tensor          # (N,) bool: every hard rule holds
    robustness: Tensor  # (N,) min robustness over hard rules (> 0 satisfied)
    violated: Tensor    # (N, R) bool per rule, hard and soft
    cost: Tensor        # (N,) float: number of violated rules (hard + soft)
    rule_robustness: Tensor  # (N, R)


@dataclass
class TrajectoryCheck:
    feasible: Tensor    # (N,) bool: no hard rule violated at any step
    robustness: Tensor  # (N,) min over hard rules and steps
    violations: Tensor  # (N,) int: violated (hard rule, step) instances
    violated: Tensor    # (N, R, H) bool per rule and step


def shipped_names() -> list[str]:
    folder = resources.files("symbolic").joinpath("rules")
    return sorted(p.name[: -len(".rules")] for p in folder.iterdir() if p.name.endswith(".rules"))


def read_rules(path_or_name: str) -> tuple[str, str]:
    """(text, path) for a file path or a shipped rule-set name such as ``cartpole_track``."""
    if os.path.exists(path_or_name):
        with open(path_or_name, encoding="utf-8") as handle:
            return handle.read(), path_or_name
    name = os.path.basename(path_or_name)
    name = name[: -len(".rules")] if name.endswith(".rules") else name
    if name in shipped_names() and os.sep not in path_or_name:
        shipped = resources.files("symbolic").joinpath("rules", name + ".rules")
        return shipped.read_text(encoding="utf-8"), str(shipped)
    raise RuleError(f"no rules file or shipped rule set named '{path_or_name}'"
                    + suggest(name, shipped_names()), path_or_name,
                    expected="a path or one of: " + ", ".join(shipped_names()))


def load_rules(path_or_name: str, observation_space: spaces.Space | None = None,
               action_space: spaces.Space | None = None,
               dtype: torch.dtype = torch.float64) -> "RuleSet":
    """Parse, check and bind a rules file (or shipped name); raises RuleError."""
    text, path = read_rules(path_or_name)
    return RuleSet.from_string(text, path, observation_space, action_space, dtype)


class RuleSet:
    """Rules bound to an env's spaces; the one predicate used by shield and planner."""

    def __init__(self, program: n.Program, source: str = "",
                 observation_space: spaces.Space | None = None,
                 action_space: spaces.Space | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        problems = bindings.check_bindings(program, observation_space, action_space)
        if problems:
            message, span = problems[0]
            more = f" ({len(problems) - 1} more binding problem(s))" if len(problems) > 1 else ""
            raise RuleError(message + more, program.path, span.line, span.column, source,
                            "declarations that match the env's spaces")
        self.program, self.source, self.dtype = program, source, dtype
        self.observation_space, self.action_space = observation_space, action_space
        self.layout = bindings.layout(program, action_space)
        self.compiled = TorchProgram(program, dtype)
        self.names = [r.name for r in program.rules]
        self.hard_names = [r.name for r in program.rules if r.kind == "hard"]
        self.soft_names = [r.name for r in program.rules if r.kind == "soft"]
        self.hard = torch.tensor([r.kind == "hard" for r in program.rules], dtype=torch.bool)
        self._hard_indices = [i for i, r in enumerate(program.rules) if r.kind == "hard"]
        self.step_evaluable = list(self.compiled.step_evaluable)

    @classmethod
    def from_string(cls, text: str, path: str = "<string>",
                    observation_space: spaces.Space | None = None,
                    action_space: spaces.Space | None = None,
                    dtype: torch.dtype = torch.float64) -> "RuleSet":
        return cls(parse(text, path), text, observation_space, action_space, dtype)

    @property
    def path(self) -> str:
        return self.program.path

    @property
    def registers(self) -> dict[str, int]:
        """Monitor register sizes for past operators (key -> steps remembered)."""
        return dict(self.compiled.registers)

    # ---- the real step -----------------------------------------------------
    def step_values(self, obs: AnyType, action: AnyType | None) -> dict[str, Tensor]:
        """Signal and action values, each (N,)."""
        values = bindings.observation_values(self.program, obs, 1, self.dtype)
        if action is not None and self.layout.kind != "none":
            values.update(bindings.action_values(self.program, self.layout.kind, action, 1,
                                                 self.dtype))
        return values

    def evaluate_values(self, values: dict[str, Tensor], history: History | None = None
                        ) -> tuple[Tensor, Tensor, dict[str, Pair]]:
        """Step semantics on (N,) values: ok (N, R), robustness (N, R), past bodies."""
        rows = next(iter(values.values())).shape[0] if values else 1
        trace = Trace({k: v.reshape(rows, 1) for k, v in values.items()}, (rows, 1), step=True,
                      history=history or {})
        ok, rob = self.compiled.evaluate(trace)
        return ok[..., 0], rob[..., 0], trace.bodies

    def evaluate(self, obs: AnyType, action: AnyType, history: History | None = None) -> Evaluation:
        """Check every rule on real observations and proposed actions (batched on axis 0)."""
        ok, rob, _ = self.evaluate_values(self.step_values(obs, action), history)
        return self._summary(ok, rob, _device(obs))

    def _summary(self, ok: Tensor, rob: Tensor, device: torch.device) -> Evaluation:
        violated = ~ok
        hard_rob = torch.where(self.hard, rob, torch.full_like(rob, float("inf")))
        robustness = hard_rob.amin(1) if rob.shape[1] else torch.full(rob.shape[:1], BIG)
        result = Evaluation(ok=(ok | ~self.hard).all(1), robustness=_clamp(robustness),
                            violated=violated, cost=violated.sum(1).to(self.dtype),
                            rule_robustness=_clamp(rob))
        return Evaluation(**{k: v.to(device) for k, v in vars(result).items()})

    def candidates(self) -> np.ndarray:
        """(C, *action_shape) every action of a discrete space, mask column order."""
        if self.layout.choices is None:
            raise ValueError("allowed_actions needs a Discrete or MultiDiscrete action space "
                             "(or discrete action labels in the rules)")
        return self.layout.choices

    def evaluate_candidates(self, obs: AnyType, history: History | None = None
                            ) -> tuple[Tensor, Tensor, dict[str, Pair]]:
        """Every rule for every discrete candidate action in one batched call.

        Returns ok (N, C, R), robustness (N, C, R) and the past-operator body
        values (N, C) that the shield commits for the action it executes.
        """
        choices = self.candidates()
        obs_values = bindings.observation_values(self.program, obs, 1, self.dtype)
        rows = next(iter(obs_values.values())).shape[0] if obs_values else _rows(obs)
        count = len(choices)
        values = {k: v.repeat_interleave(count) for k, v in obs_values.items()}
        tiled = np.broadcast_to(choices, (rows, *choices.shape)).reshape(-1, *choices.shape[1:])
        values.update(bindings.action_values(self.program, self.layout.kind, tiled, 1, self.dtype))
        repeated = {k: (t.repeat_interleave(count, 0), r.repeat_interleave(count, 0))
                    for k, (t, r) in (history or {}).items()}
        ok, rob, bodies = self.evaluate_values(values, repeated)
        shaped = {k: (t.reshape(rows, count), r.reshape(rows, count)) for k, (t, r) in bodies.items()}
        return ok.reshape(rows, count, -1), rob.reshape(rows, count, -1), shaped

    def hard_verdict(self, ok: Tensor, rob: Tensor) -> tuple[Tensor, Tensor]:
        """Collapse the last (rule) axis to: every hard rule holds, min hard robustness."""
        hard = self.hard.to(ok.device)
        verdict = (ok | ~hard).all(-1)
        if not hard.any():
            return verdict, torch.full(ok.shape[:-1], BIG, dtype=self.dtype)
        return verdict, _clamp(torch.where(hard, rob, torch.full_like(rob, float("inf"))).amin(-1))

    def allowed_actions(self, obs: AnyType, history: History | None = None) -> Tensor:
        """(N, C) bool: which discrete actions satisfy every hard rule (mask for logits).

        A row may be all False (a dead end); mask logits with a large negative
        finite number (see ``mask_logits``) so no NaN appears.
        """
        ok, rob, _ = self.evaluate_candidates(obs, history)
        return self.hard_verdict(ok, rob)[0].to(_device(obs))

    # ---- imagined trajectories ---------------------------------------------
    def check_trajectories(self, obs_seq: AnyType, action_seq: AnyType,
                           history: History | None = None, hard_only: bool = False) -> TrajectoryCheck:
        """Rules over imagined rollouts: obs (N, H+1, ...), actions (N, H, ...).

        Rules are checked at steps 0..H-1; ``next`` at step H-1 reads obs H.
        Future windows reaching past step H (or needing action H) are violations.
        ``hard_only``: evaluate the hard rules alone (a planner discards plans by them and
        nothing else); ``violated`` then has one row per hard rule, in file order.
        """
        values = bindings.observation_values(self.program, obs_seq, 2, self.dtype)
        rows, steps = next(iter(values.values())).shape if values else np.shape(action_seq)[:2]
        if self.layout.kind != "none":
            acts = bindings.action_values(self.program, self.layout.kind, action_seq, 2, self.dtype)
            pad = torch.full((rows, 1), float("nan"), dtype=self.dtype)  # no action at step H
            values.update({k: torch.cat([v, pad], 1) for k, v in acts.items()})
            steps = next(iter(acts.values())).shape[1] + 1
        trace = Trace(values, (rows, steps), history=history or {})
        which = self._hard_indices if hard_only else None
        hard = self.hard[which] if hard_only else self.hard
        ok, rob = self.compiled.evaluate(trace, which)
        ok, rob = ok[..., : steps - 1], rob[..., : steps - 1]  # (N, R, H)
        hard_bad = ~ok & hard[None, :, None]
        hard_rob = torch.where(hard[None, :, None], rob, torch.full_like(rob, float("inf")))
        robustness = hard_rob.flatten(1).amin(1) if hard_rob.numel() else torch.full((rows,), BIG)
        device = _device(obs_seq)
        return TrajectoryCheck(feasible=(~hard_bad.flatten(1).any(1)).to(device),
                               robustness=_clamp(robustness).to(device),
                               violations=hard_bad.flatten(1).sum(1).to(device),
                               violated=(~ok).to(device))


def mask_logits(logits: Tensor, allowed: Tensor, fill: float = -1e9) -> Tensor:
    """Mask disallowed actions with a large negative *finite* value.

    A fully masked row (dead end) keeps its original logits instead of becoming
    NaN after softmax; the caller should report it as a dead end.
    """
    allowed = allowed.to(logits.device)
    dead = ~allowed.any(-1, keepdim=True)
    masked = logits.masked_fill(~allowed, fill)
    return torch.where(dead, logits, masked)


def _clamp(x: Tensor) -> Tensor:
    return torch.nan_to_num(x, nan=-BIG, posinf=BIG, neginf=-BIG).clamp(-BIG, BIG)


def _device(x: AnyType) -> torch.device:
    if isinstance(x, Tensor):
        return x.device
    if isinstance(x, dict) and x:
        return _device(next(iter(x.values())))
    return torch.device("cpu")


def _rows(obs: AnyType) -> int:
    if isinstance(obs, dict):
        return len(next(iter(obs.values())))
    return len(obs)
