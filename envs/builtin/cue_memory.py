"""CueMemory: remember a cue across `length` blank steps, then act on it.

Timeline of one episode (T = length):
    obs 0            cue one-hot visible (also for the first `cue_steps` observations)
    obs 1 .. T       blank (all zeros); actions are ignored, reward 0
    obs T            query flag set: the next action is the answer
    step T + 1       reward +1 if action == cue else -1; terminated
    obs T + 1        blank, or with `reveal=True` the cue one-hot again (after the answer)

`reveal` makes memory learnable from observations: with it the world model must carry the
cue across the gap to predict the last observation (its decoder's loss asks for memory, as
in R2I's memory tasks), not only to predict the answer's reward. Without it only the reward
asks for memory, and that reward is an XOR of cue and answer, which no agent here learned
at this project's budgets (README, "Why CueMemory is hard"); with it and the `memory`
preset (a random reward head, no representation KL) every backbone's agent learns
distances 8 and 24 (README, "The memory preset"). The agent never acts on the revealed
cue: the episode has ended.

Observation: float32 (n_cues + 1,) = [cue one-hot (n_cues), query flag]. Action:
Discrete(n_cues). A memoryless policy scores 0 on average; only a recurrent state
(the RSSM's h) can carry the cue across the gap, which is what this env tests.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

# One colour per cue for render(); cues beyond the palette reuse it cyclically.
_PALETTE = np.array([[230, 60, 60], [60, 120, 240], [60, 200, 90], [240, 200, 40],
                     [180, 80, 220], [40, 200, 210]], np.uint8)
_BLANK = np.array([30, 30, 36], np.uint8)
_QUERY = np.array([235, 235, 235], np.uint8)
SIZE = 64  # render() frame side


class CueMemoryEnv(gym.Env[np.ndarray, np.int64]):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, length: int = 20, n_cues: int = 2, cue_steps: int = 1, reveal: bool = False,
                 render_mode: str | None = None) -> None:
        if length < 1 or n_cues < 2 or not 1 <= cue_steps <= length:
            raise ValueError(f"need length >= 1, n_cues >= 2, 1 <= cue_steps <= length; "
                             f"got length={length}, n_cues={n_cues}, cue_steps={cue_steps}")
        if not isinstance(reveal, bool):
            raise ValueError(f"reveal must be true or false, got {reveal!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.length = length
        self.n_cues = n_cues
        self.cue_steps = cue_steps
        self.reveal = reveal
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, (n_cues + 1,), np.float32)
        self.action_space = gym.spaces.Discrete(n_cues)
        self._cue = 0
        self._t = 0  # index of the current observation

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.n_cues + 1, np.float32)
        if self._t < self.cue_steps or (self.reveal and self._t > self.length):
            obs[self._cue] = 1.0
        if self._t == self.length:
            obs[-1] = 1.0
        return obs

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(self.n_cues))
        self._t = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._t < self.length:
            self._t += 1
            return self._obs(), 0.0, False, False, {}
        correct = int(action) == self._cue
        self._t += 1
        return self._obs(), 1.0 if correct else -1.0, True, False, {"correct": correct}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        frame = np.empty((SIZE, SIZE, 3), np.uint8)
        if self._t < self.cue_steps or (self.reveal and self._t > self.length):
            frame[:] = _PALETTE[self._cue % len(_PALETTE)]
        elif self._t == self.length:
            frame[:] = _QUERY
        else:
            frame[:] = _BLANK
        # Progress bar along the bottom so frames of the blank phase differ over time.
        done = int(round(SIZE * min(self._t, self.length) / self.length))
        frame[-6:, :done] = 128
        return frame
