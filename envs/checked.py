"""Turn Gymnasium API breaks into one-line EnvErrors at the step where they happen.

Without this, a user env that returns the old 4-tuple or an observation of the wrong
shape fails deep inside the vector env or the replay buffer with a traceback that names
none of the user's code. Checks are cheap: types on every call, the observation against
its space on the first `FULL_CHECKS` calls and then every `CHECK_EVERY` calls.
"""
from __future__ import annotations

import math
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from envs.driver import EnvError

FULL_CHECKS = 10
CHECK_EVERY = 100


def env_name(env: gym.Env) -> str:
    """How messages name an env: its registered id, else its class."""
    spec = getattr(env.unwrapped, "spec", None)
    return spec.id if spec is not None else type(env.unwrapped).__name__


def obs_mismatch(space: gym.Space, obs: Any, where: str = "obs") -> str | None:
    """Why `obs` is not in `space` (one phrase), or None if it is.

    Lenient about float precision (a float64 array in a float32 Box is accepted: the
    vector env casts it), strict about shape, bounds, NaN and dict keys.
    """
    if isinstance(space, gym.spaces.Dict):
        if not isinstance(obs, dict):
            return f"{where} is a {type(obs).__name__}, expected a dict with keys {list(space.spaces)}"
        missing = [k for k in space.spaces if k not in obs]
        if missing:
            return f"{where} is missing dict keys {missing}"
        for k, sub in space.spaces.items():
            why = obs_mismatch(sub, obs[k], f"{where}['{k}']")
            if why:
                return why
        return None
    if isinstance(space, gym.spaces.Box):
        try:
            x = np.asarray(obs)
        except Exception:  # noqa: BLE001 - any unconvertible object is the same user error
            return f"{where} of type {type(obs).__name__} is not an array"
        if x.shape != space.shape:
            return f"{where} has shape {x.shape}, the space says {space.shape}"
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            return f"{where} has dtype {x.dtype}, the space says {space.dtype}"
        if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
            if np.any(np.isnan(x)) or np.all(np.isfinite(space.low)):
                return f"{where} contains NaN or inf"
        if np.any(x < space.low) or np.any(x > space.high):
            bad = np.flatnonzero((x < space.low) | (x > space.high))[:3]
            flat = x.reshape(-1)
            return (f"{where} is outside the Box bounds at flat indices {bad.tolist()} "
                    f"(values {flat[bad].tolist()})")
        return None
    try:
        ok = space.contains(obs)
    except Exception:  # noqa: BLE001
        ok = False
    return None if ok else f"{where}={_short(obs)} is not in {space}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


def _reward_ok(reward: Any) -> bool:
    if isinstance(reward, (bool, np.bool_)):
        return False
    if isinstance(reward, np.ndarray):
        if reward.shape != ():
            return False
        reward = reward.item()
    if not isinstance(reward, (int, float, np.integer, np.floating)):
        return False
    return math.isfinite(float(reward))


class CheckedEnv(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Pass-through wrapper whose only job is raising a one-line EnvError on API breaks."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)  # so env.spec.make() can rebuild it
        gym.Wrapper.__init__(self, env)
        self._name = env_name(env)
        self._calls = 0

    def _due(self) -> bool:
        self._calls += 1
        return self._calls <= FULL_CHECKS or self._calls % CHECK_EVERY == 0

    def _fail(self, what: str, fix: str) -> EnvError:
        return EnvError(f"{self._name}: {what}; {fix}")

    def _check_obs(self, obs: Any, method: str) -> None:
        if self._due():
            why = obs_mismatch(self.observation_space, obs)
            if why:
                raise self._fail(f"{method}() returned an observation outside observation_space: {why}",
                                 "fix the observation or declare a matching observation_space")

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        try:
            result = self.env.reset(seed=seed, options=options)
        except TypeError as exc:
            if "seed" in str(exc) or "options" in str(exc):
                raise self._fail(f"reset() does not accept seed=/options= ({exc})",
                                 "define reset(self, *, seed=None, options=None) and call "
                                 "super().reset(seed=seed)") from exc
            raise
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
            got = f"a {len(result)}-tuple" if isinstance(result, tuple) else type(result).__name__
            raise self._fail(f"reset() returned {got}, expected (obs, info: dict)",
                             "return obs, {} (Gymnasium API; old Gym returned obs alone)")
        self._check_obs(result[0], "reset")
        return result

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        result = self.env.step(action)
        if not isinstance(result, tuple) or len(result) != 5:
            n = len(result) if isinstance(result, tuple) else None
            got = f"a {n}-tuple" if n is not None else type(result).__name__
            old = " (old Gym API: obs, reward, done, info)" if n == 4 else ""
            raise self._fail(f"step() returned {got}{old}, expected 5 values",
                             "return obs, reward, terminated, truncated, info")
        obs, reward, terminated, truncated, info = result
        if not _reward_ok(reward):
            raise self._fail(f"step() returned reward {_short(reward)} of type {type(reward).__name__}",
                             "return a finite float")
        for flag, value in (("terminated", terminated), ("truncated", truncated)):
            if not isinstance(value, (bool, np.bool_)):
                raise self._fail(f"step() returned {flag}={_short(value)} of type "
                                 f"{type(value).__name__}", f"return a bool for {flag}")
        if not isinstance(info, dict):
            raise self._fail(f"step() returned info of type {type(info).__name__}", "return a dict")
        self._check_obs(obs, "step")
        return result
