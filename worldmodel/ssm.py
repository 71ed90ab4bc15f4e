"""State-space dynamics: the RSSM's GRU replaced by a stack of diagonal, selective linear
state-space layers that train over whole sequences with a parallel scan and step
recurrently, with the same weights, when acting and imagining.

As in R2I, the posterior sees the observation alone, so every z_t of a replayed sequence
is known before the deterministic path runs, and that path can be scanned in parallel:

  posterior  q(z_t | e_t)                      -- from the embedding only
  h_t = SSMStack(history, [z_{t-1}, a_{t-1}])  -- linear recurrences, one per layer
  prior      p(z_t | h_t)                      -- trained with the same KL as the RSSM
  feat = [h_t, z_t]

Each SSM layer is a real-diagonal recurrence per channel d and state index n,
  s_t[d, n] = exp(delta_t[d] * A[d, n]) * s_{t-1}[d, n] + delta_t[d] * B_t[n] * v_t[d],
  y_t[d] = sum_n C_t[n] * s_t[d, n] + D[d] * v_t[d],
with A < 0 fixed per layer and delta, B, C computed from the input (selective, as in
Mamba): the model can close the gate (delta -> 0) on blank steps to hold a cue, and open
it to overwrite. The decay is in (0, 1), so the recurrence is stable by construction.

The State is a flat dict of tensors with a leading batch dim, like the RSSM's:
  deter (B, D), stoch (B, S*C), logits (B, S, C), and per layer i the layer's carry,
  e.g. l{i}_s (B, D, N) for an SSM layer (see `HybridDynamics` for attention caches).

Legend: B batch, T time, D width (= model.deter), N SSM state per channel, S stoch,
C classes, E embed, A action.
"""
from __future__ import annotations

import math
import torch
from torch import nn

from worldmodel.dists import onehot_straight_through, unimix_logits
from worldmodel.nets import MLP, Norm, init_linear
from worldmodel.rssm import RSSM

State = dict[str, torch.Tensor]


def parallel_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t with h_{-1} = 0, over dim 1: a, b (B, T, ...) -> h (B, T, ...).

    Odd-even (recursive doubling) reduction: compose neighbouring pairs (2k, 2k+1) into
    one step, scan that half-length sequence for the odd positions, then fill in the even
    ones. O(T) work and memory, log2(T) sequential levels. A reset is a_t = 0."""
    T = a.shape[1]
    if T == 1:
        return b
    if T % 2:  # pad with the identity step (a = 1, b = 0)
        a = torch.cat([a, torch.ones_like(a[:, :1])], 1)
        b = torch.cat([b, torch.zeros_like(b[:, :1])], 1)
    a_even, a_odd, b_even, b_odd = a[:, 0::2], a[:, 1::2], b[:, 0::2], b[:, 1::2]
    # h_{2k+1} = (a_{2k+1} a_{2k}) h_{2k-1} + (a_{2k+1} b_{2k} + b_{2k+1})
    h_odd = parallel_scan(a_odd * a_even, a_odd * b_even + b_odd)  # h_1, h_3, ...
    h_prev = torch.cat([torch.zeros_like(h_odd[:, :1]), h_odd[:, :-1]], 1)  # h_{2k-1}
    h_even = a_even * h_prev + b_even
    return torch.stack([h_even, h_odd], 2).flatten(1, 2)[:, :T]  # interleave e0 o0 e1 o1 ...


def _f32(x: torch.Tensor) -> torch.Tensor:
    # The recurrence runs in float32 even under bf16 autocast (products of many decays lose
    # precision fast); float64 stays float64 so tests can check the scan to 1e-10.
    return x if x.dtype == torch.float64 else x.float()


class SSMBlock(nn.Module):
    """Pre-norm residual block x + W_out(SSM(v) * silu(g)), [v, g] = W_in(norm(x)).
    Carry: {"s": (B, D, N)}."""

    def __init__(self, width: int, state: int, dt_min: float = 1e-3, dt_max: float = 1e-1) -> None:
        super().__init__()
        self.norm = Norm(width)
        self.in_proj = init_linear(nn.Linear(width, 2 * width, bias=False))
        self.bc_proj = init_linear(nn.Linear(width, 2 * state, bias=False))
        self.dt_proj = init_linear(nn.Linear(width, width), scale=0.1)
        self.out_proj = init_linear(nn.Linear(width, width, bias=False))
        # S4D-real init: A[d, n] = -(n + 1), a spread of time scales in every channel.
        self.A_log = nn.Parameter(torch.log(torch.arange(1, state + 1).float()).repeat(width, 1))
        self.D = nn.Parameter(torch.ones(width))
        # delta starts log-uniform in [dt_min, dt_max] (Mamba): slow decays, long memory.
        dt = torch.exp(torch.rand(width) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        self.width, self.state = width, state

    def initial(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return {"s": torch.zeros(batch, self.width, self.state, device=device, dtype=dtype)}

    def _coeffs(self, x: torch.Tensor):
        """x (..., D) -> decay a, input b (..., D, N), and C (..., N), v, g (..., D)."""
        v, g = self.in_proj(self.norm(x)).chunk(2, -1)
        delta = nn.functional.softplus(_f32(self.dt_proj(v)))  # (..., D)
        B, C = _f32(self.bc_proj(v)).chunk(2, -1)  # (..., N) each
        A = -torch.exp(self.A_log.to(delta.dtype))  # (D, N)
        a = torch.exp(delta[..., None] * A)  # (..., D, N) in (0, 1)
        b = (delta * _f32(v))[..., None] * B[..., None, :]  # (..., D, N)
        return a, b, C, v, g

    def _out(self, x: torch.Tensor, s: torch.Tensor, C: torch.Tensor, v: torch.Tensor,
             g: torch.Tensor) -> torch.Tensor:
        y = (s * C[..., None, :]).sum(-1).to(v.dtype) + self.D * v  # (..., D)
        return x + self.out_proj(y * nn.functional.silu(g))

    def sequence(self, x: torch.Tensor, keep: torch.Tensor, carry: State) -> tuple[torch.Tensor, State]:
        """x (B, T, D), keep (B, T) = 0 at is_first, carry before step 0 ->
        (y (B, T, D), carry after every step {"s": (B, T, D, N)})."""
        a, b, C, v, g = self._coeffs(x)
        a = a * keep[..., None, None].to(a.dtype)  # a reset forgets s_{t-1}
        b = torch.cat([b[:, :1] + a[:, :1] * carry["s"][:, None].to(a.dtype), b[:, 1:]], 1)
        s = parallel_scan(a, b)
        return self._out(x, s, C, v, g), {"s": s}

    def step(self, x: torch.Tensor, carry: State) -> tuple[torch.Tensor, State]:
        """x (B, D) -> y (B, D), next carry. Resets are applied by the caller."""
        a, b, C, v, g = self._coeffs(x)
        s = a * carry["s"].to(a.dtype) + b
        return self._out(x, s, C, v, g), {"s": s}


class SSMDynamics(nn.Module):
    """Drop-in for `RSSM` (same verbs and State contract) with an SSM deterministic path."""

    def __init__(self, action_dim: int, embed_dim: int, deter: int = 512, stoch: int = 32,
                 classes: int = 32, hidden: int = 256, unimix: float = 0.01, layers: int = 2,
                 ssm_state: int = 16, **block_kwargs: int) -> None:
        super().__init__()
        self.deter, self.stoch, self.classes, self.unimix = deter, stoch, classes, unimix
        self.feat_dim = deter + stoch * classes
        # Input of the stack: [z_{t-1}, a_{t-1}] -> width D, split so each part is one matmul.
        self.img_z = init_linear(nn.Linear(stoch * classes, deter, bias=False))
        self.img_a = init_linear(nn.Linear(action_dim, deter, bias=False))
        self.img_norm = Norm(deter)
        self.blocks = nn.ModuleList(self.make_blocks(deter, layers, ssm_state, **block_kwargs))
        self.out_norm = Norm(deter)
        self.prior_net = MLP(deter, stoch * classes, hidden, 1)
        self.post_net = MLP(embed_dim, stoch * classes, hidden, 1)  # q(z_t | e_t): no h

    def make_blocks(self, width: int, layers: int, ssm_state: int) -> list[nn.Module]:
        return [SSMBlock(width, ssm_state) for _ in range(layers)]

    # -- state helpers ---------------------------------------------------------------
    def initial(self, batch: int, device: torch.device | str | None = None) -> State:
        weight = self.img_z.weight
        device = device or weight.device
        state = {"deter": torch.zeros(batch, self.deter, device=device, dtype=weight.dtype),
                 "stoch": torch.zeros(batch, self.stoch * self.classes, device=device, dtype=weight.dtype),
                 "logits": torch.zeros(batch, self.stoch, self.classes, device=device, dtype=_f32(weight).dtype)}
        for i, block in enumerate(self.blocks):
            carry = block.initial(batch, torch.device(device), _f32(weight).dtype)
            state.update({f"l{i}_{k}": v for k, v in carry.items()})
        return state

    @staticmethod
    def feat(state: State) -> torch.Tensor:
        return torch.cat([state["deter"], state["stoch"]], -1)

    kl_loss = staticmethod(RSSM.kl_loss)

    def _logits(self, raw: torch.Tensor) -> torch.Tensor:
        return unimix_logits(_f32(raw.reshape(*raw.shape[:-1], self.stoch, self.classes)), self.unimix)

    def _sample(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return onehot_straight_through(logits, generator).flatten(-2)

    def _input(self, stoch: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return nn.functional.silu(self.img_norm(self.img_z(stoch.to(self.img_z.weight.dtype))
                                                + self.img_a(action.to(self.img_a.weight.dtype))))

    @staticmethod
    def _carry(state: State, i: int) -> State:
        prefix = f"l{i}_"
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

    # -- the stack: parallel over a sequence, or one step ------------------------------------
    def _stack_sequence(self, u: torch.Tensor, keep: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """u (B, T, D) -> deter (B, T, D) and every layer's carry at every step (B, T, ...)."""
        x, carries = u, {}
        for i, block in enumerate(self.blocks):
            x, carry = block.sequence(x, keep, self._carry(state, i))
            carries.update({f"l{i}_{k}": v for k, v in carry.items()})
        return self.out_norm(x), carries

    def _stack_step(self, u: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        x, carries = u, {}
        for i, block in enumerate(self.blocks):
            x, carry = block.step(x, self._carry(state, i))
            carries.update({f"l{i}_{k}": v for k, v in carry.items()})
        return self.out_norm(x), carries

    # -- one step ----------------------------------------------------------------------
    def img_step(self, state: State, action: torch.Tensor,
                 generator: torch.Generator | None = None) -> State:
        """Imagine one step: (state_t, a_t) -> prior state_{t+1}."""
        deter, carries = self._stack_step(self._input(state["stoch"], action), state)
        logits = self._logits(self.prior_net(deter))
        return {"deter": deter, "stoch": self._sample(logits, generator), "logits": logits, **carries}

    def obs_step(self, state: State, prev_action: torch.Tensor, embed: torch.Tensor,
                 is_first: torch.Tensor, generator: torch.Generator | None = None) -> State:
        """Observe one step: (state_{t-1}, a_{t-1}, embed_t) -> posterior state_t.
        `is_first` (B,) resets the whole state (every layer's carry) and the previous action."""
        keep = (~is_first.bool()).to(prev_action.dtype)  # (B,)
        state = {k: v * keep.view(-1, *[1] * (v.dim() - 1)).to(v.dtype) for k, v in state.items()}
        deter, carries = self._stack_step(self._input(state["stoch"], prev_action * keep[:, None]), state)
        logits = self._logits(self.post_net(embed))
        return {"deter": deter, "stoch": self._sample(logits, generator), "logits": logits, **carries}

    # -- sequences -----------------------------------------------------------------------
    def observe(self, embed: torch.Tensor, prev_action: torch.Tensor, is_first: torch.Tensor,
                state: State | None = None) -> tuple[State, State]:
        """Posterior and prior over a sequence, the stack run as one parallel scan.
        embed (B, T, E), prev_action (B, T, A), is_first (B, T); `state` is the state
        before step 0 (default: initial). Returns (post, prior), each with every key at
        every step: deter (B, T, D), stoch (B, T, S*C), logits (B, T, S, C), carries."""
        B, T = embed.shape[:2]
        state = state if state is not None else self.initial(B, embed.device)
        keep = (~is_first.bool()).to(embed.dtype)  # (B, T)
        post_logits = self._logits(self.post_net(embed))  # (B, T, S, C): all steps at once
        stoch = self._sample(post_logits)  # (B, T, S*C)
        # input at t is [z_{t-1}, a_{t-1}], both zero where an episode starts
        z_prev = torch.cat([state["stoch"][:, None].to(stoch.dtype), stoch[:, :-1]], 1) * keep[..., None]
        deter, carries = self._stack_sequence(self._input(z_prev, prev_action * keep[..., None]), keep, state)
        prior_logits = self._logits(self.prior_net(deter))
        post = {"deter": deter, "stoch": stoch, "logits": post_logits, **carries}
        prior = {"deter": deter, "stoch": self._sample(prior_logits), "logits": prior_logits, **carries}
        return post, prior

    # rolling the prior forward uses only feat() and img_step(): the RSSM's loop serves as is
    imagine = RSSM.imagine
