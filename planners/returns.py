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


class ReturnNormalizer:
    """Scale advantages by max(1, P95 - P5) of the returns, tracked as an EMA. Dividing by
    a range (not a std) and never scaling up below 1 keeps small sparse rewards intact."""

    def __init__(self, rate: float = 0.01, low: float = 0.05, high: float = 0.95,
                 limit: float = 1.0) -> None:
        self.rate, self.low, self.high, self.limit = rate, low, high, limit
        self.lo: float | None = None
        self.hi: float | None = None

    def update(self, returns: torch.Tensor) -> None:
        flat = returns.detach().float().flatten()
        q = torch.quantile(flat, torch.tensor([self.low, self.high], device=flat.device))
        lo, hi = float(q[0]), float(q[1])
        if self.lo is None:
            self.lo, self.hi = lo, hi
        else:
            self.lo += self.rate * (lo - self.lo)
            self.hi += self.rate * (hi - self.hi)

    @property
    def scale(self) -> float:
        if self.lo is None:
            return 1.0
        return max(self.limit, self.hi - self.lo)

    def state_dict(self) -> dict[str, float]:
        return {"lo": self.lo if self.lo is not None else float("nan"),
                "hi": self.hi if self.hi is not None else float("nan")}

    def load_state_dict(self, state: dict[str, float]) -> None:
        lo, hi = float(state["lo"]), float(state["hi"])
        self.lo, self.hi = (None, None) if lo != lo else (lo, hi)
