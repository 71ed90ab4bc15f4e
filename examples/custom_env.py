"""Bring your own environment: a complete gymnasium.Env that worldmodel can train on.

TargetEnv is a 1-D line of `size` cells. The agent starts at a random cell and must walk
to a random target cell. Nothing here imports worldmodel: any gymnasium.Env works.

Check it, then train it from the repository root:

    worldmodel check-env examples.custom_env:TargetEnv --env-kwargs '{"size": 8}'
    worldmodel train --env examples.custom_env:TargetEnv --env-kwargs '{"size": 8}'
    worldmodel train --env examples.custom_env:TargetEnv --obs pixels   # learn from render()

or from Python:

    import functools
    import worldmodel
    from examples.custom_env import TargetEnv
    worldmodel.train(env=TargetEnv, config=...)                              # default size
    worldmodel.train(env=functools.partial(TargetEnv, size=8), config=...)   # with kwargs

Run this file (`python -m examples.custom_env`) to run Gymnasium's checker and a few
random episodes.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

LEFT, STAY, RIGHT = 0, 1, 2


class TargetEnv(gym.Env[np.ndarray, np.int64]):
    """Walk left/right along a line to a target cell.

    Observation float32 (2,): [agent position, target position], each scaled to [0, 1].
    Actions Discrete(3): 0 left, 1 stay, 2 right.
    Reward: +1 on reaching the target, -0.01 per step otherwise.
    Episodes end two ways, and the difference matters to the agent:
      terminated=True  the task is over (target reached): no future reward, no bootstrap;
      truncated=True   `max_steps` ran out: the task was cut short, so the value of the
                       last state still counts (the agent bootstraps from it).
    """

    # rgb_array render lets worldmodel record videos and learn from pixels (--obs pixels).
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, size: int = 8, max_steps: int | None = None,
                 render_mode: str | None = None) -> None:
        if size < 2:
            raise ValueError(f"size must be >= 2, got {size}")
        self.size = size
        self.max_steps = max_steps if max_steps is not None else 4 * size
        self.render_mode = render_mode
        # Scaled features in a bounded Box: the agent's encoder sees them as a vector.
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self._agent = 0
        self._target = 0
        self._steps = 0

    def _obs(self) -> np.ndarray:
        return np.array([self._agent, self._target], np.float32) / (self.size - 1)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)  # seeds self.np_random: same seed, same episode
        self._agent, self._target = (int(v) for v in
                                     self.np_random.choice(self.size, size=2, replace=False))
        self._steps = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._agent = int(np.clip(self._agent + int(action) - 1, 0, self.size - 1))
        self._steps += 1
        terminated = self._agent == self._target
        truncated = not terminated and self._steps >= self.max_steps
        reward = 1.0 if terminated else -0.01
        return self._obs(), reward, terminated, truncated, {}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        cell = 8
        frame = np.full((cell, self.size * cell, 3), 30, np.uint8)  # (H, W, 3) uint8
        frame[:, self._target * cell:(self._target + 1) * cell] = (40, 200, 90)
        frame[2:-2, self._agent * cell + 2:(self._agent + 1) * cell - 2] = (70, 130, 250)
        return frame


if __name__ == "__main__":
    from gymnasium.utils.env_checker import check_env

    # Render modes are tested through gymnasium.make only; call render() ourselves instead.
    checked = TargetEnv(size=8, render_mode="rgb_array")
    check_env(checked, skip_render_check=True)
    checked.reset(seed=0)
    print("gymnasium check_env passed; render() frame shape", checked.render().shape)
    env = TargetEnv(size=8)
    for episode in range(3):
        obs, _ = env.reset(seed=episode)
        done, total, steps = False, 0.0, 0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total, steps, done = total + reward, steps + 1, terminated or truncated
        print(f"episode {episode}: return {total:+.2f} in {steps} steps "
              f"({'terminated' if terminated else 'truncated'})")
