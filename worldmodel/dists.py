"""Distributions and transforms of DreamerV3: symlog, two-hot, unimix categoricals, bounded normal.

Shapes: `...` is any batch shape; K = number of two-hot bins; S x C = stochastic
variables x classes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


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

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """y (...) -> two-hot weights (..., K) summing to 1."""
        x = symlog(y).clamp(self.bins[0], self.bins[-1])
        k = len(self.bins)
        above = torch.searchsorted(self.bins, x.detach().contiguous(), right=True).clamp(1, k - 1)
        below = above - 1
        lo, hi = self.bins[below], self.bins[above]
        w_hi = ((x - lo) / (hi - lo)).clamp(0, 1)
        out = torch.zeros(*x.shape, k, device=x.device, dtype=x.dtype)
        out.scatter_(-1, below.unsqueeze(-1), (1 - w_hi).unsqueeze(-1))
        out.scatter_add_(-1, above.unsqueeze(-1), w_hi.unsqueeze(-1))
        return out

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (..., K) -> predicted value (...)."""
        probs = torch.softmax(logits.float(), -1)
        return symexp((probs * self.bins).sum(-1))

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of logits (..., K) against the two-hot encoding of y (...) -> (...)."""
        target = self.encode(y.detach().float())
        return -(target * F.log_softmax(logits.float(), -1)).sum(-1)


def unimix_logits(logits: torch.Tensor, unimix: float) -> torch.Tensor:
    """Mix a categorical with `unimix` of the uniform distribution (DreamerV3's 1%),
    so no class probability reaches 0 and KLs stay finite. Returns log-probs."""
    if unimix <= 0:
        return torch.log_softmax(logits, -1)
    probs = torch.softmax(logits, -1)
    probs = (1 - unimix) * probs + unimix / logits.shape[-1]
    return torch.log(probs)


def sample_index(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Categorical sample (...) from probs (..., C) by inverting the CDF: ~10x faster on
    CPU than torch.multinomial for many small categoricals."""
    cdf = probs.detach().float().cumsum(-1)
    u = torch.rand(*probs.shape[:-1], 1, device=probs.device, generator=generator) * cdf[..., -1:]
    return (cdf < u).sum(-1).clamp(max=probs.shape[-1] - 1)


def onehot_straight_through(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample one-hot (..., C) from log-probs, with straight-through gradients to the probs."""
    probs = torch.softmax(logits, -1)
    sample = F.one_hot(sample_index(probs, generator), probs.shape[-1]).to(probs.dtype)
    return sample + probs - probs.detach()


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
        self.dist = torch.distributions.Normal(self.mean, self.std)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device)
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
        for part, m in zip(parts, masks):
            logp = unimix_logits(part, unimix)
            if m is not None:
                # Forbidden actions get a large finite negative logit; when every action of a
                # head is forbidden the mask is ignored for that head (no NaN, shield falls back).
                m = m.bool() | ~m.bool().any(-1, keepdim=True)
                logp = torch.log_softmax(logp.masked_fill(~m, -1e9), -1)
            self.logps.append(logp)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        out = []
        for logp in self.logps:
            out.append(F.one_hot(sample_index(logp.exp(), generator), logp.shape[-1]).float())
        return torch.cat(out, -1)

    def mode(self) -> torch.Tensor:
        return torch.cat([F.one_hot(lp.argmax(-1), lp.shape[-1]).float() for lp in self.logps], -1)

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        parts = action.float().split(list(self.sizes), -1)
        return sum((a * lp).sum(-1) for a, lp in zip(parts, self.logps))

    def entropy(self) -> torch.Tensor:
        return sum(-(lp.exp() * lp).sum(-1) for lp in self.logps)

    def preferences(self) -> torch.Tensor:
        """Per-action log-probs (..., sum sizes): the ranking the shield uses on a veto."""
        return torch.cat(self.logps, -1)
