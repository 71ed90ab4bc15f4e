"""Model-predictive path integral control over the world model's imagination: refit the
sampling distribution to the elites weighted by exp(return / temperature), so better
plans pull harder. All of the machinery is in planners/mpc.py (recipe and legend there).

The temperature is scale-free: returns are measured in units of the elites' standard
deviation, so one setting works for rewards of any magnitude (like DreamerV3's return
normalisation). temperature -> 0 approaches argmax, -> inf approaches CEM's equal weights.
"""
from __future__ import annotations

import torch

from planners.mpc import LatentMPC


class MPPI(LatentMPC):
    def elite_weights(self, ret: torch.Tensor, enough: torch.Tensor) -> torch.Tensor:
        """Softmax weights (B, k) over elite returns (B, k). Where an env had fewer than k
        safe candidates its elites were ranked by safety, not return: weigh them equally."""
        scale = ret.std(1, keepdim=True).nan_to_num(0.0).clamp(min=1e-6)
        soft = torch.softmax((ret - ret.amax(1, keepdim=True)) / (self.temperature * scale), 1)
        uniform = torch.full_like(ret, 1.0 / ret.shape[1])
        return torch.where(enough[:, None], soft, uniform)
