"""State-space dynamics: the RSSM's GRU replaced by a stack of diagonal, selective linear
state-space layers that train over whole sequences with one scan per layer and step
recurrently, with the same weights, when acting and imagining.

As in R2I, the posterior sees the observation alone, so every z_t of a replayed sequence
is known before the deterministic path runs, and that path runs over the whole sequence
at once: every projection is one matmul over (B, T); only the linear recurrence is
sequential, one fused multiply-add per step (see `selective_scan`):

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

from worldmodel.dists import onehot_sample, unimix_logits
from worldmodel.nets import MLP, LatentLinear, Norm, init_linear
from worldmodel.rssm import RSSM

State = dict[str, torch.Tensor]


def readout(s: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """y[..., d] = sum_n C[..., n] s[..., d, n] for s (..., D, N), C (..., N) -> (..., D).
    As (1 x N) @ (N x D) products per row: on the CPU the batched (D x N) @ (N x 1) form
    measured 4x slower (256 x 128 x 16: 274 against 65 us, one thread)."""
    return torch.matmul(C.unsqueeze(-2), s.transpose(-1, -2)).squeeze(-2)


LOG2E = 1.0 / math.log(2.0)


def decay(delta: torch.Tensor, A: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """exp(delta[..., None] * A) for delta (..., D), A (D, N) -> (..., D, N), written into
    `out` if given. Computed as exp2 of delta * (A log2 e): on this CPU (AVX512) torch's exp
    of float32 took 4.3x the time of its exp2 (309 against 72 us for 256 x 128 x 16 numbers,
    one thread), and a decay is computed for every channel and state index at every step."""
    arg = torch.mul(delta[..., None], A * LOG2E, out=out) if out is not None else delta[..., None] * (A * LOG2E)
    return arg.exp2_()


def selective_scan(delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   u: torch.Tensor, keep: torch.Tensor, s0: torch.Tensor,
                   chunk: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The SSM recurrence over a whole sequence, for every channel d and state index n:
      s_t = keep_t * exp(delta_t A) * s_{t-1} + u_t B_t,    y_t = sum_n C_t[n] s_t[:, n],
    delta, u (B, T, D); A (D, N); B, C (B, T, N); keep (B, T), 0 where s_{t-1} is forgotten
    (a reset); s0 (B, D, N) the state before step 0. Returns y (B, T, D) and every state
    s (B, T, D, N), differentiable in all inputs but keep. `chunk`: time steps per work
    buffer (0 = about 2^18 numbers; the result does not depend on it). See `_SelectiveScan`."""
    batch, T, D = delta.shape
    chunk = chunk or max(1, (1 << 18) // (batch * D * A.shape[1]))
    return _SelectiveScan.apply(delta, A, B, C, u, keep, s0, min(chunk, T))


class _SelectiveScan(torch.autograd.Function):
    """`selective_scan` with a hand-written backward, so autograd keeps nothing of size
    (B, T, D, N) but the states s it returns (which the State hands out anyway).

    The per-element work (decays exp(delta A), inputs u B, the backward's products) is
    done a chunk of time steps at a time in a reused (B, L, D, N) buffer that stays in
    cache; the recurrence itself is one fused multiply-add per step on a (B, D, N) slice
    (a few microseconds on one CPU thread at the small preset). Measured against autograd through an
    odd-even parallel scan, which materialised about ten (B, T, D, N) tensors per layer
    for the backward pass and zero-filled more in slice backwards: 5-7x less time and
    no O(B T D N) intermediates. The price is T small ops per layer and direction, which
    on a GPU means T kernel launches (not measured here).

    Backward: the adjoint G_t = dL/ds_t runs the same recurrence in reverse,
      G_t = gs_t + gy_t C_t + keep_{t+1} exp(delta_{t+1} A) G_{t+1},
    then dL/du_t = sum_n G_t B_t, dL/dB_t = sum_d G_t u_t, dL/dC_t = sum_d gy_t s_t, and with
    X_t = G_t * s_{t-1} * a_t (the gradient of delta_t A): dL/ddelta_t = sum_n X_t A,
    dL/dA = sum_{b,t} X_t delta_t, dL/ds0 = a_0 G_0. The decays are recomputed, not kept."""

    @staticmethod
    def _decays(out: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """a = keep * exp(delta A) for one chunk, written into `out` (B, L, D, N)."""
        return decay(delta, A, out).mul_(keep[..., None, None])

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # no bf16 in here
    def forward(ctx, delta, A, B, C, u, keep, s0, L):
        ctx.set_materialize_grads(False)
        batch, T, D = delta.shape
        N = A.shape[1]
        s = delta.new_empty(batch, T, D, N)
        buf = delta.new_empty(batch, L, D, N)
        h = s0
        for t0 in range(0, T, L):
            t1 = min(T, t0 + L)
            a = _SelectiveScan._decays(buf[:, :t1 - t0], delta[:, t0:t1], A, keep[:, t0:t1])
            b = torch.mul(u[:, t0:t1, :, None], B[:, t0:t1, None, :], out=s[:, t0:t1])  # u_t B_t
            for a_t, s_t in zip(a.unbind(1), b.unbind(1)):
                h = s_t.addcmul_(a_t, h)  # s_t = a_t s_{t-1} + u_t B_t, in place
        y = readout(s.view(batch * T, D, N), C.reshape(batch * T, N)).view(batch, T, D)
        ctx.save_for_backward(delta, A, B, C, u, keep, s0, s)
        ctx.chunk = L
        return y, s

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, gy, gs):
        delta, A, B, C, u, keep, s0, s = ctx.saved_tensors
        batch, T, D = delta.shape
        N, L = A.shape[1], ctx.chunk
        g_delta, g_u, g_B = torch.empty_like(delta), torch.empty_like(u), torch.empty_like(B)
        g_A = torch.zeros_like(A)
        a_buf, G_buf, tmp_buf = (delta.new_empty(batch, L, D, N) for _ in range(3))
        carry = torch.zeros_like(s0)  # a_{t1} G_{t1}: what the later chunk passes back
        for t0 in reversed(range(0, T, L)):
            t1 = min(T, t0 + L)
            n = t1 - t0
            a = _SelectiveScan._decays(a_buf[:, :n], delta[:, t0:t1], A, keep[:, t0:t1])
            G = G_buf[:, :n]
            if gy is not None:
                torch.mul(gy[:, t0:t1, :, None], C[:, t0:t1, None, :], out=G)
            else:
                G.zero_()
            if gs is not None:
                G.add_(gs[:, t0:t1])
            G_t, a_t = G.unbind(1), a.unbind(1)
            G_t[-1].add_(carry)
            for i in range(n - 2, -1, -1):
                G_t[i].addcmul_(a_t[i + 1], G_t[i + 1])
            carry = a_t[0] * G_t[0]
            flat = G.reshape(batch * n, D, N)  # a view unless this is a short last chunk
            g_u[:, t0:t1] = readout(flat, B[:, t0:t1].reshape(batch * n, N)).view(batch, n, D)
            g_B[:, t0:t1] = torch.bmm(u[:, t0:t1].reshape(batch * n, 1, D), flat).view(batch, n, N)
            X = a.mul_(G)  # G_t a_t, then times s_{t-1}: the gradient of delta_t A
            X[:, 1:].mul_(s[:, t0:t1 - 1])
            X[:, 0].mul_(s[:, t0 - 1] if t0 else s0)
            tmp = tmp_buf[:, :n]
            g_delta[:, t0:t1] = torch.mul(X, A, out=tmp).sum(-1)
            g_A += torch.mul(X, delta[:, t0:t1, :, None], out=tmp).sum((0, 1))
        if gy is None:
            g_C = torch.zeros_like(C)
        else:
            g_C = torch.bmm(gy.reshape(batch * T, 1, D), s.view(batch * T, D, N)).view(batch, T, N)
        return g_delta, g_A, g_B, g_C, g_u, None, carry, None


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
        """x (..., D) -> v, g (..., D); delta, u = delta * v (..., D); B, C (..., N); A (D, N).
        Everything the recurrence reads is float32 (or float64)."""
        v, g = self.in_proj(self.norm(x)).chunk(2, -1)
        delta = nn.functional.softplus(_f32(self.dt_proj(v)))  # (..., D)
        B, C = _f32(self.bc_proj(v)).chunk(2, -1)  # (..., N) each
        A = -torch.exp(self.A_log.to(delta.dtype))  # (D, N)
        return v, g, delta, delta * _f32(v), B, C, A

    def _out(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        y = y.to(v.dtype) + self.D * v  # (..., D)
        return x + self.out_proj(y * nn.functional.silu(g))

    def sequence(self, x: torch.Tensor, keep: torch.Tensor, carry: State) -> tuple[torch.Tensor, State]:
        """x (B, T, D), keep (B, T) = 0 at is_first, carry before step 0 ->
        (y (B, T, D), carry after every step {"s": (B, T, D, N)})."""
        v, g, delta, u, B, C, A = self._coeffs(x)
        y, s = selective_scan(delta, A, B, C, u, keep.to(delta.dtype), carry["s"].to(delta.dtype))
        return self._out(x, y, v, g), {"s": s}

    def step(self, x: torch.Tensor, carry: State) -> tuple[torch.Tensor, State]:
        """x (B, D) -> y (B, D), next carry. Resets are applied by the caller."""
        v, g, delta, u, B, C, A = self._coeffs(x)
        prev = carry["s"].to(delta.dtype)
        a = decay(delta, A)  # (B, D, N) in (0, 1)
        # Without gradients the new state is built in place in a's storage: one new
        # (B, D, N) tensor per step instead of two. Fresh large allocations page-fault;
        # in a profile of imagination from 256 starts they took about half the step.
        s = a * prev if a.requires_grad or prev.requires_grad else a.mul_(prev)
        s.addcmul_(u[..., None], B[..., None, :])  # + u B
        y = readout(s, C)  # sum_n C[n] s[:, n]
        return self._out(x, y, v, g), {"s": s}


class SSMDynamics(nn.Module):
    """Drop-in for `RSSM` (same verbs and State contract) with an SSM deterministic path."""

    def __init__(self, action_dim: int, embed_dim: int, deter: int = 512, stoch: int = 32,
                 classes: int = 32, hidden: int = 256, unimix: float = 0.01, layers: int = 2,
                 ssm_state: int = 16, **block_kwargs: int) -> None:
        super().__init__()
        self.deter, self.stoch, self.classes, self.unimix = deter, stoch, classes, unimix
        self.feat_dim = deter + stoch * classes
        # Input of the stack: [z_{t-1}, a_{t-1}] -> width D, split so each part is one matmul.
        self.img_z = init_linear(LatentLinear(stoch * classes, deter, bias=False, dense=0, groups=stoch,
                                              classes=classes))
        self.img_a = init_linear(nn.Linear(action_dim, deter, bias=False))
        self.img_norm = Norm(deter)
        self.blocks = nn.ModuleList(self.make_blocks(deter, layers, ssm_state, **block_kwargs))
        self.out_norm = Norm(deter)
        self.prior_net = MLP(deter, stoch * classes, hidden, 1)
        self.post_net = MLP(embed_dim, stoch * classes, hidden, 1)  # q(z_t | e_t): no h
        self.register_buffer("offsets", torch.arange(stoch) * classes, persistent=False)  # (S,)

    latent = RSSM.latent
    absent = RSSM.absent

    def make_blocks(self, width: int, layers: int, ssm_state: int) -> list[nn.Module]:
        return [SSMBlock(width, ssm_state) for _ in range(layers)]

    # -- state helpers ---------------------------------------------------------------
    def initial(self, batch: int, device: torch.device | str | None = None) -> State:
        weight = self.img_z.weight
        device = device or weight.device
        state = {"deter": torch.zeros(batch, self.deter, device=device, dtype=weight.dtype),
                 "stoch": torch.zeros(batch, self.stoch * self.classes, device=device, dtype=weight.dtype),
                 "logits": torch.zeros(batch, self.stoch, self.classes, device=device, dtype=_f32(weight).dtype),
                 "index": self.absent(batch, device)}
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

    def _sample(self, logits: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """logits (..., S, C) -> stoch sample (..., S*C), index (..., S) (see State)."""
        stoch, cls = onehot_sample(logits, generator)
        return stoch.flatten(-2), cls + self.offsets

    _mode = RSSM._mode

    def _input(self, stoch: torch.Tensor, action: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        return nn.functional.silu(self.img_norm(self.img_z(stoch.to(self.img_z.weight.dtype), index)
                                                + self.img_a(action.to(self.img_a.weight.dtype))))

    @staticmethod
    def _carry(state: State, i: int) -> State:
        prefix = f"l{i}_"
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

    # -- the stack: over a whole sequence, or one step ---------------------------------------
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
                 generator: torch.Generator | None = None, sample: bool = True) -> State:
        """Imagine one step: (state_t, a_t) -> prior state_{t+1} (`sample=False`: its mode)."""
        deter, carries = self._stack_step(self._input(state["stoch"], action, state.get("index")), state)
        logits = self._logits(self.prior_net(deter))
        stoch, index = self._sample(logits, generator) if sample else self._mode(logits)
        return {"deter": deter, "stoch": stoch, "logits": logits, "index": index, **carries}

    def obs_step(self, state: State, prev_action: torch.Tensor, embed: torch.Tensor,
                 is_first: torch.Tensor, generator: torch.Generator | None = None) -> State:
        """Observe one step: (state_{t-1}, a_{t-1}, embed_t) -> posterior state_t.
        `is_first` (B,) resets the whole state (every layer's carry) and the previous action."""
        keep = (~is_first.bool()).to(prev_action.dtype)  # (B,)
        state = {k: v * keep.view(-1, *[1] * (v.dim() - 1)).to(v.dtype) for k, v in state.items() if k != "index"}
        deter, carries = self._stack_step(self._input(state["stoch"], prev_action * keep[:, None]), state)
        logits = self._logits(self.post_net(embed))
        stoch, index = self._sample(logits, generator)
        return {"deter": deter, "stoch": stoch, "logits": logits, "index": index, **carries}

    # -- sequences -----------------------------------------------------------------------
    def observe(self, embed: torch.Tensor, prev_action: torch.Tensor, is_first: torch.Tensor,
                state: State | None = None) -> tuple[State, State]:
        """Posterior and prior over a sequence, each layer of the stack one scan.
        embed (B, T, E), prev_action (B, T, A), is_first (B, T); `state` is the state
        before step 0 (default: initial). Returns (post, prior), each with every key at
        every step: deter (B, T, D), stoch (B, T, S*C), logits (B, T, S, C), carries."""
        B, T = embed.shape[:2]
        state = state if state is not None else self.initial(B, embed.device)
        keep = (~is_first.bool()).to(embed.dtype)  # (B, T)
        post_logits = self._logits(self.post_net(embed))  # (B, T, S, C): all steps at once
        stoch, index = self._sample(post_logits)  # (B, T, S*C), (B, T, S)
        # input at t is [z_{t-1}, a_{t-1}], both zero where an episode starts
        z_prev = torch.cat([state["stoch"][:, None].to(stoch.dtype), stoch[:, :-1]], 1) * keep[..., None]
        deter, carries = self._stack_sequence(self._input(z_prev, prev_action * keep[..., None]), keep, state)
        prior_logits = self._logits(self.prior_net(deter))
        post = {"deter": deter, "stoch": stoch, "logits": post_logits, "index": index, **carries}
        prior_stoch, prior_index = self._sample(prior_logits)
        prior = {"deter": deter, "stoch": prior_stoch, "logits": prior_logits, "index": prior_index, **carries}
        return post, prior

    # rolling the prior forward uses only feat() and img_step(): the RSSM's loop serves as is
    imagine = RSSM.imagine
