"""The actor-critic of DreamerV3, trained purely in imagination.

From every replayed posterior state, the actor imagines H steps in the world model; a
two-hot critic (with a slow EMA copy as regulariser) estimates values; lambda-returns
become advantages scaled by the percentile return range. Discrete actors learn with
REINFORCE; continuous ones by default backpropagate the returns through the model's
dynamics (`grad: dynamics`), which learns faster on smooth control tasks.

Legend: N starts (B*T), H horizon, F feature, A action, K bins.
"""
from __future__ import annotations

import contextlib
import copy
import math
from typing import Any

import torch
from torch import nn

from planners.base import imagine_indexed, with_index
from planners.returns import ReturnNormalizer, lambda_returns
from worldmodel.dists import BoundedNormal, MultiCategorical, TwoHot, narrow_mask
from worldmodel.nets import MLP, adam


class Actor(nn.Module):
    def __init__(self, feat_dim: int, action_dim: int, sizes: tuple[int, ...], *, units: int,
                 layers: int, unimix: float, min_std: float, max_std: float,
                 latent: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        self.sizes, self.unimix, self.action_dim = sizes, unimix, action_dim
        self.min_std, self.max_std = min_std, max_std
        out = action_dim if sizes else 2 * action_dim
        self.net = MLP(feat_dim, out, units, layers, out_scale=0.01, latent=latent)

    def forward(self, feat: torch.Tensor, mask: torch.Tensor | None = None,
                index: torch.Tensor | None = None) -> MultiCategorical | BoundedNormal:
        """`index`: the latent classes of feat (..., S), when known (see worldmodel/nets.py)."""
        return self.dist(self.net(feat, index), mask)

    def noise(self, lead: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """The random draws of `lead` samples, for `dist.sample(noise=...)`: U[0, 1) per head
        (lead..., heads) when discrete, standard normals (lead..., A) when continuous."""
        if self.sizes:
            return torch.rand(*lead, len(self.sizes), generator=generator, device=device)
        return torch.randn(*lead, self.action_dim, generator=generator, device=device)

    def dist(self, raw: torch.Tensor, mask: torch.Tensor | None = None) -> MultiCategorical | BoundedNormal:
        """The distribution of the network's raw output (so one pass serves several masks)."""
        if self.sizes:
            return MultiCategorical(raw, self.sizes, self.unimix, mask)
        return BoundedNormal(raw, self.min_std, self.max_std)


class ActorCritic(nn.Module):
    """Planner that acts with a learned policy; see planners/base.py for the interface."""

    def __init__(self, feat_dim: int, action_dim: int, sizes: tuple[int, ...], *, units: int,
                 layers: int, horizon: int, gamma: float, lam: float, entropy: float, unimix: float,
                 min_std: float, max_std: float, slow_rate: float, slowreg: float, grad: str,
                 bins: int, actor_lr: float, critic_lr: float, actor_clip: float, critic_clip: float,
                 retnorm_rate: float, eps: float = 1e-5, cost_penalty: float = 0.0,
                 proposal_loss: float = 0.0, proposal_margin: float = 0.05,
                 latent: tuple[int, int, int] | None = None, replay_loss: float = 0.0,
                 explore: float = 0.0) -> None:
        super().__init__()
        # latent: the feature's layout (deter, groups, classes), so that the first layers can
        # take the sampled classes instead of the one-hot (worldmodel/nets.py LatentLinear)
        self.actor = Actor(feat_dim, action_dim, sizes, units=units, layers=layers, unimix=unimix,
                           min_std=min_std, max_std=max_std, latent=latent)
        self.critic = MLP(feat_dim, bins, units, layers, out_scale=0.0, latent=latent)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.twohot = TwoHot(bins)
        self.horizon, self.gamma, self.lam, self.entropy = horizon, gamma, lam, entropy
        self.slow_rate, self.slowreg = slow_rate, slowreg
        # weight of the critic's loss on lambda-returns along replayed sequences (`_replay_loss`)
        self.replay_loss = replay_loss
        # weight of the model's exploration bonus (its `novelty` verb) in every reward the
        # critic learns from, imagined or replayed (worldmodel/explore.py)
        self.explore = explore
        self.discrete = bool(sizes)
        self.grad = ("reinforce" if self.discrete else "dynamics") if grad == "auto" else grad
        self.actor_clip, self.critic_clip = actor_clip, critic_clip
        self.retnorm = ReturnNormalizer(rate=retnorm_rate)
        self.cost_penalty = cost_penalty  # imagined reward penalty per unit of predicted rule cost
        # weight of -log P(allowed) at replayed real states, labelled by the shield (discrete)
        self.proposal_loss = proposal_loss
        # Hinge: no push where P(forbidden) <= margin. Without it the loss drives a forbidden
        # action to the unimix floor in every state the actor cannot yet tell apart (measured
        # on MiniGrid: "forward" vanished everywhere, so the goal was never reached again).
        self.proposal_floor = math.log1p(-proposal_margin) if 0.0 < proposal_margin < 1.0 else 0.0
        # Discrete, shielded (set by the factory): act in imagination under the world model's
        # predicted rule verdicts. The real-step shield replaces forbidden actions, so replay
        # never shows their outcome; an unmasked actor would learn from the model's guesses
        # about them (measured on MiniGrid: it preferred walking into lava, and the masked
        # greedy policy then repeated a no-op in front of it).
        self.imagine_masked = False
        # set under torchrun: averages gradients over ranks (worldmodel/distributed.py)
        self.grad_sync: Any = None
        self.actor_opt = adam(self.actor.parameters(), lr=actor_lr, eps=eps)
        self.critic_opt = adam(self.critic.parameters(), lr=critic_lr, eps=eps)

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self.twohot.to(self.critic.head.weight.device)
        return out

    # -- acting -------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, model: Any, state: dict[str, torch.Tensor], mask: torch.Tensor | None = None,
            explore: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        exact = mask  # the rules' verdicts at the real observation, or None
        feat = model.feat(state)
        raw = self.actor.net(feat)
        # Under learned verdicts (discrete, shield.imagine): the agent's own proposal is the
        # actor masked where its world model predicts the rules forbid an action, as in
        # imagination; the rules' exact mask (when given) narrows it further, and decides
        # alone in a head where the two leave nothing.
        own = None  # the own proposal's distribution, when an exact mask is there to score it
        if self.imagine_masked and getattr(model, "verdict_head", None) is not None:
            learned = model.allowed(feat) > 0.5  # (B, A)
            if mask is None:
                mask = learned
            else:
                own = self.actor.dist(raw, learned)
                mask = narrow_mask(mask, learned, self.actor.sizes)
        dist = self.actor.dist(raw, mask)
        action = dist.sample() if explore else dist.mode()
        info = {"preferences": dist.preferences()} if self.discrete else {}
        if mask is not None and self.discrete and mask.shape[-1] == sum(dist.sizes) and exact is not None:
            # how often the agent would propose a forbidden action without the shield's mask:
            # the veto rate it still leans on (under learned verdicts: the agent's own
            # proposal; otherwise the bare actor, which `proposal_loss` teaches)
            info["proposal_risk"] = (1.0 - (own.allowed_logmass(exact, masked=True) if own is not None
                                            else dist.allowed_logmass(exact)).exp()).clamp(min=0.0)
        return action, info

    def reset(self, done: torch.Tensor) -> None:
        pass  # a policy keeps no per-env planning state

    def value(self, feat: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        return self.twohot.mean(self.critic(feat, index))

    # -- learning -----------------------------------------------------------------------
    def update(self, model: Any, start: dict[str, torch.Tensor], start_cont: torch.Tensor,
               weight: torch.Tensor, allowed: torch.Tensor | None = None,
               replay: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        """`allowed` (N, A) bool: the shield's verdict per action at each start, which are real
        replayed states (discrete actions with rules); trains the actor's proposals.
        `replay`: the replayed sequences the starts came from, for `_replay_loss`.
        Two halves, which the agent runs apart (worldmodel/graphs.py): `gradients` on the
        device alone (capturable as a CUDA graph), then `apply` with the host's checks and
        the optimizers."""
        return self.apply(self.gradients(model, start, start_cont, weight, allowed, replay))

    def gradients(self, model: Any, start: dict[str, torch.Tensor], start_cont: torch.Tensor,
                  weight: torch.Tensor, allowed: torch.Tensor | None = None,
                  replay: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The actor's and critic's losses and their gradients (left in .grad); returns the
        losses and metrics as tensors. Reads nothing back to the host."""
        out = self.losses(model, start, start_cont, weight, allowed, replay)
        self.actor_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        # The actor's loss reaches no critic weight (its values are taken with the critic's
        # gradients off) and the critic's targets are detached: one backward serves both.
        torch.autograd.backward([out["actor_loss"], out["critic_loss"]])
        return out

    def apply(self, out: dict[str, torch.Tensor]) -> dict[str, float]:
        """Clip and step the actor and critic (each skipped on a non-finite gradient), move
        the slow critic, and read the metrics back (one transfer)."""
        out = {**out, "actor_grad_norm": self._step(self.actor, self.actor_opt, self.actor_clip),
               "critic_grad_norm": self._step(self.critic, self.critic_opt, self.critic_clip)}
        with torch.no_grad():
            torch._foreach_lerp_(list(self.slow_critic.parameters()), list(self.critic.parameters()),
                                 self.slow_rate)
        values = torch.stack([v.detach().float().reshape(()) for v in out.values()]).tolist()
        return dict(zip(out, values))

    def losses(self, model: Any, start: dict[str, torch.Tensor], start_cont: torch.Tensor,
               weight: torch.Tensor, allowed: torch.Tensor | None = None,
               replay: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Imagine from `start` and compute "actor_loss" and "critic_loss" (with graphs) and
        the metrics (detached), all tensors."""
        start = {k: v.detach() for k, v in start.items()}
        dynamics = self.grad == "dynamics"
        logps: list[torch.Tensor] = []
        entropies: list[torch.Tensor] = []
        masked: list[torch.Tensor] = []  # share of imagined actions predicted forbidden, per step
        # only once the model learns verdicts: the replay has the shield's labels (`allowed`)
        use_mask = self.imagine_masked and allowed is not None and getattr(model, "verdict_head", None) is not None

        def policy(feat: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
            # The actor's log-prob and entropy are kept while imagining, so the actor is not
            # run a second time over all N*H states for its loss (measured: a second, batched
            # pass is 2% faster for `small` but 5% slower for `medium`).
            mask = None
            if use_mask:
                with torch.no_grad():
                    mask = with_index(model.allowed, feat.detach(), index) > 0.5  # (N, A)
                masked.append(1.0 - mask.float().mean())
            with torch.enable_grad():  # REINFORCE imagines under no_grad; the actor needs it
                dist = self.actor(feat, mask, index)
                action = dist.rsample() if dynamics else dist.sample()
                entropies.append(dist.entropy())
                if not dynamics:
                    logps.append(dist.log_prob(action))
            return action

        # Time-major (H+1, N, F) so that the heads read feat[1:] and feat[:-1] without a copy.
        # REINFORCE needs no gradient through the rollout: imagine without autograd
        # bookkeeping (only the actor's pass inside `policy` records a graph).
        model.requires_grad_(False)  # the model is a fixed simulator here
        try:
            with contextlib.nullcontext() if dynamics else torch.no_grad():
                # index (H+1, N, S): the latent classes of feat, for the heads (or None)
                feat, _, _, index = imagine_indexed(model, start, policy, self.horizon, time_major=True)
                nxt = feat[1:]  # (H, N, F)
                idx, idx_next, idx_last = ((None,) * 3 if index is None else (index[:-1], index[1:], index[-1:]))
                reward = with_index(model.reward, nxt, idx_next)  # (H, N)
                if self.cost_penalty:
                    reward = reward - self.cost_penalty * with_index(model.cost, nxt, idx_next)
                bonus = None
                if self.explore:
                    bonus = with_index(model.novelty, nxt, idx_next)  # (H, N)
                    reward = reward + self.explore * bonus
                cont = torch.cat([start_cont[None].float(), with_index(model.cont, nxt, idx_next)], 0)  # (H+1, N)
        finally:
            model.requires_grad_(True)
        # weight of each imagined state: probability it is reached, times the start's weight
        disc = torch.cumprod(cont.detach() * self.gamma, 0) / self.gamma  # (H+1, N)
        state_weight = (disc * weight[None]).detach()[:-1]  # (H, N)
        feat_c = feat.detach()
        # The critic's loss covers s_0..s_{H-1}: its pass (with gradients) serves the values
        # of those states too; the bootstrap value of s_H comes from a pass without them.
        logits = self.critic(feat_c[:-1], idx)  # (H, N, K)
        if dynamics:  # returns must carry gradients through the values of imagined states
            self.critic.requires_grad_(False)  # ...to the actor only: no critic weight gradients
            try:
                value = self.twohot.mean(self.critic(feat, index))  # (H+1, N)
            finally:
                self.critic.requires_grad_(True)
        else:
            with torch.no_grad():
                value = torch.cat([self.twohot.mean(logits), self.twohot.mean(self.critic(feat_c[-1:], idx_last))], 0)
        # lambda_returns takes (N, H) tensors: transposed views of the small (H, N) ones
        ret = lambda_returns(reward.t(), cont[1:].t(), value.t(), self.gamma, self.lam).t()  # (H, N)
        self.retnorm.update(ret)
        scale = self.retnorm.scale
        entropy = torch.stack(entropies, 0)  # (H, N)
        if dynamics:
            objective = (ret - value[:-1].detach()) / scale
        else:
            adv = ((ret - value[:-1]) / scale).detach()
            objective = torch.stack(logps, 0) * adv
        actor_loss = -(state_weight * (objective + self.entropy * entropy)).mean()
        extra: dict[str, torch.Tensor] = {}
        if allowed is not None and self.proposal_loss and self.discrete:
            # Learning from the verifier: at real states the shield's verdicts are exact labels,
            # so the actor is taught directly to put its mass on allowed actions (-log P(allowed)),
            # not only through imagined costs the world model has to learn first.
            logmass = self.actor(feat_c[0], None, None if index is None else index[0]).allowed_logmass(allowed)  # (N,)
            norm = weight.sum().clamp(min=1.0)
            proposal = (weight * (self.proposal_floor - logmass).clamp(min=0.0)).sum() / norm
            actor_loss = actor_loss + self.proposal_loss * proposal
            extra = {"proposal_loss": proposal.detach(),
                     "proposal_risk": (weight * (1.0 - logmass.detach().exp())).sum() / norm}

        # critic: two-hot regression on lambda-returns, regularised towards the slow critic
        # (one log_softmax of the logits serves both targets)
        with torch.no_grad():
            slow_target = self.twohot.mean(self.slow_critic(feat_c[:-1], idx))
        critic_loss = self.twohot.mixture_loss(logits, [(ret.detach(), 1.0), (slow_target, self.slowreg)])
        critic_loss = (state_weight * critic_loss).mean()
        if replay is not None and self.replay_loss:
            on_replay = self._replay_loss(replay)
            critic_loss = critic_loss + self.replay_loss * on_replay
            extra["critic_replay_loss"] = on_replay.detach()
        if masked:
            extra["imag_forbidden"] = torch.stack(masked).mean()
        if bonus is not None:
            extra["imag_bonus"] = bonus.detach().mean()
        return {"actor_loss": actor_loss, "critic_loss": critic_loss,
                "actor_entropy": entropy.detach().mean(), "imag_return": ret.detach().mean(),
                "imag_reward": reward.detach().mean(), "return_scale": torch.as_tensor(scale), **extra}

    def _replay_loss(self, replay: dict[str, torch.Tensor]) -> torch.Tensor:
        """The critic's two-hot loss on lambda-returns along replayed sequences, as in the
        2024 DreamerV3 (its `repval` loss): real rewards and terminations over up to T steps,
        where imagination reaches H. Values then propagate T steps per fit instead of ~H,
        which matters when the cost of a slow drift (CartPole's cart leaving the track)
        shows only beyond the imagination horizon.
        replay: feat (B, T, F), index (B, T, S) or absent, reward, cont (= 1 - is_terminal),
        last (is_last), mask (B, T), as replayed: reward[t] and cont[t] come with obs t;
        novelty (B, T), the model's exploration bonus at each feat, when exploring."""
        feat, index, mask = replay["feat"], replay.get("index"), replay["mask"].float()
        idx, idx_last = (None, None) if index is None else (index[:, :-1], index[:, -1:])
        logits = self.critic(feat[:, :-1], idx)  # (B, T-1, K): s_0..s_{T-2} learn
        with torch.no_grad():
            value = torch.cat([self.twohot.mean(logits), self.twohot.mean(self.critic(feat[:, -1:], idx_last))], 1)
            slow = self.twohot.mean(self.slow_critic(feat[:, :-1], idx))
            # the data ends at s_{t+1} where it is the episode's last step or padding follows it;
            # at the window's end R_{T-1} = v_{T-1} (lambda_returns)
            after = torch.cat([mask[:, 2:], torch.ones_like(mask[:, :1])], 1)  # mask at t+2
            stop = replay["last"][:, 1:].bool() | (after == 0)
            reward = replay["reward"][:, 1:].float()
            if self.explore and "novelty" in replay:  # the same rewards as in imagination
                reward = reward + self.explore * replay["novelty"][:, 1:].float()
            ret = lambda_returns(reward, replay["cont"][:, 1:].float(), value,
                                 self.gamma, self.lam, stop)  # (B, T-1)
        loss = self.twohot.mixture_loss(logits, [(ret, 1.0), (slow, self.slowreg)])
        valid = mask[:, 1:]  # R_t needs a real s_{t+1}
        return (valid * loss).sum() / valid.sum().clamp(min=1.0)

    def _step(self, net: nn.Module, opt: torch.optim.Optimizer, clip: float) -> torch.Tensor:
        """Average the gradients over ranks (torchrun), clip, and step unless they are
        non-finite (then skip: the agent counts it). Returns the gradient norm."""
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
