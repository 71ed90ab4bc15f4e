"""Exploration by disagreement: an ensemble that predicts what the next observation will
look like, and whose heads disagree where the world model has seen little.

Sparse rewards (DMC pendulum-swingup pays only near the top) are found by chance or not
at all: random torques, white or temporally correlated, rarely swing the pendulum up
(README, "Exploration"). Plan2Explore's answer is an intrinsic reward for imagined states
the model is unsure about. Here, K small MLPs read the deterministic state h_t, which the
dynamics compute from the past alone (h_t = f(h_{t-1}, z_{t-1}, a_{t-1}) for every
backbone), and each predicts the encoder's embedding e_t of the observation that follows.
Trained on replay, they agree where the data was and scatter elsewhere, so

    bonus(h) = mean over embedding dims of the std over the K heads' predictions

is high for states the agent has not visited. The actor-critic adds `behavior.explore`
times the bonus to every imagined (and, with `critic.replay_loss`, replayed) reward, so
the actor is paid to go where its model is uncertain; as the model learns a region the
bonus there falls towards zero and the task reward takes over.

The heads are trained on detached inputs and targets: the bonus never shapes the world
model's representation. One batched matmul per layer serves all heads.

Legend: K heads, N rows, D deter, E embedding, U units.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class Ensemble(nn.Module):
    """K independent MLPs D -> U (x layers) -> E, evaluated together."""

    def __init__(self, in_dim: int, out_dim: int, *, heads: int, units: int, layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [units] * layers + [out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            # each head its own fan-average truncated-normal init (as worldmodel/nets.py)
            std = math.sqrt(2.0 / (d_in + d_out)) / 0.87962566103423978
            w = nn.init.trunc_normal_(torch.empty(heads, d_in, d_out), 0.0, std, -2 * std, 2 * std)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(heads, 1, d_out)))
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., D) -> predictions (K, ..., E)."""
        lead = x.shape[:-1]
        h = x.reshape(1, -1, x.shape[-1]).expand(self.heads, -1, -1)  # (K, N, D)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)  # (K, N, out)
            if i < last:
                h = F.silu(F.layer_norm(h, h.shape[-1:], eps=1e-4))
        return h.reshape(self.heads, *lead, h.shape[-1])

    def loss(self, deter: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """deter (..., D), target (..., E), both detached here -> squared error (...),
        summed over E and averaged over the heads."""
        pred = self(deter.detach().float())
        return ((pred - target.detach().float()[None]) ** 2).sum(-1).mean(0)

    def disagreement(self, deter: torch.Tensor) -> torch.Tensor:
        """deter (..., D) -> (...): the heads' std, averaged over the embedding dims."""
        pred = self(deter.float())  # (K, ..., E)
        # the unbiased std over K written out: torch's std over the leading dim was 40 ms
        # for (5, 3840, 64) on this CPU, these elementwise ops over whole slices 2 ms
        dev = pred - pred.mean(0, keepdim=True)
        return ((dev * dev).sum(0) / (self.heads - 1)).sqrt().mean(-1)
