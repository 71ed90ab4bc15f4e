"""WorldModel = encoders + dynamics (RSSM, SSM or hybrid) + decoder + reward / continue / cost heads.

Planners, the shield and the video code use it only through its verbs:
  initial(B) -> state                       the empty latent state
  observe(state, obs, prev_action, is_first) -> state   one real step (acting)
  imagine(state, policy_or_actions, H, sample=True) -> (feats (N, H+1, F), actions (N, H, A), state)
  decode(feat) -> {key: obs}                predicted observations (env units for vectors)
  reward(feat), cont(feat), cost(feat)      predicted reward, continue probability, rule cost
  allowed(feat)                             predicted rule verdict per discrete action (or None)
  novelty(feat)                             exploration bonus: the disagreement ensemble's
                                            spread at feat (worldmodel/explore.py; 0 without one)
and the trainer through `loss(batch)`. The heads optionally take `index` (..., S), the latent
classes of feat (`imagine(..., indices=True)` returns them): same result, and on the CPU
their first layer gathers the latent's weight columns instead of a one-hot matmul.

Legend: B batch, T time, F feature = deter + stoch*classes, K two-hot bins.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from envs.spaces import ObsSpec
from worldmodel.dists import TwoHot, symexp, symlog
from worldmodel.nets import MLP, ImageDecoder, ImageEncoder
from worldmodel.dynamics import make_dynamics
from worldmodel.explore import Ensemble
from worldmodel.rssm import State


class WorldModel(nn.Module):
    latent_index = True  # imagine(..., indices=True) and the heads' `index` (planners/base.py)

    def __init__(self, obs_spec: ObsSpec, action_dim: int, *, deter: int, stoch: int, classes: int,
                 hidden: int, unimix: float, units: int, layers: int, cnn_depth: int,
                 bins: int, free_nats: float, loss_scales: dict[str, float], dynamics: str = "gru",
                 ssm_layers: int = 2, ssm_state: int = 16, window: int = 16, verdicts: int = 0,
                 cont_outscale: float = 0.0, explore_heads: int = 0, reward_outscale: float = 0.0) -> None:
        super().__init__()
        self.obs_spec, self.action_dim = obs_spec, action_dim
        self.free_nats, self.loss_scales = free_nats, dict(loss_scales)
        self.vec_keys = [k for k in obs_spec.keys if k.kind == "vector"]
        self.img_keys = [k for k in obs_spec.keys if k.kind == "image"]
        vec_dim = sum(k.shape[0] for k in self.vec_keys)
        embed = 0
        if self.vec_keys:
            self.vec_encoder = MLP(vec_dim, None, units, layers)
            embed += self.vec_encoder.out_dim
        self.img_encoders = nn.ModuleDict({k.name: ImageEncoder(k.shape, cnn_depth) for k in self.img_keys})
        embed += sum(e.out_dim for e in self.img_encoders.values())
        # the deterministic path (kept under the name `rssm`): GRU, SSM or hybrid
        self.dynamics = dynamics
        self.rssm = make_dynamics(dynamics, action_dim, embed, deter=deter, stoch=stoch, classes=classes,
                                  hidden=hidden, unimix=unimix, ssm_layers=ssm_layers,
                                  ssm_state=ssm_state, window=window)
        feat, latent = self.rssm.feat_dim, self.rssm.latent
        if self.vec_keys:
            self.vec_decoder = MLP(feat, vec_dim, units, layers, latent=latent)
        self.img_decoders = nn.ModuleDict({k.name: ImageDecoder(feat, k.shape, cnn_depth) for k in self.img_keys})
        # reward_outscale 0: DreamerV3's zero output layer (predicted rewards start at 0). It
        # also starts every hidden feature of the head with no gradient, and a reward that is
        # an XOR of what was seen and what was done (CueMemory's) is then not learned: in the
        # memory probe (cue distance 2, cue revealed) 0, 0.01 and 0.1 did not learn it within
        # 3,000 updates, 1.0 did in 2,500 (README, "The cue shown again after the answer").
        self.reward_head = MLP(feat, bins, units, layers, out_scale=reward_outscale, latent=latent)
        # cont_outscale 0: the continue head's output layer starts at zero, like the reward
        # head's, so its first gradients do not reach the features through random weights.
        # DreamerV3 starts it random (1.0); zero let the world model carry a cue across 8
        # steps where random did not (README, "Which loss holds the memory back").
        self.cont_head = MLP(feat, 1, units, layers, out_scale=cont_outscale, latent=latent)
        self.cost_head = MLP(feat, 1, units, layers, latent=latent)  # trained on the shield's labels when rules are on
        # Discrete actions with rules: P(the rules allow action a | state), one logit per action,
        # trained on the shield's exact per-action verdicts at real states (replay `allowed`).
        # The actor imagines under its mask: replay never shows a forbidden action's outcome.
        self.verdict_head = MLP(feat, verdicts, units, layers, latent=latent) if verdicts else None
        # explore_heads > 0 (behavior.explore on): heads predicting the embedding from deter
        self.deter = deter
        self.explore = (Ensemble(deter, embed, heads=explore_heads, units=units, layers=layers)
                        if explore_heads else None)
        self.twohot = TwoHot(bins)

    @property
    def feat_dim(self) -> int:
        return self.rssm.feat_dim

    def _apply(self, fn, recurse=True):  # keep the two-hot bins on the module's device
        out = super()._apply(fn, recurse)
        self.twohot.to(self.reward_head.head.weight.device)
        return out

    # -- encoders ----------------------------------------------------------------------
    def embed(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """obs {key: (..., *shape)} -> embedding (..., E)."""
        parts = []
        if self.vec_keys:
            vec = torch.cat([obs[k.name].float() for k in self.vec_keys], -1)
            parts.append(self.vec_encoder(symlog(vec)))
        for k in self.img_keys:
            img = obs[k.name]
            lead = img.shape[:-3]
            parts.append(self.img_encoders[k.name](img.reshape(-1, *img.shape[-3:])).reshape(*lead, -1))
        return torch.cat(parts, -1)

    # -- verbs ----------------------------------------------------------------------------
    def initial(self, batch: int) -> State:
        return self.rssm.initial(batch)

    def observe(self, state: State, obs: dict[str, torch.Tensor], prev_action: torch.Tensor,
                is_first: torch.Tensor) -> State:
        """One real step for acting: posterior state after seeing obs (B, ...)."""
        return self.rssm.obs_step(state, prev_action, self.embed(obs), is_first)

    def imagine(self, state: State, policy: Callable[..., torch.Tensor] | torch.Tensor,
                horizon: int, time_major: bool = False, sample: bool = True, indices: bool = False
                ) -> tuple[torch.Tensor, ...]:
        """time_major: feats (H+1, N, F) and actions (H, N, A) instead of batch first.
        sample=False: each step takes the prior's most likely latent (deterministic).
        indices=True: the policy is called as policy(feat, index), and a fourth output holds
        the latent index of every feat (N, H+1, S), or None (see rssm.RSSM.imagine)."""
        return self.rssm.imagine(state, policy, horizon, time_major=time_major, sample=sample, indices=indices)

    def feat(self, state: State) -> torch.Tensor:
        return self.rssm.feat(state)

    def decode(self, feat: torch.Tensor, index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """feat (..., F) -> predicted obs {key: (..., *shape)}: vectors in env units,
        images as uint8-range floats in [0, 255]."""
        out = {}
        if self.vec_keys:
            vec = symexp(self.vec_decoder(feat, index))
            for k, part in zip(self.vec_keys, vec.split([k.shape[0] for k in self.vec_keys], -1)):
                out[k.name] = part
        for k in self.img_keys:
            lead = feat.shape[:-1]
            img = self.img_decoders[k.name](feat.reshape(-1, feat.shape[-1]))
            out[k.name] = ((img + 0.5) * 255.0).clamp(0, 255).reshape(*lead, *k.shape)
        return out

    def reward(self, feat: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        return self.twohot.mean(self.reward_head(feat, index))

    def cont(self, feat: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Probability that the episode continues after this state."""
        return torch.sigmoid(self.cont_head(feat, index).squeeze(-1).float())

    def allowed(self, feat: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor | None:
        """feat (..., F) -> (..., A) predicted probability that the rules allow each discrete
        action in this state; None without a verdict head."""
        if self.verdict_head is None:
            return None
        return torch.sigmoid(self.verdict_head(feat, index).float())

    def cost(self, feat: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted probability that this state's action is a rule violation."""
        return torch.sigmoid(self.cost_head(feat, index).squeeze(-1).float())

    def novelty(self, feat: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """feat (..., F) -> (...) the exploration bonus: how much the ensemble's heads disagree
        about the observation at this state (zeros without an ensemble). Differentiable in
        feat, so a dynamics-gradient actor is pulled towards novelty too."""
        if self.explore is None:
            return feat.new_zeros(feat.shape[:-1])
        return self.explore.disagreement(feat[..., :self.deter])

    # -- training ---------------------------------------------------------------------------
    def posterior(self, batch: dict[str, torch.Tensor], embed: torch.Tensor | None = None
                  ) -> tuple[State, State]:
        """Posterior and prior states (B, T, ...) of a replayed batch: obs keys (B, T, ...),
        action (B, T, A) taken at each obs, is_first (B, T). With a replay context (GRU:
        ctx_deter (B, D), ctx_index (B, S), ctx_action (B, A), see worldmodel/replay.py),
        sequences whose is_first[:, 0] is False continue from the stored latent.
        `embed` (B, T, E): the observations' embedding when the caller has it already."""
        if embed is None:
            embed = self.embed({k.name: batch[k.name] for k in self.obs_spec.keys})
        # the action that led to obs_t is the one taken at obs_{t-1}
        before = batch["ctx_action"][:, None] if "ctx_action" in batch else torch.zeros_like(batch["action"][:, :1])
        prev_action = torch.cat([before.to(batch["action"].dtype), batch["action"][:, :-1]], 1)
        state = self.rssm.from_context(batch["ctx_deter"], batch["ctx_index"]) if "ctx_deter" in batch else None
        return self.rssm.observe(embed, prev_action, batch["is_first"], state)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor], State]:
        """batch: obs keys (B, T, ...), action (B, T, A) taken at each obs, reward, is_first,
        is_terminal, mask (B, T) (0 = padding past the episode end), optional cost (B, T)
        and allowed (B, T, A) (the shield's verdict per action at each obs).
        Returns (total loss, per-term losses, posterior states (B, T, ...))."""
        obs = {k.name: batch[k.name] for k in self.obs_spec.keys}
        mask = batch["mask"].float()
        embed = self.embed(obs)
        post, prior = self.posterior(batch, embed)
        feat, index = self.rssm.feat(post), post.get("index")
        dyn, rep, kl = self.rssm.kl_loss(post["logits"], prior["logits"], self.free_nats)
        terms: dict[str, torch.Tensor] = {"dyn": dyn, "rep": rep}
        rec = torch.zeros_like(mask)
        if self.vec_keys:
            target = symlog(torch.cat([obs[k.name].float() for k in self.vec_keys], -1))
            rec = rec + ((self.vec_decoder(feat, index) - target) ** 2).sum(-1)
        for k in self.img_keys:
            pred = self.img_decoders[k.name](feat.reshape(-1, feat.shape[-1])).reshape(*feat.shape[:2], *k.shape)
            target = obs[k.name].float() / 255.0 - 0.5
            rec = rec + ((pred - target) ** 2).sum((-1, -2, -3))
        terms["rec"] = rec
        terms["reward"] = self.twohot.loss(self.reward_head(feat, index), batch["reward"])
        cont_target = 1.0 - batch["is_terminal"].float()
        terms["cont"] = nn.functional.binary_cross_entropy_with_logits(
            self.cont_head(feat, index).squeeze(-1).float(), cont_target, reduction="none")
        if "cost" in batch and self.loss_scales.get("cost", 0.0) > 0:
            terms["cost"] = nn.functional.binary_cross_entropy_with_logits(
                self.cost_head(feat, index).squeeze(-1).float(), batch["cost"].float().clamp(0, 1), reduction="none")
        if "allowed" in batch and self.verdict_head is not None:
            terms["verdict"] = nn.functional.binary_cross_entropy_with_logits(
                self.verdict_head(feat, index).float(), batch["allowed"].float(), reduction="none").sum(-1)
        if self.explore is not None:  # h_t predicts e_t (h_t has not seen obs_t)
            terms["explore"] = self.explore.loss(post["deter"], embed)
        denom = mask.sum().clamp(min=1.0)
        losses = {k: (v.float() * mask).sum() / denom for k, v in terms.items()}
        total = sum(self.loss_scales.get(k, 1.0) * v for k, v in losses.items())
        losses["kl"] = (kl * mask).sum() / denom
        return total, losses, post
