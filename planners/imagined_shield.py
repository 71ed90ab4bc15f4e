"""The shield in imagination: the same RuleSet the real-step shield uses, applied to
imagined trajectories so a planner can discard plans predicted to break a hard rule.

A candidate is checked twice:
  * symbolically: `rules.check_trajectories` on the decoded predicted observations,
    mapped back to the env's native layout, and the env-native actions;
  * by the model's cost head (trained on the real shield's labels): a step whose
    predicted cost exceeds `cost_threshold` counts as one predicted violation.

Past operators (`prev`, `once`, ...) start from an empty history here: the real-step
monitor's registers live in the trainer's Shield, which the planner does not see.

Legend: N candidates, H horizon, F feature, A agent action size, R rules.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from envs.spaces import ActionSpec, is_image
from planners.base import with_index


@dataclass
class ImaginedCheck:
    violations: torch.Tensor   # (N,) float: predicted hard-rule violations (rule steps + cost steps)
    robustness: torch.Tensor   # (N,) float: min hard-rule robustness over the horizon (> 0 safe)
    first_step: torch.Tensor   # (N,) bool: the first action is predicted to violate

    @property
    def safe(self) -> torch.Tensor:
        return self.violations == 0


def native_observations(pred: dict[str, torch.Tensor], space: gym.Space | None) -> Any:
    """Decoded predictions {key: (*lead, *agent_shape)} -> the env's native format:
    an array (*lead, *obs_shape) for a single space, a dict of those for a Dict space.
    Without a space (rules bound to no env) the agent's flat layout is passed through."""
    if space is None:
        return pred["obs"] if set(pred) == {"obs"} else pred
    if isinstance(space, gym.spaces.Dict):
        return {k: _native_leaf(pred[k], sub) for k, sub in space.spaces.items() if k in pred}
    return _native_leaf(pred["obs"], space)


def _native_leaf(x: torch.Tensor, space: gym.Space) -> torch.Tensor:
    if is_image(space):  # already (*lead, H, W, C) in [0, 255]
        return x.round()
    lead = x.shape[:-1]
    if isinstance(space, gym.spaces.Discrete):  # one-hot (n,) -> id
        return (x.argmax(-1) + int(space.start)).float()
    if isinstance(space, gym.spaces.MultiDiscrete):  # concatenated one-hots -> ids
        nvec = [int(n) for n in np.asarray(space.nvec).reshape(-1)]
        start = torch.as_tensor(np.asarray(space.start).reshape(-1), device=x.device)
        ids = torch.stack([p.argmax(-1) for p in x.split(nvec, -1)], -1) + start
        return ids.float().reshape(*lead, *space.nvec.shape)
    if isinstance(space, gym.spaces.MultiBinary):
        return (x > 0.5).float().reshape(*lead, *space.shape)
    out = x.reshape(*lead, *(space.shape or ()))
    if isinstance(space, gym.spaces.Box) and np.issubdtype(space.dtype, np.integer):
        out = out.round()  # grids of ids (MiniGrid): enum comparisons want whole numbers
    return out


class ImaginationShield:
    """Counts predicted hard-rule violations of imagined trajectories."""

    def __init__(self, rules: Any, act_spec: ActionSpec, cost_threshold: float = 0.5) -> None:
        self.rules, self.act_spec, self.cost_threshold = rules, act_spec, cost_threshold
        self.space = getattr(rules, "observation_space", None)

    def env_actions(self, actions: torch.Tensor) -> np.ndarray:
        """Agent actions (N, H, A) -> env-native (N, H) ints, (N, H, k) ints or (N, H, d) floats."""
        n, h, a = actions.shape
        native = self.act_spec.to_env(actions.reshape(n * h, a).float().cpu().numpy())
        return native.reshape(n, h, *native.shape[1:])

    def check(self, model: Any, feats: torch.Tensor, actions: torch.Tensor,
              cost: torch.Tensor | None = None, index: torch.Tensor | None = None) -> ImaginedCheck:
        """feats (N, H+1, F) of an imagined rollout, actions (N, H, A) that produced it;
        `cost` (N, H): the model's predicted cost of each action, when the caller has it;
        `index` (N, H+1, S): the latent classes of feats, when known (a faster decode)."""
        # All H+1 steps, also when no rule reads the last: decoding a strided slice of H
        # steps was measured slower here than decoding the contiguous whole.
        pred = with_index(model.decode, feats, index)
        obs = native_observations(pred, self.space)
        # soft rules never discard a plan: only the hard ones are evaluated
        result = self.rules.check_trajectories(obs, self.env_actions(actions), hard_only=True)
        device = feats.device
        violations = result.violations.to(device).float()                     # (N,)
        robustness = result.robustness.to(device).float()                     # (N,)
        violated = getattr(result, "violated", None)                           # (N, R_hard, H)
        if violated is not None and violated.numel():
            first = violated[:, :, 0].any(1).to(device)
        else:  # a rules object without per-step detail: any violation counts for step 0
            first = ~result.feasible.to(device)
        if cost is None:
            cost = with_index(model.cost, feats[:, 1:], None if index is None else index[:, 1:])
        cost_bad = cost > self.cost_threshold                                  # (N, H): cost of action t
        violations = violations + cost_bad.float().sum(1)
        return ImaginedCheck(violations=violations, robustness=robustness,
                             first_step=first | cost_bad[:, 0])
