"""Envs for the parallel-worker tests (importable by spawned worker processes)."""
import os

import gymnasium as gym
import numpy as np


class CountEnv(gym.Env):
    """obs = [steps so far]; episodes end after 5 steps (terminated)."""
    observation_space = gym.spaces.Box(0, 100, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], np.float32), 1.0, self.t >= 5, False, {}


class RaisingEnv(CountEnv):
    def step(self, action):
        if self.t >= 2:
            raise RuntimeError("simulator exploded")
        return super().step(action)


class DyingEnv(CountEnv):
    def step(self, action):
        if self.t >= 2:
            os._exit(3)  # the worker process dies without a word
        return super().step(action)
