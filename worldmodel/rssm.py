"""The recurrent state-space model (RSSM) of DreamerV3.

State = deterministic h (B, D) from a normed GRU + stochastic z (B, S*C): S categorical
variables with C classes each, sampled one-hot with straight-through gradients and a 1%
uniform mix. Features for every head are feat = [h, z] (B, D + S*C).

  prior      p(z_t | h_t)               -- what the model imagines
  posterior  q(z_t | h_t, embed(o_t))   -- what it infers when it sees the observation
  h_t = GRU(h_{t-1}, [z_{t-1}, a_{t-1}])

Legend: B batch, T time, H horizon, D deter, S stoch, C classes, E embed, A action.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from worldmodel.dists import categorical_kl, onehot, onehot_sample, unimix_logits, unimix_probs
from worldmodel.nets import MLP, LatentLinear, Norm, init_linear, tracing

# {"deter": (B, D), "stoch": (B, S*C), "logits": (B, S, C), "index": (B, S) int64}. `index` is
# the class of each latent as a column of stoch (s*C + class; S*C where stoch is zero):
# the heads' first layers gather those columns instead of multiplying by the one-hot.
State = dict[str, torch.Tensor]


class NormGRU(nn.Module):
    """DreamerV3's GRU: one normed linear layer gives reset, candidate and update; the
    update gate is biased towards keeping the state (sigmoid(u - 1))."""

    def __init__(self, in_dim: int, deter: int) -> None:
        super().__init__()
        # Two linears summed instead of one over cat([x, h]): same function, no copy.
        self.x_linear = init_linear(nn.Linear(in_dim, 3 * deter, bias=False))
        self.h_linear = init_linear(nn.Linear(deter, 3 * deter, bias=False))
        self.norm = Norm(3 * deter)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x (B, in), h (B, D) -> next h (B, D)."""
        # addmm adds the h part into the x part in one call (the loops run this T or H times)
        parts = self.norm(torch.addmm(self.x_linear(x), h, self.h_linear.weight.t()))
        reset, cand, update = parts.chunk(3, -1)
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update - 1.0)
        return torch.lerp(h, cand, update)  # update * cand + (1 - update) * h


class RSSM(nn.Module):
    def __init__(self, action_dim: int, embed_dim: int, deter: int = 512, stoch: int = 32,
                 classes: int = 32, hidden: int = 256, unimix: float = 0.01) -> None:
        super().__init__()
        self.deter, self.stoch, self.classes, self.unimix = deter, stoch, classes, unimix
        self.feat_dim = deter + stoch * classes
        # Input to the GRU: linear in [z, a], split so the action part of a whole
        # sequence can be projected in one matmul before the time loop.
        self.img_z = init_linear(LatentLinear(stoch * classes, hidden, bias=False, dense=0, groups=stoch,
                                              classes=classes))
        self.img_a = init_linear(nn.Linear(action_dim, hidden, bias=False))
        self.img_norm = Norm(hidden)
        self.gru = NormGRU(hidden, deter)
        self.prior_net = MLP(deter, stoch * classes, hidden, 1)
        # Posterior: linear in [h, embed], the embed part is likewise precomputed.
        self.post_h = init_linear(nn.Linear(deter, hidden, bias=False))
        self.post_e = init_linear(nn.Linear(embed_dim, hidden, bias=False))
        self.post_norm = Norm(hidden)
        self.post_out = init_linear(nn.Linear(hidden, stoch * classes))
        self.register_buffer("offsets", torch.arange(stoch) * classes, persistent=False)  # (S,)

    @property
    def latent(self) -> tuple[int, int, int]:
        """Layout of feat for the heads' LatentLinear: (deter, groups, classes)."""
        return (self.deter, self.stoch, self.classes)

    # -- state helpers ---------------------------------------------------------------
    def initial(self, batch: int, device: torch.device | str | None = None) -> State:
        device = device or self.post_out.weight.device
        return {"deter": torch.zeros(batch, self.deter, device=device),
                "stoch": torch.zeros(batch, self.stoch * self.classes, device=device),
                "logits": torch.zeros(batch, self.stoch, self.classes, device=device),
                "index": self.absent(batch, device)}

    def absent(self, batch: int, device: torch.device | str) -> torch.Tensor:
        """The index (batch, S) of a zero latent (S*C: no column)."""
        return torch.full((batch, self.stoch), self.stoch * self.classes, dtype=torch.long, device=device)

    def from_context(self, deter: torch.Tensor, index: torch.Tensor) -> State:
        """A state from a replay context (worldmodel/replay.py): deter (B, D) and the latent's
        columns index (B, S) -> the state observe() continues from. Logits are not kept."""
        index = index.long()
        stoch = torch.zeros(index.shape[0], self.stoch * self.classes, device=deter.device)
        return {"deter": deter.float(), "stoch": stoch.scatter_(1, index, 1.0),
                "logits": torch.zeros(index.shape[0], self.stoch, self.classes, device=deter.device),
                "index": index}

    @staticmethod
    def feat(state: State) -> torch.Tensor:
        return torch.cat([state["deter"], state["stoch"]], -1)

    def _logits(self, raw: torch.Tensor) -> torch.Tensor:
        return unimix_logits(raw.reshape(*raw.shape[:-1], self.stoch, self.classes).float(), self.unimix)

    def _dist(self, raw: torch.Tensor, generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """raw (..., S*C) -> (logits (..., S, C), stoch sample (..., S*C), index (..., S)),
        computing the mixed probabilities once for the logits and the sample."""
        raw = raw.reshape(*raw.shape[:-1], self.stoch, self.classes).float()
        probs = unimix_probs(raw, self.unimix)
        logits = torch.log(probs) if self.unimix > 0 else torch.log_softmax(raw, -1)
        stoch, cls = onehot_sample(logits, generator, probs)
        return logits, stoch.flatten(-2), cls + self.offsets

    def _mode(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The most likely latent: stoch (..., S*C) without gradients, and its index (..., S)."""
        cls = logits.argmax(-1)
        return onehot(cls, self.classes, logits).flatten(-2), cls + self.offsets

    # -- one step ----------------------------------------------------------------------
    def _gru_input(self, stoch: torch.Tensor, a_proj: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """x = silu(norm(W_z z + W_a a)), with the action part a_proj (B, hidden) given."""
        if index is not None:  # W_z z as a gather of z's columns (LatentLinear)
            return nn.functional.silu(self.img_norm(self.img_z(stoch, index) + a_proj))
        return nn.functional.silu(self.img_norm(torch.addmm(a_proj, stoch, self.img_z.weight.t())))

    def _posterior(self, deter: torch.Tensor, e_proj: torch.Tensor) -> torch.Tensor:
        """Raw posterior logits (B, S*C) from h (B, D) and the embed part e_proj (B, hidden)."""
        x = nn.functional.silu(self.post_norm(torch.addmm(e_proj, deter, self.post_h.weight.t())))
        return self.post_out(x)

    def img_step(self, state: State, action: torch.Tensor,
                 generator: torch.Generator | None = None, sample: bool = True) -> State:
        """Imagine one step: (state_t, a_t) -> prior state_{t+1}; `sample=False` takes the
        prior's most likely class of each latent instead of a sample."""
        deter = self.gru(self._gru_input(state["stoch"], self.img_a(action), state.get("index")), state["deter"])
        if sample:
            logits, stoch, index = self._dist(self.prior_net(deter), generator)
        else:
            logits = self._logits(self.prior_net(deter))
            stoch, index = self._mode(logits)
        return {"deter": deter, "stoch": stoch, "logits": logits, "index": index}

    def obs_step(self, state: State, prev_action: torch.Tensor, embed: torch.Tensor,
                 is_first: torch.Tensor, generator: torch.Generator | None = None) -> State:
        """Observe one step: (state_{t-1}, a_{t-1}, embed_t) -> posterior state_t.
        `is_first` (B,) resets the state and zeroes the previous action."""
        keep = (~is_first.bool()).float().unsqueeze(-1)
        deter, stoch = state["deter"] * keep, state["stoch"] * keep
        deter = self.gru(self._gru_input(stoch, self.img_a(prev_action * keep)), deter)
        logits, stoch, index = self._dist(self._posterior(deter, self.post_e(embed)), generator)
        return {"deter": deter, "stoch": stoch, "logits": logits, "index": index}

    # -- sequences -----------------------------------------------------------------------
    def observe(self, embed: torch.Tensor, prev_action: torch.Tensor, is_first: torch.Tensor,
                state: State | None = None) -> tuple[State, State]:
        """Posterior and prior over a sequence.
        embed (B, T, E), prev_action (B, T, A) = action taken before each obs, is_first (B, T).
        Returns (post, prior), each {deter (B, T, D), stoch (B, T, S*C), logits (B, T, S, C)}."""
        B, T = embed.shape[:2]
        state = state or self.initial(B, embed.device)
        keep = (~is_first.bool()).float().unsqueeze(-1)  # (B, T, 1)
        # The action and embed parts of every step in one matmul each, before the loop;
        # unbind (not [:, t]) so that backward stacks the T gradients once instead of
        # scattering each into a zero (B, T, hidden) tensor.
        a_proj = self.img_a(prev_action * keep).unbind(1)  # T x (B, hidden)
        e_proj = self.post_e(embed).unbind(1)
        keeps = keep.unbind(1)
        # (T,) steps where some sequence starts anew; one host sync. Under torch.compile a
        # list of Python bools would specialise the graph on each batch's resets, and a CUDA
        # graph cannot read the host at all: mask always.
        resets = [True] * T if tracing() else is_first.bool().any(0).tolist()
        deters, stochs, logits_all, indices = [], [], [], []
        deter, stoch = state["deter"], state["stoch"]
        for t in range(T):
            if resets[t]:  # elsewhere keep is all ones: skip two multiplies and their backward
                deter, stoch = deter * keeps[t], stoch * keeps[t]
            deter = self.gru(self._gru_input(stoch, a_proj[t]), deter)
            logits, stoch, index = self._dist(self._posterior(deter, e_proj[t]))
            deters.append(deter)
            stochs.append(stoch)
            logits_all.append(logits)
            indices.append(index)
        deter_seq = torch.stack(deters, 1)
        post = {"deter": deter_seq, "stoch": torch.stack(stochs, 1), "logits": torch.stack(logits_all, 1),
                "index": torch.stack(indices, 1)}
        prior_logits, prior_stoch, prior_index = self._dist(self.prior_net(deter_seq))  # all T priors at once
        prior = {"deter": deter_seq, "stoch": prior_stoch, "logits": prior_logits, "index": prior_index}
        return post, prior

    def imagine(self, start: State, policy: Callable[..., torch.Tensor] | torch.Tensor,
                horizon: int, generator: torch.Generator | None = None, time_major: bool = False,
                sample: bool = True, indices: bool = False) -> tuple[torch.Tensor, ...]:
        """Roll the prior forward from `start` (N, ...); `sample=False`: the prior's mode.
        `policy` maps feat (N, F) -> action (N, A), or is a tensor of actions (N, horizon, A).
        Returns feats (N, H+1, F), actions (N, H, A), and the final state; with `time_major`
        feats (H+1, N, F) and actions (H, N, A), where feats[1:] and feats[:-1] need no copy.
        `indices=True`: a callable policy is called as policy(feat, index), and a fourth
        output is the latent index of every feat (N, H+1, S) (time-major: (H+1, N, S)), or
        None when `start` has none; the heads take it to skip the one-hot products."""
        state = start
        feats, actions, index = [self.feat(state)], [], [state.get("index")]
        for t in range(horizon):
            if torch.is_tensor(policy):
                action = policy[:, t]
            else:
                action = policy(feats[-1], index[-1]) if indices else policy(feats[-1])
            state = self.img_step(state, action, generator, sample)
            feats.append(self.feat(state))
            actions.append(action)
            index.append(state.get("index"))
        dim = 0 if time_major else 1
        out = (torch.stack(feats, dim), torch.stack(actions, dim), state)
        if not indices:
            return out
        return (*out, torch.stack(index, dim) if index[0] is not None else None)

    @staticmethod
    def kl_loss(post_logits: torch.Tensor, prior_logits: torch.Tensor,
                free_nats: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """KL balancing with free bits. Logits (..., S, C).
        dyn = max(free, KL(sg(post) || prior))  trains the prior towards the posterior;
        rep = max(free, KL(post || sg(prior)))  keeps the posterior predictable.
        Returns (dyn, rep, raw KL), each (...)."""
        dyn = categorical_kl(post_logits.detach(), prior_logits)
        rep = categorical_kl(post_logits, prior_logits.detach())
        return dyn.clamp(min=free_nats), rep.clamp(min=free_nats), dyn.detach()
