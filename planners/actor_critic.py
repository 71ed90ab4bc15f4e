"""The actor-critic of DreamerV3, trained purely in imagination.

From every replayed posterior state, the actor imagines H steps in the world model; a
two-hot critic (with a slow EMA copy as regulariser) estimates values; lambda-returns
become advantages scaled by the percentile return range. Discrete actors learn with
REINFORCE; continuous ones by default backpropagate the returns through the model's
dynamics (`grad: dynamics`), which learns faster on smooth control tasks.

Legend: N starts (B*T), H horizon, F feature, A action, K bins.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from planners.returns import ReturnNormalizer, lambda_returns
from worldmodel.dists import BoundedNormal, MultiCategorical, TwoHot
from worldmodel.nets import MLP


class Actor(nn.Module):
    def __init__(self, feat_dim: int, action_dim: int, sizes: tuple[int, ...], *, units: int,
                 layers: int, unimix: float, min_std: float, max_std: float) -> None:
        super().__init__()
        self.sizes, self.unimix = sizes, unimix
        self.min_std, self.max_std = min_std, max_std
        out = action_dim if sizes else 2 * action_dim
        self.net = MLP(feat_dim, out, units, layers, out_scale=0.01)

    def forward(self, feat: torch.Tensor, mask: torch.Tensor | None = None) -> MultiCategorical | BoundedNormal:
        raw = self.net(feat)
        if self.sizes:
            return MultiCategorical(raw, self.sizes, self.unimix, mask)
        return BoundedNormal(raw, self.min_std, self.max_std)


class ActorCritic(nn.Module):
    """Planner that acts with a learned policy; see planners/base.py for the interface."""

    def __init__(self, feat_dim: int, action_dim: int, sizes: tuple[int, ...], *, units: int,
                 layers: int, horizon: int, gamma: float, lam: float, entropy: float, unimix: float,
                 min_std: float, max_std: float, slow_rate: float, slowreg: float, grad: str,
                 bins: int, actor_lr: float, critic_lr: float, actor_clip: float, critic_clip: float,
                 retnorm_rate: float, eps: float = 1e-5, cost_penalty: float = 0.0) -> None:
        super().__init__()
        self.actor = Actor(feat_dim, action_dim, sizes, units=units, layers=layers, unimix=unimix,
                           min_std=min_std, max_std=max_std)
        self.critic = MLP(feat_dim, bins, units, layers, out_scale=0.0)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.twohot = TwoHot(bins)
        self.horizon, self.gamma, self.lam, self.entropy = horizon, gamma, lam, entropy
        self.slow_rate, self.slowreg = slow_rate, slowreg
        self.discrete = bool(sizes)
        self.grad = ("reinforce" if self.discrete else "dynamics") if grad == "auto" else grad
        self.actor_clip, self.critic_clip = actor_clip, critic_clip
        self.retnorm = ReturnNormalizer(rate=retnorm_rate)
        self.cost_penalty = cost_penalty  # imagined reward penalty per unit of predicted rule cost
        # set under torchrun: averages gradients over ranks (worldmodel/distributed.py)
        self.grad_sync: Any = None
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=actor_lr, eps=eps)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=critic_lr, eps=eps)

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self.twohot.to(self.critic.head.weight.device)
        return out

    # -- acting -------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, model: Any, state: dict[str, torch.Tensor], mask: torch.Tensor | None = None,
            explore: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        dist = self.actor(model.feat(state), mask)
        action = dist.sample() if explore else dist.mode()
        info = {"preferences": dist.preferences()} if self.discrete else {}
        return action, info

    def reset(self, done: torch.Tensor) -> None:
        pass  # a policy keeps no per-env planning state

    def value(self, feat: torch.Tensor) -> torch.Tensor:
        return self.twohot.mean(self.critic(feat))

    # -- learning -----------------------------------------------------------------------
    def update(self, model: Any, start: dict[str, torch.Tensor], start_cont: torch.Tensor,
               weight: torch.Tensor) -> dict[str, float]:
        start = {k: v.detach() for k, v in start.items()}
        dynamics = self.grad == "dynamics"
        logps: list[torch.Tensor] = []
        entropies: list[torch.Tensor] = []

        def policy(feat: torch.Tensor) -> torch.Tensor:
            # The actor's log-prob and entropy are kept while imagining, so the actor is not
            # run a second time over all N*H states for its loss.
            dist = self.actor(feat if dynamics else feat.detach())
            action = dist.rsample() if dynamics else dist.sample()
            entropies.append(dist.entropy())
            if not dynamics:
                logps.append(dist.log_prob(action))
            return action

        model.requires_grad_(False)  # the model is a fixed simulator here
        try:
            feat, action, _ = model.imagine(start, policy, self.horizon)  # (N, H+1, F), (N, H, A)
            nxt = feat[:, 1:].contiguous()
            reward = model.reward(nxt)  # (N, H)
            if self.cost_penalty:
                reward = reward - self.cost_penalty * model.cost(nxt)
            cont = torch.cat([start_cont[:, None].float(), model.cont(nxt)], 1)  # (N, H+1)
        finally:
            model.requires_grad_(True)
        # weight of each imagined state: probability it is reached, times the start's weight
        disc = torch.cumprod(cont.detach() * self.gamma, 1) / self.gamma  # (N, H+1)
        state_weight = (disc * weight[:, None]).detach()[:, :-1]  # (N, H)
        feat_c = feat.detach()
        logits = self.critic(feat_c)  # (N, H+1, K), one critic pass for returns and loss
        if dynamics:  # returns must carry gradients through the values of imagined states
            value = self.twohot.mean(self.critic(feat))
        else:
            value = self.twohot.mean(logits).detach()
        ret = lambda_returns(reward, cont[:, 1:], value, self.gamma, self.lam)  # (N, H)
        self.retnorm.update(ret)
        scale = self.retnorm.scale
        entropy = torch.stack(entropies, 1)  # (N, H)
        if dynamics:
            objective = (ret - value[:, :-1].detach()) / scale
        else:
            adv = ((ret - value[:, :-1]) / scale).detach()
            objective = torch.stack(logps, 1) * adv
        actor_loss = -(state_weight * (objective + self.entropy * entropy)).mean()
        actor_norm = self._step(actor_loss, self.actor, self.actor_opt, self.actor_clip)

        # critic: two-hot regression on lambda-returns, regularised towards the slow critic
        logits = logits[:, :-1]
        with torch.no_grad():
            slow_target = self.twohot.mean(self.slow_critic(feat_c[:, :-1].contiguous()))
        critic_loss = self.twohot.loss(logits, ret.detach()) + self.slowreg * self.twohot.loss(logits, slow_target)
        critic_loss = (state_weight * critic_loss).mean()
        critic_norm = self._step(critic_loss, self.critic, self.critic_opt, self.critic_clip)
        with torch.no_grad():
            for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters()):
                slow.lerp_(fast, self.slow_rate)
        return {"actor_loss": float(actor_loss.detach()), "critic_loss": float(critic_loss.detach()),
                "actor_entropy": float(entropy.detach().mean()), "imag_return": float(ret.detach().mean()),
                "imag_reward": float(reward.detach().mean()), "return_scale": scale,
                "actor_grad_norm": float(actor_norm), "critic_grad_norm": float(critic_norm)}

    def _step(self, loss: torch.Tensor, net: nn.Module, opt: torch.optim.Optimizer, clip: float) -> torch.Tensor:
        """Backward, average over ranks (torchrun), clip, and step unless the gradient is
        non-finite (then skip: the agent counts it). Returns the gradient norm."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_sync is not None:
            self.grad_sync(net.parameters())
        norm = nn.utils.clip_grad_norm_(net.parameters(), clip)
        if torch.isfinite(norm):
            opt.step()
        return norm

    def state_dict(self, *args, **kwargs) -> dict[str, Any]:
        state = super().state_dict(*args, **kwargs)
        state["actor_opt"] = self.actor_opt.state_dict()
        state["critic_opt"] = self.critic_opt.state_dict()
        state["retnorm"] = self.retnorm.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> Any:
        state = dict(state)
        self.actor_opt.load_state_dict(state.pop("actor_opt"))
        self.critic_opt.load_state_dict(state.pop("critic_opt"))
        self.retnorm.load_state_dict(state.pop("retnorm"))
        return super().load_state_dict(state, strict)
