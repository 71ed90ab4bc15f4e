"""Per-env monitor state for past-time operators (historically, once, prev).

Each past operator keeps a shift register of its body's last K values (truth
and robustness), oldest first: (N, K) per operator. A new episode resets the
row to the operator's neutral value (historically: true/+inf, once/prev:
false/-inf), which is exactly "no history yet". Only the *executed* action is
ever committed, never a proposal or a candidate.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .compile_torch import Pair


class Monitor:
    def __init__(self, sizes: dict[str, int], neutral: dict[str, bool], num_envs: int,
                 dtype: torch.dtype = torch.float64) -> None:
        self.sizes, self.neutral = dict(sizes), dict(neutral)
        self.num_envs, self.dtype = num_envs, dtype
        self.truth: dict[str, Tensor] = {}
        self.robustness: dict[str, Tensor] = {}
        self.reset()

    def _fill(self, key: str, rows: int) -> Pair:
        every = self.neutral[key]
        return (torch.full((rows, self.sizes[key]), every),
                torch.full((rows, self.sizes[key]), float("inf") if every else float("-inf"),
                           dtype=self.dtype))

    def reset(self, mask: Tensor | None = None) -> None:
        """Forget the history of the envs in ``mask`` (N,) bool, or of all envs."""
        for key in self.sizes:
            truth, rob = self._fill(key, self.num_envs)
            if mask is None or key not in self.truth:
                self.truth[key], self.robustness[key] = truth, rob
            else:
                rows = torch.as_tensor(mask, dtype=torch.bool)
                self.truth[key][rows] = truth[rows]
                self.robustness[key][rows] = rob[rows]

    def history(self) -> dict[str, Pair]:
        return {k: (self.truth[k], self.robustness[k]) for k in self.sizes}

    def commit(self, bodies: dict[str, Pair]) -> None:
        """Shift in the body values (N,) or (N, 1) observed with the executed action."""
        for key, (truth, rob) in bodies.items():
            if key not in self.sizes:
                continue
            truth, rob = truth.reshape(self.num_envs, 1), rob.reshape(self.num_envs, 1)
            self.truth[key] = torch.cat([self.truth[key], truth], 1)[:, -self.sizes[key]:]
            self.robustness[key] = torch.cat([self.robustness[key], rob.to(self.dtype)],
                                             1)[:, -self.sizes[key]:]

    def state_dict(self) -> dict:
        """Plain tensors/ints/strings only, so ``torch.load(weights_only=True)`` works."""
        return {"num_envs": self.num_envs,
                "registers": {k: {"truth": self.truth[k].clone(),
                                  "robustness": self.robustness[k].clone()} for k in self.sizes}}

    def load_state_dict(self, state: dict) -> None:
        if int(state["num_envs"]) != self.num_envs:
            raise ValueError(f"monitor state is for {state['num_envs']} envs, not {self.num_envs}")
        for key, reg in state["registers"].items():
            if key not in self.sizes:
                raise KeyError(f"monitor state has an unknown register '{key}'")
            self.truth[key] = reg["truth"].clone().bool()
            self.robustness[key] = reg["robustness"].clone().to(self.dtype)
