"""Small envs defined only for the tests: one good, and one per way of breaking the API."""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class GoodEnv(gym.Env):
    """Counts to `length` then terminates; obs = [t / length]."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, length: int = 5, render_mode: str | None = None) -> None:
        self.length = length
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.t / self.length], np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action: Any):
        self.t += 1
        return self._obs(), 1.0, self.t >= self.length, False, {}

    def render(self):
        if self.render_mode == "rgb_array":
            return np.full((20, 30, 3), 10 * self.t, np.uint8)
        return None


def make_good(length: int = 3) -> gym.Env:
    """A factory function entry point."""
    return GoodEnv(length=length)


class NotAnEnv:
    pass


def returns_not_an_env() -> object:
    return object()


NOT_CALLABLE = 42


class FourTupleEnv(GoodEnv):
    def step(self, action: Any):
        obs, reward, terminated, _, info = super().step(action)
        return obs, reward, terminated, info


class OutOfSpaceEnv(GoodEnv):
    def step(self, action: Any):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs + 5.0, reward, terminated, truncated, info


class WrongShapeEnv(GoodEnv):
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}


class NoSeedEnv(GoodEnv):
    def reset(self):  # old Gym signature
        self.t = 0
        return self._obs(), {}


class OldResetEnv(GoodEnv):
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self._obs()


class NanRewardEnv(GoodEnv):
    def step(self, action: Any):
        obs, _, terminated, truncated, info = super().step(action)
        return obs, float("nan"), terminated, truncated, info


class IntFlagEnv(GoodEnv):
    def step(self, action: Any):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, int(terminated), truncated, info


class InfBoxActionEnv(GoodEnv):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)


class TextActionEnv(GoodEnv):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.action_space = gym.spaces.Text(8)


class TextObsEnv(GoodEnv):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.observation_space = gym.spaces.Text(8)

    def _obs(self) -> str:
        return "abc"


class DictTextEnv(GoodEnv):
    """Dict obs with a vector, a large image (resized to 64), a small grid and text."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.observation_space = gym.spaces.Dict({
            "pos": gym.spaces.Box(0.0, 1.0, (1,), np.float32),
            "camera": gym.spaces.Box(0, 255, (32, 48, 3), np.uint8),
            "grid": gym.spaces.Box(0, 10, (5, 5, 3), np.uint8),
            "mission": gym.spaces.Text(20, charset="abcdefghijklmnopqrstuvwxyz "),
        })

    def _obs(self) -> dict:
        return {"pos": np.array([self.t / self.length], np.float32),
                "camera": np.full((32, 48, 3), 100, np.uint8),
                "grid": np.ones((5, 5, 3), np.uint8),
                "mission": "reach the goal"}


class NeverEndsEnv(GoodEnv):
    def step(self, action: Any):
        obs, reward, _, _, info = super().step(action)
        return np.clip(obs, 0, 1), reward, False, False, info


class CrashOnInitEnv(GoodEnv):
    def __init__(self, **kwargs: Any) -> None:
        raise RuntimeError("simulator license not found\nsecond line")
