"""Latent model-predictive control: sample action sequences, imagine them in the world
model, score them, refit the sampling distribution to the best, repeat; act with the
first step of the best plan. CEM and MPPI (planners/cem.py, planners/mppi.py) differ only
in how elites are weighted. Everything is batched over envs and candidates.

Recipe of one decision (`act`), for B envs in parallel:
  1. Start from the previous plan shifted one step (warm start), std reset to init_std.
  2. Once per decision, the learned actor proposes `policy_fraction` of the candidates
     by acting in imagination (TD-MPC2); they are re-scored every iteration.
  3. Each iteration samples the rest, imagines all N candidates H steps and scores
        G = sum_t gamma^t * prod_{k<t} c_k * r_t  +  gamma^H * prod_{k<H} c_k * V(s_H)
     with the model's reward r and continue probability c and the critic's value V;
     with planner.prior > 0 plus the actor's log-likelihood of the plan (`_prior_bonus`),
     and with behavior.explore > 0, while exploring, r_t plus that weight x the model's
     novelty bonus (worldmodel/explore.py).
  4. With rules, candidates predicted to break a hard rule are discarded; if fewer than
     k are safe, elites are ranked by (violations ascending, robustness descending)
     as in SafeDreamer's constrained CEM.
  5. The distribution is refitted to the k elites (weights from `elite_weights`), with
     momentum: continuous Gaussians per step and dimension; discrete categoricals per
     step and head of a Discrete/MultiDiscrete space, over concatenated one-hots.
The planner owns no model weights: it wraps the ActorCritic, whose `update` keeps the
actor (proposals) and critic (bootstrap) learning, and whose weights are its state_dict.

Legend: B envs, N candidates per env, M actor proposals, S = N - M sampled, k elites,
H horizon, A action size (sum of head sizes for discrete), F feature.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from envs.spaces import ActionSpec
from planners.base import imagine_indexed, with_index
from planners.imagined_shield import ImaginationShield
from worldmodel.dists import sample_index

State = dict[str, torch.Tensor]


class LatentMPC(nn.Module):
    """Shared sampling, scoring, safety filtering and refitting; see planners/base.py."""

    def __init__(self, actor_critic: nn.Module, act_spec: ActionSpec, *, samples: int = 128,
                 horizon: int = 15, iterations: int = 2, elites: int = 32, policy_fraction: float = 0.1,
                 momentum: float = 0.1, init_std: float = 1.0, min_std: float = 0.05,
                 min_prob: float = 0.01, temperature: float = 0.5, gamma: float | None = None,
                 rules: Any = None, cost_threshold: float = 0.5, seed: int = 0,
                 latent: str = "sample", prior: float = 0.0) -> None:
        super().__init__()
        assert samples > 0 and horizon > 0 and iterations > 0 and elites > 0
        self.actor_critic = actor_critic
        self.act_spec = act_spec
        self.sizes = tuple(act_spec.sizes) if act_spec.discrete else ()
        self.action_dim = act_spec.dim
        self.samples, self.horizon, self.iterations = samples, horizon, iterations
        self.elites = min(elites, samples)
        self.proposals = int(round(policy_fraction * samples)) if policy_fraction > 0 else 0
        self.proposals = min(self.proposals, samples - 1)  # keep at least one sampled candidate
        self.momentum, self.init_std, self.min_std, self.min_prob = momentum, init_std, min_std, min_prob
        self.temperature = temperature
        if prior < 0:
            raise ValueError(f"planner.prior must be >= 0, got {prior}")
        self.prior = prior
        self.gamma = float(actor_critic.gamma if gamma is None else gamma)
        self.shield = ImaginationShield(rules, act_spec, cost_threshold) if rules is not None else None
        self.seed = seed
        if latent not in ("sample", "mode"):
            raise ValueError(f"planner.latent must be sample or mode, got {latent!r}")
        # "mode": candidates are imagined with the prior's most likely latent at each step.
        # With "sample" every candidate draws its own latent noise, so the best-scored of N
        # is partly the luckiest draw (a winner's curse that grows with N).
        self._imagine_kw = {} if latent == "sample" else {"sample": False}
        self._generator: torch.Generator | None = None
        # the warm-started plan per env: mean (B, H, A) or probs (B, H, A); None until first act
        self.mean: torch.Tensor | None = None
        self.last_plan: torch.Tensor | None = None  # the fitted plan before the shift (for tests/logs)
        self._check_all: dict[int, bool] = {}  # per iteration: check every candidate in one pass
        # act(explore=True) with behavior.explore > 0: plans are also scored on the world
        # model's novelty bonus, as the critic's values are (planning to explore); greedy
        # decisions (evaluation) score the task's reward alone
        self._exploring = False

    # -- the wrapped actor-critic ------------------------------------------------------
    @property
    def actor(self) -> nn.Module:
        return self.actor_critic.actor

    @property
    def critic(self) -> nn.Module:
        return self.actor_critic.critic

    def update(self, model: Any, start: State, start_cont: torch.Tensor, weight: torch.Tensor,
               allowed: torch.Tensor | None = None, replay: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        return self.actor_critic.update(model, start, start_cont, weight, allowed, replay)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        # Only the actor-critic is learned; its weights are the checkpoint's "planner", so a run
        # trained with `actor` can be evaluated with `cem` and vice versa.
        return self.actor_critic.state_dict(*args, **kwargs)

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> Any:
        return self.actor_critic.load_state_dict(state, strict)

    # -- the plan ------------------------------------------------------------------------
    def _initial(self, batch: int, device: torch.device) -> torch.Tensor:
        """A blank plan (batch, H, A): zero mean, or uniform probabilities per head."""
        if not self.sizes:
            return torch.zeros(batch, self.horizon, self.action_dim, device=device)
        return torch.cat([torch.full((batch, self.horizon, n), 1.0 / n, device=device) for n in self.sizes], -1)

    def reset(self, done: torch.Tensor) -> None:
        if self.mean is None:
            return
        done = torch.as_tensor(done, device=self.mean.device).bool().reshape(-1)
        if done.shape[0] != self.mean.shape[0]:
            self.mean = None  # a different number of envs: start over
            return
        if done.any():
            self.mean[done] = self._initial(int(done.sum()), self.mean.device)

    def _shift(self) -> None:
        """Warm start: the plan for the next step is this plan, one step later."""
        blank = self._initial(self.mean.shape[0], self.mean.device)
        self.mean = torch.cat([self.mean[:, 1:], blank[:, -1:]], 1)

    def generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    # -- sampling --------------------------------------------------------------------------
    def _sample(self, mean: torch.Tensor, std: torch.Tensor, count: int,
                mask: torch.Tensor | None) -> torch.Tensor:
        """count candidates per env from the plan distribution -> (B, count, H, A)."""
        gen = self.generator(mean.device)
        B = mean.shape[0]
        if not self.sizes:
            noise = torch.randn(B, count, *mean.shape[1:], device=mean.device, generator=gen)
            return (mean[:, None] + std[:, None] * noise).clamp(-1.0, 1.0)
        probs = self._masked(mean, mask)[:, None].expand(B, count, *mean.shape[1:])
        parts = [F.one_hot(sample_index(p, gen), p.shape[-1]).float() for p in probs.split(self.sizes, -1)]
        return torch.cat(parts, -1)

    def _masked(self, probs: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Zero the first step's forbidden actions (the real-step shield's mask (B, A));
        a head with nothing allowed keeps its probabilities (the real shield falls back)."""
        if mask is None or mask.shape[-1] != self.action_dim:
            return probs  # e.g. a joint MultiDiscrete mask: left to the real-step veto
        first = []
        for p, m in zip(probs[:, 0].split(self.sizes, -1), mask.bool().split(self.sizes, -1)):
            m = m | ~m.any(-1, keepdim=True)
            q = p * m
            first.append(q / q.sum(-1, keepdim=True).clamp(min=1e-12))
        return torch.cat([torch.cat(first, -1)[:, None], probs[:, 1:]], 1)

    @torch.no_grad()
    def _propose(self, model: Any, start: State, mask: torch.Tensor | None) -> torch.Tensor:
        """The actor's candidates: act in imagination from M copies of each start -> (B*M, H, A)."""
        first = next(iter(start.values()))
        rows = first.shape[0]
        if mask is not None:  # (B, A) -> (B*M, A), matching the repeated starts
            mask = mask.repeat_interleave(rows // mask.shape[0], 0)
            if mask.shape[-1] != self.action_dim:
                mask = None  # e.g. a joint MultiDiscrete mask: left to the real-step veto
        # the actor's draws, all at once from the planner's generator: (H, B*M, K)
        noise = self.actor.noise((self.horizon, rows), self.generator(first.device), first.device)
        return self._proposals(model, start, mask, noise)

    def _proposals(self, model: Any, start: State, mask: torch.Tensor | None,
                   noise: torch.Tensor) -> torch.Tensor:
        """`_propose`'s imagination: the actor acts from start (B*M, ...) with the given draws
        noise (H, B*M, K), under mask (B*M, A) at the first step -> actions (B*M, H, A). Tensor
        work only, no generator: `run.compile` compiles it (`compile_imagination`)."""
        step = [0]

        def policy(feat: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
            t = step[0]
            step[0] += 1
            dist = self.actor_critic.actor(feat, mask if t == 0 else None, index)
            return dist.sample(noise=noise[t]).clamp(-1.0, 1.0)

        _, actions, _, _ = imagine_indexed(model, start, policy, self.horizon, **self._imagine_kw)
        return actions

    # -- scoring ---------------------------------------------------------------------------
    # With rules, the candidates with the best returns are checked first: 2 x elites of them.
    # When at least `elites` of those are safe, the elites are exactly what checking all
    # would pick (every unchecked candidate has a lower return than each checked one), so
    # the rest is never decoded; otherwise all are checked. Halves the shield's cost at the
    # default 128 samples / 32 elites, with the same plans. When the best ones were not
    # enough, the same iteration of the next decision checks all in one pass, until a full
    # check shows that the best ones alone would have been (safe shares stay similar from
    # one step to the next, but not from one iteration to the next).
    check_factor = 2

    @torch.no_grad()
    def _score(self, model: Any, start: State, actions: torch.Tensor, B: int, iteration: int = 0
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Imagine actions (B*N, H, A) from start (B*N, ...) -> (return, violations,
        robustness, first-step violation), each (B, N), and the share of the checked
        candidates predicted safe (B,). Unchecked candidates count as unsafe."""
        ret, feats, index, cost = self._returns(model, start, actions)
        ret = ret.reshape(B, -1)
        if self.shield is None:
            zeros = torch.zeros_like(ret)
            return ret, zeros, zeros, zeros.bool(), torch.ones_like(ret[:, 0])
        # the shield decodes batch-major trajectories: (B*N, H+1, F), (B*N, H)
        return (ret, *self._check(model, feats.transpose(0, 1).contiguous(), actions, cost.t(), ret,
                                  iteration, None if index is None else index.transpose(0, 1).contiguous()))

    def _returns(self, model: Any, start: State, actions: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Imagine actions (B*N, H, A) from start (B*N, ...) -> each candidate's return (B*N,),
        the time-major feats (H+1, B*N, F), their latent index (H+1, B*N, S) or None, and the
        predicted cost of each step (H, B*N) or None (without rules and penalty). Tensor work
        only, no host reads: `run.compile` compiles it on the CPU (`compile_imagination`)."""
        # Time-major, so the heads read feats[1:] without a copy (batch-major feats[:, 1:]
        # would be copied by each head: 3 copies of (B*N, H, F) per iteration).
        # feats (H+1, B*N, F); index (H+1, B*N, S): their latent classes, for the heads (or None)
        feats, _, _, index = imagine_indexed(model, start, actions, self.horizon, time_major=True,
                                             **self._imagine_kw)
        nxt = feats[1:]
        idx_next = None if index is None else index[1:]
        reward = with_index(model.reward, nxt, idx_next)               # (H, B*N)
        penalty = float(getattr(self.actor_critic, "cost_penalty", 0.0) or 0.0)
        # predicted cost of each step's action (H, B*N): one pass serves the penalty and the shield
        cost = with_index(model.cost, nxt, idx_next) if penalty or self.shield is not None else None
        if penalty:  # the critic learned values of penalised rewards; stay consistent with it
            reward = reward - penalty * cost
        bonus = float(getattr(self.actor_critic, "explore", 0.0) or 0.0)
        if bonus and self._exploring:  # planning to explore: the novelty bonus, while training
            reward = reward + bonus * with_index(model.novelty, nxt, idx_next)
        cont = with_index(model.cont, nxt, idx_next)                   # (H, B*N)
        # weight of r_t: gamma^t * prod_{k<t} c_k (the first reward is always received)
        reach = torch.cat([torch.ones_like(cont[:1]), cont[:-1]], 0).cumprod(0)
        discount = self.gamma ** torch.arange(self.horizon, device=feats.device, dtype=reward.dtype)
        weight = discount[:, None] * reach                             # (H, B*N)
        value = self.actor_critic.value(feats[-1], None if index is None else index[-1])  # (B*N,)
        ret = (weight * reward).sum(0) + self.gamma ** self.horizon * cont.prod(0) * value
        if self.prior:
            ret = ret + self._prior_bonus(feats, actions, index, weight)
        return torch.nan_to_num(ret.float(), nan=-1e30, posinf=1e30, neginf=-1e30), feats, index, cost

    def compile_imagination(self, backend: str = "inductor") -> None:
        """torch.compile a decision's two imaginations: the actor's proposals (`_proposals`)
        and the scoring of every candidate (`_returns`), together about 95% of a decision's
        time on the CPU (README "Decision time of latent MPC"). Instance attributes shadow
        the methods. Each setting they read (rules, penalty, exploring, a mask or none) is a
        guard of the compiled code: a new one compiles once more. Inductor's code calls its
        kernels from C++ (`cpp_wrapper`): a decision makes hundreds of kernel calls, and
        through its Python wrapper they cost 1.2x the time (measured on the CPU, the device
        `run.compile` compiles this for)."""
        kw = {"options": {"cpp_wrapper": True}} if backend == "inductor" else {}
        self._proposals = torch.compile(self._proposals, backend=backend, **kw)
        self._returns = torch.compile(self._returns, backend=backend, **kw)

    def _prior_bonus(self, feats: torch.Tensor, actions: torch.Tensor, index: torch.Tensor | None,
                     weight: torch.Tensor) -> torch.Tensor:
        """The policy prior: prior * S * sum_t w_t log pi(a_t | s_t) (B*N,), for time-major feats
        (H+1, B*N, F), actions (B*N, H, A) and the return's time weights w (H, B*N); S is the actor's return
        scale (max(1, P95 - P5) of its imagined returns), so `prior` is in the units of the
        actor's own objective (return / S + entropy bonus) and one setting carries across tasks.

        Why: a small model's imagined returns have errors, and the best-scored of many
        candidates is more often one whose score is such an error (the winner's curse). The
        actor was trained on the same model's imagination but averages over it, so plans
        far from what the actor would do are the ones to trust less. With MPPI's softmax the
        elite weights become exp(G / tau) * pi(plan)^(prior * S / tau): search sharpened by
        the policy rather than against it (as in KL-regularised control)."""
        idx = None if index is None else index[:-1]
        logp = self.actor_critic.actor(feats[:-1], None, idx).log_prob(actions.transpose(0, 1))  # (H, B*N)
        retnorm = getattr(self.actor_critic, "retnorm", None)
        scale = retnorm.scale if retnorm is not None else 1.0
        return self.prior * scale * (weight * logp).sum(0)

    def _check(self, model: Any, feats: torch.Tensor, actions: torch.Tensor, cost: torch.Tensor,
               ret: torch.Tensor, iteration: int, index: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The shield on imagined candidates: feats (B*N, H+1, F), actions (B*N, H, A), cost
        (B*N, H), returns (B, N) -> violations, robustness, first-step violation, each (B, N),
        and the share of the checked candidates predicted safe (B,)."""
        B, N = ret.shape
        top = min(N, self.check_factor * self.elites)
        # per iteration: the first samples widely (many unsafe), later ones from refitted plans
        check_all = self._check_all.setdefault(iteration, False)
        if top == N or check_all:  # everything in one pass, in place: no reordering, no copies
            check = self.shield.check(model, feats, actions, cost, index)
            violations = check.violations.reshape(B, N).to(ret.dtype)
            # would the best `top` alone have held k safe ones? Then try that next time
            best = ret.topk(top, 1).indices
            self._check_all[iteration] = bool(((violations.gather(1, best) == 0).sum(1) < self.elites).any())
            return (violations, check.robustness.reshape(B, N).to(ret.dtype),
                    check.first_step.reshape(B, N), (violations == 0).float().mean(1))
        order = ret.argsort(1, descending=True)
        violations = torch.full_like(ret, float("inf"))                 # unchecked: unsafe
        robustness = torch.full_like(ret, -float("inf"))
        first = torch.ones_like(ret, dtype=torch.bool)
        for lo, hi in ((0, top), (top, N)):                             # the best `top`, then the rest
            part = order[:, lo:hi]
            rows = (part + torch.arange(B, device=ret.device)[:, None] * N).flatten()
            check = self.shield.check(model, feats[rows], actions[rows], cost[rows],
                                      None if index is None else index[rows])
            violations.scatter_(1, part, check.violations.reshape(B, -1).to(ret.dtype))
            robustness.scatter_(1, part, check.robustness.reshape(B, -1).to(ret.dtype))
            first.scatter_(1, part, check.first_step.reshape(B, -1))
            checked = hi
            if hi == N or bool(((violations == 0).sum(1) >= self.elites).all()):
                break
        # a second pass was needed: next time check all at once (one decoder pass, not two)
        self._check_all[iteration] = checked == N
        return violations, robustness, first, (violations == 0).float().sum(1) / checked

    def _select(self, ret: torch.Tensor, violations: torch.Tensor,
                robustness: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Elite indices (B, k), best first, and whether each env had k safe candidates (B,).
        All inputs are (B, N)."""
        k = self.elites
        safe = violations == 0
        by_return = torch.where(safe, ret, torch.full_like(ret, -float("inf"))).topk(k, 1).indices
        # not enough safe candidates: fewest predicted violations first, then most robust
        order = robustness.sort(dim=1, descending=True, stable=True).indices
        order = order.gather(1, violations.gather(1, order).sort(dim=1, stable=True).indices)
        enough = safe.sum(1) >= k
        return torch.where(enough[:, None], by_return, order[:, :k]), enough

    def elite_weights(self, ret: torch.Tensor, enough: torch.Tensor) -> torch.Tensor:
        """Refit weights (B, k) summing to 1 from elite returns (B, k), best first."""
        raise NotImplementedError

    def _refit(self, mean: torch.Tensor, std: torch.Tensor, elite: torch.Tensor,
               weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """elite (B, k, H, A), weight (B, k) -> new (mean, std), each (B, H, A)."""
        w = weight[:, :, None, None]
        new = (w * elite).sum(1)
        if self.sizes:  # weighted one-hot frequencies are per-head probabilities already
            probs = self.momentum * mean + (1 - self.momentum) * new
            floor = torch.cat([torch.full((n,), 1.0 / n, device=mean.device) for n in self.sizes])
            return (1 - self.min_prob) * probs + self.min_prob * floor, std
        new_std = (w * (elite - new[:, None]) ** 2).sum(1).sqrt()
        return (self.momentum * mean + (1 - self.momentum) * new,
                new_std.clamp(self.min_std, self.init_std))

    # -- acting ------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, model: Any, state: State, mask: torch.Tensor | None = None,
            explore: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        feat = model.feat(state)
        B, device = feat.shape[0], feat.device
        self._exploring = explore
        if self.mean is None or self.mean.shape[0] != B or self.mean.device != device:
            self.mean = self._initial(B, device)
        N, M, H, A = self.samples, self.proposals, self.horizon, self.action_dim
        if mask is not None:
            mask = mask.to(device)
        mean = self.mean
        std = torch.full_like(mean, self.init_std)
        repeat = lambda n: {key: v.repeat_interleave(n, 0) for key, v in state.items()}  # noqa: E731
        start = repeat(N)                                                # (B*N, ...)
        proposed = None
        if M:
            proposed = self._propose(model, repeat(M), mask).reshape(B, M, H, A)
        for it in range(self.iterations):
            cand = self._sample(mean, std, N - M, mask)                  # (B, S, H, A)
            if proposed is not None:
                cand = torch.cat([proposed, cand], 1)                    # (B, N, H, A)
            ret, violations, robustness, first_bad, safe_share = self._score(
                model, start, cand.reshape(B * N, H, A), B, it)         # (B, N) x 4, (B,)
            idx, enough = self._select(ret, violations, robustness)      # (B, k), (B,)
            elite = cand.gather(1, idx[:, :, None, None].expand(-1, -1, H, A))
            weight = self.elite_weights(ret.gather(1, idx), enough)      # (B, k)
            mean, std = self._refit(mean, std, elite, weight)
        # act with one elite's first step: the best (greedy) or one drawn by weight (explore)
        gen = self.generator(device)
        pick = sample_index(weight, gen) if explore else torch.zeros(B, dtype=torch.long, device=device)
        rows = torch.arange(B, device=device)
        action = elite[rows, pick, 0]                                    # (B, A)
        if explore and not self.sizes:
            noise = torch.randn(action.shape, device=device, generator=gen)
            action = (action + std[:, 0] * noise).clamp(-1.0, 1.0)
        self.last_plan = mean
        self.mean = mean
        self._shift()
        # the chosen plan's score: its predicted return, plus the prior's bonus when planner.prior > 0
        info: dict[str, torch.Tensor] = {"plan_return": ret.gather(1, idx)[rows, pick]}
        if self.sizes:  # per-action log-probs of the first step: the veto ranking of the shield
            info["preferences"] = self._masked(mean, mask)[:, 0].clamp(min=1e-8).log()
        if self.shield is not None:
            info["safe_fraction"] = safe_share  # of the last iteration's checked candidates
            # predicted probability that the executed first action is vetoed: the elite-weighted
            # share of elites whose first step is predicted to break a hard rule
            info["predicted_risk"] = (weight * first_bad.gather(1, idx).float()).sum(1)
        return action, info
