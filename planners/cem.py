"""The cross-entropy method over the world model's imagination: refit the sampling
distribution to the mean (and spread) of the k best imagined plans, equally weighted.
All of the machinery (sampling, scoring, the shield in imagination, warm start, actor
proposals) is in planners/mpc.py; see there for the recipe and the legend."""
from __future__ import annotations

import torch

from planners.mpc import LatentMPC


class CEM(LatentMPC):
    def elite_weights(self, ret: torch.Tensor, enough: torch.Tensor) -> torch.Tensor:
        """Uniform weights (B, k): every elite counts the same, whatever its return."""
        return torch.full_like(ret, 1.0 / ret.shape[1])
