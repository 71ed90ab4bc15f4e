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
      Optional keywords: allowed (N, A), the shield's verdicts at the starts; replay, the
      replayed sequences themselves (feat, reward, cont, last, mask (B, T), and novelty
      (B, T) when the planner explores) for a critic
      that also learns from real returns (planners/actor_critic.py `_replay_loss`).
      The agent runs it as two halves, `gradients(...)` (device work only, which
      `run.cuda_graphs` captures) then `apply(...)` (host checks, optimizer steps), of the
      ActorCritic itself or the one an MPC planner wraps (`actor_critic`).
"""
from __future__ import annotations

from typing import Any, Protocol

import torch


class Planner(Protocol):
    def act(self, model: Any, state: dict[str, torch.Tensor], mask: torch.Tensor | None = None,
            explore: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def update(self, model: Any, start: dict[str, torch.Tensor], start_cont: torch.Tensor,
               weight: torch.Tensor, allowed: torch.Tensor | None = None,
               replay: dict[str, torch.Tensor] | None = None) -> dict[str, float]: ...

    def reset(self, done: torch.Tensor) -> None:
        """Forget per-env planning state (e.g. a warm-started plan) where done (B,) is True."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


# -- the latent index: an optional speed-up of the verbs --------------------------------------
# A world model whose features hold a one-hot latent (worldmodel.WorldModel sets
# `latent_index = True`) can return the sampled classes with its imagined features; its heads
# then take them as a second argument and skip the one-hot products (worldmodel/nets.py).
# Models without one (test doubles, other simulators) keep the plain verbs.

def imagine_indexed(model: Any, start: dict[str, torch.Tensor], policy: Any, horizon: int,
                    **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor, Any, torch.Tensor | None]:
    """model.imagine(...) plus the latent index of every feat, or None. A callable `policy`
    is called as policy(feat, index)."""
    if getattr(model, "latent_index", False):
        return model.imagine(start, policy, horizon, indices=True, **kwargs)
    plain = policy if torch.is_tensor(policy) else (lambda feat: policy(feat, None))
    return (*model.imagine(start, plain, horizon, **kwargs), None)


def with_index(head: Any, feat: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """head(feat, index) where the index is known, else head(feat)."""
    return head(feat) if index is None else head(feat, index)
