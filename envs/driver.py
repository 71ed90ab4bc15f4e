"""Step several Gymnasium envs together and turn their output into the agent's step dicts.

A step dict (all arrays have leading axis E = number of envs):
  obs          {key: (E, *shape)}   the agent's encoding (see envs/spaces.py)
  raw_obs      the env's native batched observation (what the shield reads)
  reward       (E,) float32         reward for arriving at this obs
  is_first     (E,) bool            first obs of an episode (reset the recurrent state)
  is_last      (E,) bool            last obs of an episode (terminated or truncated)
  is_terminal  (E,) bool            true termination: continue target 0, no bootstrap

Gymnasium 1.x vector envs autoreset in NEXT_STEP mode: the step after an episode ends
ignores its action and returns the reset observation. That is exactly the step dict
convention: the terminal obs is is_last, the next one is is_first with reward 0, and no
transition ever spans two episodes. The action the agent sent with the is_first step is
never executed, so callers store a zero action there.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from envs.spaces import ActionSpec, ObsSpec, action_spec, encode_obs, obs_spec


class EnvError(RuntimeError):
    """An env that cannot be made or that broke the Gymnasium API; str is one line."""


@dataclass
class Step:
    obs: dict[str, np.ndarray]
    raw_obs: Any
    reward: np.ndarray
    is_first: np.ndarray
    is_last: np.ndarray
    is_terminal: np.ndarray
    info: dict = field(default_factory=dict)
    # (env index, return, length) for every episode that ended at this step
    ended: list[tuple[int, float, int]] = field(default_factory=list)


_NOTIFIED: set[str] = set()


def _notify_once(notice: str | None) -> None:
    """Print a notice (e.g. dropped dict keys) once per process, not once per Driver."""
    if notice and notice not in _NOTIFIED:
        _NOTIFIED.add(notice)
        print(f"note: {notice}", file=sys.stderr)


class Driver:
    """E envs stepped as one; the agent's side never sees autoreset."""

    def __init__(self, make_env: Callable[[], gym.Env], num_envs: int = 1, seed: int = 0,
                 parallel: bool = False) -> None:
        fns = [make_env for _ in range(num_envs)]
        mode = gym.vector.AutoresetMode.NEXT_STEP
        try:
            if parallel and num_envs > 1:
                self.envs = gym.vector.AsyncVectorEnv(fns, autoreset_mode=mode, context="spawn")
            else:
                self.envs = gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)
        except EnvError:
            raise
        except Exception as exc:  # a user env failing in its constructor
            raise EnvError(f"could not create the env: {type(exc).__name__}: {exc}") from exc
        self.num_envs = num_envs
        self.seed = seed
        self.observation_space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space
        self.obs_spec: ObsSpec = obs_spec(self.observation_space)
        self.act_spec: ActionSpec = action_spec(self.action_space)
        _notify_once(self.obs_spec.notice)
        self._returns = np.zeros(num_envs, np.float64)
        self._lengths = np.zeros(num_envs, np.int64)
        self._done = np.zeros(num_envs, bool)
        self._seeded = False

    def reset(self) -> Step:
        seed = None if self._seeded else [self.seed + i for i in range(self.num_envs)]
        self._seeded = True
        try:
            obs, info = self.envs.reset(seed=seed)
        except EnvError:  # already one line, from envs/checked.py
            raise
        except Exception as exc:
            raise EnvError(f"env.reset() failed: {type(exc).__name__}: {exc}") from exc
        self._returns[:] = 0
        self._lengths[:] = 0
        self._done[:] = False
        first = np.ones(self.num_envs, bool)
        zero = np.zeros(self.num_envs, bool)
        return Step(self._encode(obs), obs, np.zeros(self.num_envs, np.float32),
                    first, zero.copy(), zero.copy(), info)

    def step(self, env_action: np.ndarray) -> Step:
        """`env_action`: env-native batched actions (see ActionSpec.to_env)."""
        if self.act_spec.kind == "continuous":
            env_action = np.asarray(env_action, np.float32).reshape(
                (self.num_envs,) + tuple(self.action_space.shape))
        try:
            obs, reward, terminated, truncated, info = self.envs.step(env_action)
        except EnvError:
            raise
        except (EOFError, BrokenPipeError, ConnectionError) as exc:
            # the pipe to a worker closed: its process died without raising (segfault, os._exit)
            self._crashed = True
            raise EnvError(f"an env worker process died during step() ({type(exc).__name__}); the env "
                           f"crashed outside Python: run with --env.parallel false to see its error") from exc
        except Exception as exc:
            raise EnvError(f"env.step() failed: {type(exc).__name__}: {exc}") from exc
        reward = np.asarray(reward, np.float32).reshape(self.num_envs)
        terminated = np.asarray(terminated, bool).reshape(self.num_envs)
        truncated = np.asarray(truncated, bool).reshape(self.num_envs)
        if not np.all(np.isfinite(reward)):
            raise EnvError(f"env.step() returned a non-finite reward {reward.tolist()}; "
                           "rewards must be finite floats")
        first = self._done.copy()  # these envs were autoreset by this call
        reward = np.where(first, 0.0, reward).astype(np.float32)
        terminated &= ~first
        truncated &= ~first
        last = terminated | truncated
        self._returns = np.where(first, 0.0, self._returns + reward)
        self._lengths = np.where(first, 0, self._lengths + 1)
        ended = [(int(i), float(self._returns[i]), int(self._lengths[i])) for i in np.flatnonzero(last)]
        self._done = last
        return Step(self._encode(obs), obs, reward, first, last, terminated, info, ended)

    def _encode(self, obs: Any) -> dict[str, np.ndarray]:
        try:
            return encode_obs(self.obs_spec, self.observation_space, obs)
        except Exception as exc:
            raise EnvError(f"observation does not match the env's observation_space "
                           f"{self.observation_space}: {type(exc).__name__}: {exc}") from exc

    def render(self) -> np.ndarray | None:
        frames = self.envs.render()
        return None if frames is None else np.asarray(frames[0])

    def close(self) -> None:
        try:
            if getattr(self, "_crashed", False) and hasattr(self.envs, "processes"):
                self.envs.close(terminate=True)  # do not wait on a dead worker's pipe
            else:
                self.envs.close()
        except Exception:  # noqa: BLE001  closing must never hide the error that got us here
            pass
