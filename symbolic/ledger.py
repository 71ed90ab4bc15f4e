"""``Ledger``: per-step and per-episode counts of what the shield did.

Feed it the shield's info (arrays of shape (N,), or one env's scalar dict from
``ShieldWrapper``'s ``info["shield"]``) and the episode-end flags. Executed
violations are the number to watch: with a sound shield and rules that hold in
the real env they stay at zero, and anything else flags a wrong model bound.
"""
from __future__ import annotations

from typing import Any as AnyType

import numpy as np

_COUNTS = ("vetoed", "executed_violation", "dead_end", "fallback")
_SUMS = ("projection_distance", "cost")


class Ledger:
    def __init__(self, num_envs: int = 1) -> None:
        self.num_envs = num_envs
        self.steps = 0
        self.totals = {k: 0.0 for k in (*_COUNTS, *_SUMS)}
        self.latency_ms: list[float] = []
        self.episode_records: list[dict[str, float]] = []
        self._episode = [self._blank() for _ in range(num_envs)]

    @staticmethod
    def _blank() -> dict[str, float]:
        return {"steps": 0.0, **{k: 0.0 for k in (*_COUNTS, *_SUMS)}}

    def update(self, info: dict[str, AnyType], is_last: AnyType = None) -> None:
        """Add one batched step; ``is_last`` (N,) closes those envs' episodes."""
        info = info.get("shield", info)
        columns = {k: np.asarray(info.get(k, 0.0), dtype=np.float64).reshape(-1)
                   for k in (*_COUNTS, *_SUMS)}
        rows = max(len(v) for v in columns.values())
        columns = {k: np.broadcast_to(v, (rows,)) for k, v in columns.items()}
        self.steps += rows
        for k, v in columns.items():
            self.totals[k] += float(v.sum())
        if "latency_ms" in info:
            self.latency_ms.append(float(np.asarray(info["latency_ms"]).mean()))
        last = np.zeros(rows, bool) if is_last is None else np.asarray(is_last, bool).reshape(-1)
        for i in range(rows):
            episode = self._episode[i % self.num_envs]
            episode["steps"] += 1
            for k, v in columns.items():
                episode[k] += float(v[i])
            if last[i % len(last)]:
                self.episode_records.append(dict(episode, env=float(i)))
                self._episode[i % self.num_envs] = self._blank()

    def summary(self) -> dict[str, float]:
        steps = max(self.steps, 1)
        latency = np.asarray(self.latency_ms) if self.latency_ms else np.zeros(1)
        return {
            "steps": float(self.steps),
            "episodes": float(len(self.episode_records)),
            "vetoes": self.totals["vetoed"],
            "veto_rate": self.totals["vetoed"] / steps,
            "executed_violations": self.totals["executed_violation"],
            "dead_ends": self.totals["dead_end"],
            "fallbacks": self.totals["fallback"],
            "mean_projection_distance": self.totals["projection_distance"] / steps,
            "mean_cost": self.totals["cost"] / steps,
            "episodes_with_violation": float(sum(r["executed_violation"] > 0
                                                 for r in self.episode_records)),
            "mean_latency_ms": float(latency.mean()),
            "max_latency_ms": float(latency.max()),
        }
