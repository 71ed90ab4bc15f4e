"""``ShieldWrapper``: the real-step shield as a gymnasium wrapper around any single env.

Every ``step(action)`` checks the proposal against the hard rules on the last
*real* observation, executes the (possibly corrected) action, and reports
what happened in ``info["shield"]`` plus a scalar ``info["cost"]`` channel so a
cost head or a Lagrangian can learn to avoid vetoed actions.
"""
from __future__ import annotations

from typing import Any as AnyType, Callable

import gymnasium as gym
import numpy as np

from .ruleset import RuleSet, load_rules
from .shield import Shield


def _batch(obs: AnyType) -> AnyType:
    """Add the leading env axis the shield expects: (1, ...) or {key: (1, ...)}."""
    if isinstance(obs, dict):
        return {k: np.asarray(v)[None] for k, v in obs.items()}
    return np.asarray(obs)[None]


class ShieldWrapper(gym.Wrapper):
    """Post-posed shield for one env.

    ``preferences_fn(obs) -> (n_actions,)`` scores (e.g. policy logits) lets a
    vetoed discrete action fall back to the agent's next-best allowed action.
    """

    def __init__(self, env: gym.Env, rules_or_path: RuleSet | str,
                 preferences_fn: Callable[[AnyType], AnyType] | None = None,
                 **shield_kwargs: AnyType) -> None:
        super().__init__(env)
        rules = (rules_or_path if isinstance(rules_or_path, RuleSet) else
                 load_rules(rules_or_path, env.observation_space, env.action_space))
        self.rules = rules
        self.shield = Shield(rules, env.action_space, num_envs=1, **shield_kwargs)
        self.preferences_fn = preferences_fn
        self._last_obs: AnyType = None
        self._first = True

    def reset(self, **kwargs: AnyType) -> tuple[AnyType, dict]:
        obs, info = self.env.reset(**kwargs)
        self._last_obs, self._first = obs, True
        return obs, info

    def step(self, action: AnyType) -> tuple[AnyType, float, bool, bool, dict]:
        if self._last_obs is None:
            raise RuntimeError("call reset() before step()")
        prefs = None
        if self.preferences_fn is not None:
            prefs = np.asarray(self.preferences_fn(self._last_obs), dtype=np.float64)[None]
        executed, report = self.shield.filter(_batch(self._last_obs), np.asarray(action)[None],
                                              prefs, is_first=np.array([self._first]))
        self._first = False
        chosen = executed[0]
        if isinstance(self.env.action_space, gym.spaces.Discrete):
            chosen = int(chosen)
        obs, reward, terminated, truncated, info = self.env.step(chosen)
        self._last_obs = obs
        shield_info = {k: (v[0] if isinstance(v, (np.ndarray, list)) else v)
                       for k, v in report.items()}
        shield_info.update(proposed=action, executed=chosen)
        info = dict(info)
        info["shield"] = shield_info
        info["cost"] = float(shield_info["cost"])
        return obs, reward, terminated, truncated, info
