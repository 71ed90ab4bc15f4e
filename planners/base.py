"""The planner interface: everything that chooses actions with the world model.

A planner sees the world model only through its verbs (`imagine`, `reward`, `cont`,
`cost`, `decode`, `feat`) and works on the latent state the runtime keeps for each env.

  act(model, state, mask=None, explore=True) -> (action (B, A), info)
      state: the model's posterior after the current observation, batched over B envs.
      mask:  (B, A) bool of allowed discrete actions from the shield, or None.
      info:  may hold "preferences" (B, A): per-action scores the shield uses to pick the
             next-ranked allowed action on a veto.
  update(model, start, start_cont, weight) -> metrics
      start: posterior states (N, ...) from a replayed batch, flattened over (B, T);
      start_cont (N,) = 1 - is_terminal; weight (N,) = 1 for real steps, 0 for padding.
"""
from __future__ import annotations

from typing import Any, Protocol

import torch


class Planner(Protocol):
    def act(self, model: Any, state: dict[str, torch.Tensor], mask: torch.Tensor | None = None,
            explore: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def update(self, model: Any, start: dict[str, torch.Tensor], start_cont: torch.Tensor,
               weight: torch.Tensor) -> dict[str, float]: ...

    def reset(self, done: torch.Tensor) -> None:
        """Forget per-env planning state (e.g. a warm-started plan) where done (B,) is True."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
