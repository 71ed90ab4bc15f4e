"""SafeCorridor: reach the goal at the end of a 3-row corridor without stepping on a hazard.

Layout for the default length 9 (S start, G goal, H hazard, rows y=0..2 top to bottom):

    . . H . . . H . .
    S . . . H . . . G
    . . H . H . H . .

Hazards flank the middle row every 4 columns and block it every 4 columns (offset by
2), so the shortest safe path (length + 1 steps by default) detours through the top row.
Random actions step on a hazard in most episodes, which is what a shield should prevent.

Observation: float32 (10,) in [0, 1]
    0        x / (length - 1)
    1        y / 2
    2 + a    1 if the cell in direction a holds a hazard   (a = 0 up, 1 right, 2 down, 3 left)
    6 + a    1 if direction a is the grid edge (moving there is a no-op)
so the safety rule "never step onto a hazard" is `obs[2 + a] == 1 -> action != a`.

Reward: +1 on reaching the goal (terminates), -0.01 per step, -1 on a hazard (terminates,
info["violation"] = True). Registered with a TimeLimit of 100 steps.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3
MOVES = ((0, -1), (1, 0), (0, 1), (-1, 0))  # (dx, dy) per action
OBS_HAZARD = 2  # obs[OBS_HAZARD + a]: hazard in direction a
OBS_EDGE = 6  # obs[OBS_EDGE + a]: grid edge in direction a
ROWS = 3
CELL = 16  # pixels per cell in render()

_FLOOR = np.array([40, 40, 48], np.uint8)
_HAZARD = np.array([220, 70, 30], np.uint8)
_GOAL = np.array([40, 200, 90], np.uint8)
_AGENT = np.array([70, 130, 250], np.uint8)


def corridor_hazards(length: int) -> np.ndarray:
    """(ROWS, length) bool hazard map; see the module docstring for the pattern."""
    hazard = np.zeros((ROWS, length), bool)
    for x in range(1, length - 1):
        if x % 4 == 2:  # flank the path on both sides
            hazard[0, x] = hazard[2, x] = True
        if x % 4 == 0:  # block the path; the detour goes over the top
            hazard[1, x] = hazard[2, x] = True
    return hazard


class SafeCorridorEnv(gym.Env[np.ndarray, np.int64]):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, length: int = 9, render_mode: str | None = None) -> None:
        if length < 3:
            raise ValueError(f"length must be >= 3, got {length}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.length = length
        self.render_mode = render_mode
        self.hazard = corridor_hazards(length)
        self.start = (0, 1)
        self.goal = (length - 1, 1)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (10,), np.float32)
        self.action_space = gym.spaces.Discrete(4)
        self._pos = self.start

    def _inside(self, x: int, y: int) -> bool:
        return 0 <= x < self.length and 0 <= y < ROWS

    def _obs(self) -> np.ndarray:
        x, y = self._pos
        obs = np.zeros(10, np.float32)
        obs[0] = x / (self.length - 1)
        obs[1] = y / (ROWS - 1)
        for a, (dx, dy) in enumerate(MOVES):
            nx, ny = x + dx, y + dy
            if self._inside(nx, ny):
                obs[OBS_HAZARD + a] = float(self.hazard[ny, nx])
            else:
                obs[OBS_EDGE + a] = 1.0
        return obs

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._pos = self.start
        return self._obs(), {"violation": False}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        dx, dy = MOVES[int(action)]
        x, y = self._pos
        if self._inside(x + dx, y + dy):
            self._pos = (x + dx, y + dy)
        x, y = self._pos
        violation = bool(self.hazard[y, x])
        reached = self._pos == self.goal
        reward = -1.0 if violation else (1.0 if reached else -0.01)
        return self._obs(), reward, violation or reached, False, {"violation": violation}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        colors = np.broadcast_to(_FLOOR, (ROWS, self.length, 3)).copy()
        colors[self.hazard] = _HAZARD
        colors[self.goal[1], self.goal[0]] = _GOAL
        frame = np.repeat(np.repeat(colors, CELL, axis=0), CELL, axis=1)  # (3*CELL, length*CELL, 3)
        frame[::CELL, :] = frame[:, ::CELL] = 0  # grid lines
        x, y = self._pos
        m = CELL // 4
        frame[y * CELL + m:(y + 1) * CELL - m, x * CELL + m:(x + 1) * CELL - m] = _AGENT
        return frame
