"""Replay: whole trajectories in, fixed-length sequences out, bounded capacity.

Each env writes into its own lane, a ring buffer of capacity // num_envs steps, so an
episode is contiguous inside its lane. Sampled sequences never cross episodes: a sequence
starts inside one episode and is cut at its end; steps past the end are padding with
mask 0 (losses ignore them). Episodes shorter than the sequence length are still used
whole, which matters early in CartPole, where episodes last 10-20 steps.

Legend: L lanes (= envs), N steps per lane, B batch, T sequence length.
"""
from __future__ import annotations

from typing import Any

import numpy as np


class Replay:
    def __init__(self, capacity: int, lanes: int, fields: dict[str, tuple[tuple[int, ...], Any]],
                 seed: int = 0) -> None:
        """`fields`: name -> (shape of one step, dtype). is_first / is_last / is_terminal,
        reward and action are fields like any other."""
        self.lanes = lanes
        self.size = max(1, capacity // lanes)  # steps per lane
        self.data = {k: np.zeros((lanes, self.size, *shape), dtype) for k, (shape, dtype) in fields.items()}
        self.count = np.zeros(lanes, np.int64)  # steps ever written per lane (absolute positions)
        self.ep_start = np.zeros((lanes, self.size), np.int64)  # absolute start of each step's episode
        self.ep_end = np.zeros((lanes, self.size), np.int64)  # absolute end (exclusive) once known
        self.cur_start = np.zeros(lanes, np.int64)
        self.open = np.zeros(lanes, bool)  # lane's newest episode has not ended yet
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return int(np.minimum(self.count, self.size).sum())

    def add(self, step: dict[str, np.ndarray]) -> None:
        """One step for every lane: each field (L, ...). Needs `is_first` and `is_last`."""
        pos = self.count % self.size
        lanes = np.arange(self.lanes)
        for k, arr in self.data.items():
            arr[lanes, pos] = step[k]
        first = np.asarray(step["is_first"], bool)
        self.cur_start = np.where(first, self.count, self.cur_start)
        self.ep_start[lanes, pos] = self.cur_start
        self.count += 1
        # A finished episode learns its end once: write it over the episode's stored steps
        # (amortised O(1) per step). Ongoing episodes read their end from `count`.
        for lane in np.flatnonzero(np.asarray(step["is_last"], bool)):
            begin = max(self.cur_start[lane], self.count[lane] - self.size)
            idx = np.arange(begin, self.count[lane]) % self.size
            self.ep_end[lane, idx] = self.count[lane]
        self.open = ~np.asarray(step["is_last"], bool)

    def _ends(self, lane: np.ndarray, abs_pos: np.ndarray) -> np.ndarray:
        """Absolute end (exclusive) of the episode holding each step."""
        start = self.ep_start[lane, abs_pos % self.size]
        ongoing = (start == self.cur_start[lane]) & self.open[lane]
        return np.where(ongoing, self.count[lane], self.ep_end[lane, abs_pos % self.size])

    def sample(self, batch: int, length: int) -> dict[str, np.ndarray]:
        """B sequences of T steps, each inside one episode, plus `mask` (B, T)."""
        filled = np.minimum(self.count, self.size)
        lanes_ok = np.flatnonzero(filled > 0)
        if len(lanes_ok) == 0:
            raise ValueError("replay is empty")
        # choose lanes in proportion to how much they hold, then a uniform step in the lane
        weights = filled[lanes_ok] / filled[lanes_ok].sum()
        lane = lanes_ok[self.rng.choice(len(lanes_ok), batch, p=weights)]
        oldest = self.count[lane] - filled[lane]
        pos = oldest + (self.rng.random(batch) * filled[lane]).astype(np.int64)
        start = np.maximum(self.ep_start[lane, pos % self.size], oldest)
        end = self._ends(lane, pos)
        # slide the window back so it fits inside the episode when the episode is long enough
        begin = np.minimum(pos, np.maximum(start, end - length))
        steps = begin[:, None] + np.arange(length)[None]  # (B, T) absolute positions
        mask = steps < end[:, None]
        steps = np.where(mask, steps, begin[:, None])  # padding repeats a valid step
        idx = (lane[:, None], steps % self.size)
        out = {k: arr[idx] for k, arr in self.data.items()}
        out["mask"] = mask
        # every sampled sequence starts a fresh latent state
        out["is_first"] = out["is_first"].copy()
        out["is_first"][:, 0] = True
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"data": self.data, "count": self.count, "ep_start": self.ep_start,
                "ep_end": self.ep_end, "cur_start": self.cur_start, "open": self.open}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in ("count", "ep_start", "ep_end", "cur_start", "open"):
            setattr(self, k, np.asarray(state[k]).copy())
        for k, v in state["data"].items():
            self.data[k][...] = v
