"""Lambda-returns and DreamerV3's percentile return normalisation.

Imagined trajectory convention (N starts, horizon H): states s_0..s_H, the action at s_t
leads to s_{t+1}; reward[:, t] and cont[:, t] are predicted at s_{t+1}; value[:, t] at s_t.
"""
from __future__ import annotations

import torch


def lambda_returns(reward: torch.Tensor, cont: torch.Tensor, value: torch.Tensor,
                   gamma: float, lam: float, stop: torch.Tensor | None = None) -> torch.Tensor:
    """TD(lambda) returns. reward, cont (N, H); value (N, H+1) -> returns (N, H).
    R_t = r_t + gamma * c_t * ((1 - lam) * v_{t+1} + lam * R_{t+1}),  R_H = v_H.
    `stop` (N, H) bool: the data ends at s_{t+1} (a replayed episode's last step, or the
    step before padding), so R_t bootstraps from v_{t+1} alone."""
    H = reward.shape[1]
    # R_t = inter_t + disc_t * R_{t+1}: everything but the recursion is computed for all t at
    # once, so each step of the loop is one fused multiply-add (a per-op-bound update pays for
    # every op: 3 per step here instead of 11). Time-major views, (H, N), so a step's row is
    # contiguous whichever layout the caller passes.
    r, c, v = reward.t(), cont.t(), value.t()  # (H, N), (H, N), (H+1, N)
    lam_t = lam if stop is None else lam * (~stop).t().to(reward.dtype)
    disc = gamma * c * lam_t  # (H, N)
    inter = r + gamma * c * (1 - lam_t) * v[1:]  # (H, N)
    last = v[H]
    out = []
    for t in reversed(range(H)):
        last = torch.addcmul(inter[t], disc[t], last)
        out.append(last)
    return torch.stack(out[::-1], 1)  # (N, H)


def quantiles(flat: torch.Tensor, qs: tuple[float, ...]) -> torch.Tensor:
    """torch.quantile's linear interpolation for the fixed levels qs of a 1-D tensor -> (len(qs),).
    The levels are Python floats, so nothing is read back from the device (torch.quantile
    checks a tensor of levels on the host, which a CUDA graph cannot capture)."""
    ordered = flat.sort().values
    n = ordered.numel()
    out = []
    for q in qs:
        pos = q * (n - 1)
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        out.append(torch.lerp(ordered[lo], ordered[hi], pos - lo))
    return torch.stack(out)


class ReturnNormalizer:
    """Scale advantages by max(1, P95 - P5) of the returns, tracked as an EMA. Dividing by
    a range (not a std) and never scaling up below 1 keeps small sparse rewards intact.
    The EMA is a tensor on the returns' device, updated in place, so an update reads nothing
    back to the host (worldmodel/graphs.py captures it); non-finite percentiles are ignored."""

    def __init__(self, rate: float = 0.01, low: float = 0.05, high: float = 0.95,
                 limit: float = 1.0) -> None:
        self.rate, self.low, self.high, self.limit = rate, low, high, limit
        self.range: torch.Tensor | None = None  # (2,): the EMAs of P_low and P_high

    def update(self, returns: torch.Tensor) -> None:
        q = quantiles(returns.detach().float().flatten(), (self.low, self.high))
        if self.range is None or self.range.device != q.device:  # first update, or after a load
            self.range = torch.full_like(q, float("nan")) if self.range is None else self.range.to(q.device)
        # not yet finite (the first update): start at these percentiles
        new = torch.where(torch.isfinite(self.range), self.range + self.rate * (q - self.range), q)
        self.range.copy_(torch.where(torch.isfinite(new), new, self.range))

    @property
    def scale(self) -> torch.Tensor | float:
        """max(limit, hi - lo): a 0-dim tensor once updated, 1.0 before."""
        if self.range is None:
            return 1.0
        return torch.nan_to_num(self.range[1] - self.range[0], nan=self.limit).clamp(min=self.limit)

    def state_dict(self) -> dict[str, float]:
        lo, hi = (float("nan"),) * 2 if self.range is None else self.range.tolist()
        return {"lo": lo, "hi": hi}

    def load_state_dict(self, state: dict[str, float]) -> None:
        lo, hi = float(state["lo"]), float(state["hi"])
        if self.range is not None:  # in place: a captured CUDA graph keeps updating this tensor
            self.range.copy_(torch.tensor([lo, hi]))  # NaN (never updated) restarts the EMA
        else:
            self.range = None if lo != lo else torch.tensor([lo, hi])
