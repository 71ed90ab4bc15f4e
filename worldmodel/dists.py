"""Distributions and transforms of DreamerV3: symlog, two-hot, unimix categoricals, bounded normal.

Shapes: `...` is any batch shape; K = number of two-hot bins; S x C = stochastic
variables x classes.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * log(1 + |x|): compresses large magnitudes, identity near 0."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: torch.Tensor) -> torch.Tensor:
    """Inverse of symlog."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


class TwoHot:
    """Regression as classification over `bins` points evenly spaced in symlog space.

    A target y is encoded as weight on the two bins that bracket symlog(y), split so
    that the weighted mean of the bins is exactly symlog(y); the prediction is
    symexp(E[bins]). This makes the loss scale-free across reward magnitudes.
    """

    def __init__(self, bins: int = 255, low: float = -20.0, high: float = 20.0,
                 device: torch.device | str = "cpu") -> None:
        self.bins = torch.linspace(low, high, bins, device=device)

    def to(self, device: torch.device | str) -> "TwoHot":
        self.bins = self.bins.to(device)
        return self

    def _bracket(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y (...) -> the two bins bracketing symlog(y) (..., 2) [below, above] and their
        weights (..., 2), which sum to 1."""
        x = symlog(y).clamp(self.bins[0], self.bins[-1])
        k = len(self.bins)
        above = torch.searchsorted(self.bins, x.detach().contiguous(), right=True).clamp(1, k - 1)
        below = above - 1
        lo, hi = self.bins[below], self.bins[above]
        w_hi = ((x - lo) / (hi - lo)).clamp(0, 1)
        return torch.stack([below, above], -1), torch.stack([1 - w_hi, w_hi], -1)

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """y (...) -> two-hot weights (..., K) summing to 1."""
        index, weight = self._bracket(y)
        out = torch.zeros(*y.shape, len(self.bins), device=y.device, dtype=weight.dtype)
        return out.scatter_add_(-1, index, weight)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (..., K) -> predicted value (...)."""
        return symexp(torch.softmax(logits.float(), -1) @ self.bins)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of logits (..., K) against the two-hot encoding of y (...) -> (...)."""
        return self.mixture_loss(logits, [(y, 1.0)])

    def mixture_loss(self, logits: torch.Tensor, targets: list[tuple[torch.Tensor, float]]) -> torch.Tensor:
        """sum_i scale_i * loss(logits, y_i) for [(y_i (...), scale_i)], with one log_softmax
        and one gather: a two-hot target has only two non-zero bins, so the dense (..., K)
        target of `encode` is never built."""
        index, weight = [], []
        for y, scale in targets:
            i, w = self._bracket(y.detach().float())
            index.append(i)
            weight.append(w if scale == 1.0 else scale * w)
        index = torch.cat(index, -1) if len(index) > 1 else index[0]
        weight = torch.cat(weight, -1) if len(weight) > 1 else weight[0]
        return _SparseCrossEntropy.apply(logits.float(), index, weight)


class _SparseCrossEntropy(torch.autograd.Function):
    """-sum_j weight_j * log_softmax(logits)[index_j] (...) for index, weight (..., J).
    The same as log_softmax -> gather -> weighted sum under autograd, but its backward
    writes the gradient softmax * sum_j(w_j) - w (scattered) into one (..., K) tensor,
    instead of a zero-filled (..., K) scatter for the gather plus a second tensor for
    log_softmax's backward: half the time for the critic's (H, N, 255) logits."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits, -1)
        ctx.save_for_backward(logp, index, weight)
        return -(logp.gather(-1, index) * weight).sum(-1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        logp, index, weight = ctx.saved_tensors
        gw = grad.unsqueeze(-1) * weight  # (..., J)
        out = logp.exp().mul_(gw.sum(-1, keepdim=True))  # softmax * sum_j(grad * w_j)
        return out.scatter_add_(-1, index, -gw), None, None


def unimix_probs(logits: torch.Tensor, unimix: float) -> torch.Tensor:
    """Probabilities of the categorical with `unimix` of the uniform distribution mixed in."""
    probs = torch.softmax(logits, -1)
    if unimix <= 0:
        return probs
    return (1 - unimix) * probs + unimix / logits.shape[-1]


def unimix_logits(logits: torch.Tensor, unimix: float) -> torch.Tensor:
    """Mix a categorical with `unimix` of the uniform distribution (DreamerV3's 1%),
    so no class probability reaches 0 and KLs stay finite. Returns log-probs."""
    if unimix <= 0:
        return torch.log_softmax(logits, -1)
    return torch.log(unimix_probs(logits, unimix))


def generator_kw(generator: torch.Generator | None) -> dict[str, torch.Generator]:
    """`generator=...` for torch.rand/randn, or nothing for the global RNG. Never pass
    `generator=None`: that overload takes no symbolic sizes, which torch.compile passes once
    a batch size has changed (and then the compile fails)."""
    return {} if generator is None else {"generator": generator}


def sample_index(probs: torch.Tensor, generator: torch.Generator | None = None,
                 uniform: torch.Tensor | None = None) -> torch.Tensor:
    """Categorical sample (...) from probs (..., C) by inverting the CDF: ~10x faster on
    CPU than torch.multinomial for many small categoricals. `uniform` (..., 1): the U[0, 1)
    draws to use instead of drawing them from `generator` (compiled code cannot take a
    generator: see planners/mpc.py `_proposals`)."""
    cdf = probs.detach().float().cumsum(-1)
    if uniform is None:
        uniform = torch.rand(*probs.shape[:-1], 1, device=probs.device, **generator_kw(generator))
    return (cdf < uniform * cdf[..., -1:]).sum(-1).clamp(max=probs.shape[-1] - 1)


def onehot(index: torch.Tensor, classes: int, like: torch.Tensor) -> torch.Tensor:
    """One-hot (..., classes) of `index` (...) in `like`'s dtype and device. Unlike F.one_hot
    it does not check the index range (an aminmax reduction and two host syncs per call)."""
    out = torch.zeros(*index.shape, classes, dtype=like.dtype, device=like.device)
    return out.scatter_(-1, index.unsqueeze(-1), 1.0)


def onehot_sample(logits: torch.Tensor, generator: torch.Generator | None = None,
                  probs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one-hot (..., C) from log-probs, with straight-through gradients to the probs,
    and the sampled class (...). Pass `probs` when the caller already has exp(logits)."""
    probs = torch.softmax(logits, -1) if probs is None else probs
    index = sample_index(probs, generator)
    sample = onehot(index, probs.shape[-1], probs)
    if not probs.requires_grad:  # no gradient to carry (planning, no_grad imagination): the
        return sample, index     # straight-through terms would only round the ones by an ulp
    return sample + probs - probs.detach(), index


def categorical_kl(lhs_logits: torch.Tensor, rhs_logits: torch.Tensor) -> torch.Tensor:
    """KL(lhs || rhs) for log-prob tensors (..., S, C), summed over S and C -> (...)."""
    lhs = torch.log_softmax(lhs_logits.float(), -1)
    rhs = torch.log_softmax(rhs_logits.float(), -1)
    return (lhs.exp() * (lhs - rhs)).sum((-1, -2))


class BoundedNormal:
    """The continuous actor: Normal(tanh(mu), std) with std in [min_std, max_std],
    samples clipped to [-1, 1] (DreamerV3's bounded_normal)."""

    def __init__(self, raw: torch.Tensor, min_std: float, max_std: float) -> None:
        mu, std = raw.float().chunk(2, -1)
        self.mean = torch.tanh(mu)
        self.std = (max_std - min_std) * torch.sigmoid(std + 2.0) + min_std
        # no argument checks: std > 0 by construction, and a check reads every tensor back to
        # the host (a sync per imagined step on a GPU; a CUDA graph cannot capture it). A NaN
        # then reaches the loss, where the update is skipped (worldmodel/faults.py), not raised.
        self.dist = torch.distributions.Normal(self.mean, self.std, validate_args=False)

    def sample(self, generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """`noise` (..., A): standard normal draws to use instead of drawing from `generator`."""
        if noise is None:
            noise = torch.randn(self.mean.shape, device=self.mean.device, **generator_kw(generator))
        return (self.mean + self.std * noise).detach()

    def rsample(self) -> torch.Tensor:
        """Reparameterised sample, clipped with a straight-through gradient."""
        x = self.dist.rsample()
        return x + (x.clamp(-1, 1) - x).detach()

    def mode(self) -> torch.Tensor:
        return self.mean

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        return self.dist.log_prob(action.float()).sum(-1)

    def entropy(self) -> torch.Tensor:
        return self.dist.entropy().sum(-1)


class MultiCategorical:
    """The discrete actor over one or more categorical heads (Discrete / MultiDiscrete),
    with unimix and optional action masks. Actions are concatenated one-hots."""

    def __init__(self, logits: torch.Tensor, sizes: tuple[int, ...], unimix: float,
                 mask: torch.Tensor | None = None) -> None:
        self.sizes = sizes
        parts = list(logits.float().split(list(sizes), -1))
        masks = list(mask.split(list(sizes), -1)) if mask is not None else [None] * len(sizes)
        self.logps = []
        self.free_logps = []  # before the mask: what the policy itself would propose
        for part, m in zip(parts, masks):
            logp = unimix_logits(part, unimix)
            self.free_logps.append(logp)
            if m is not None:
                # Forbidden actions get a large finite negative logit; when every action of a
                # head is forbidden the mask is ignored for that head (no NaN, shield falls back).
                m = m.bool() | ~m.bool().any(-1, keepdim=True)
                logp = torch.log_softmax(logp.masked_fill(~m, -1e9), -1)
            self.logps.append(logp)

    def sample(self, generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """`noise` (..., heads): U[0, 1) draws to use instead of drawing from `generator`."""
        out = []
        for i, logp in enumerate(self.logps):
            u = None if noise is None else noise[..., i:i + 1]
            out.append(onehot(sample_index(logp.exp(), generator, u), logp.shape[-1], logp))
        return torch.cat(out, -1) if len(out) > 1 else out[0]

    def rsample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A sample whose gradient flows to the probabilities (straight-through): one-hot
        forward, d(action)/d(probs) = identity backward. For `actor.grad: dynamics`, where
        the returns are backpropagated through the world model into the actions."""
        out = [onehot_sample(logp, generator, logp.exp())[0] for logp in self.logps]
        return torch.cat(out, -1) if len(out) > 1 else out[0]

    def mode(self) -> torch.Tensor:
        return torch.cat([F.one_hot(lp.argmax(-1), lp.shape[-1]).float() for lp in self.logps], -1)

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        parts = action.float().split(list(self.sizes), -1)
        return _total((a * lp).sum(-1) for a, lp in zip(parts, self.logps))

    def entropy(self) -> torch.Tensor:
        return _total(-(lp.exp() * lp).sum(-1) for lp in self.logps)

    def allowed_logmass(self, allowed: torch.Tensor, masked: bool = False) -> torch.Tensor:
        """log P(an action sampled from the unmasked policy is allowed) (...,) for a per-action
        mask (..., sum sizes), heads independent. A head with nothing allowed (a dead end)
        adds 0: the shield's fallback decides there, not the policy. masked=True: of the
        policy under its own mask instead (the agent's proposal under learned verdicts)."""
        logps = self.logps if masked else self.free_logps
        total = torch.zeros(logps[0].shape[:-1], device=logps[0].device)
        for lp, m in zip(logps, allowed.bool().split(list(self.sizes), -1)):
            inside = torch.logsumexp(lp.masked_fill(~m, -float("inf")), -1)
            total = total + torch.where(m.any(-1), inside, torch.zeros_like(inside))
        return total

    def preferences(self) -> torch.Tensor:
        """Per-action log-probs (..., sum sizes): the ranking the shield uses on a veto."""
        return torch.cat(self.logps, -1)


def narrow_mask(outer: torch.Tensor, inner: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """(..., sum sizes) bool: outer & inner per head, or outer alone in a head where the
    two leave nothing (inner is a guess, e.g. learned verdicts; outer is the rules' word)."""
    out = []
    for o, i in zip(outer.bool().split(list(sizes), -1), inner.bool().split(list(sizes), -1)):
        both = o & i
        out.append(torch.where(both.any(-1, keepdim=True), both, o))
    return torch.cat(out, -1) if len(out) > 1 else out[0]


def _total(terms: Iterator[torch.Tensor]) -> torch.Tensor:
    """sum() of the heads' terms without its leading `0 +` (one op less for one head)."""
    total = next(terms)
    for term in terms:
        total = total + term
    return total
