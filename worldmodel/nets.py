"""Network building blocks: normed MLPs, the image CNN encoder/decoder, and init.

DreamerV3 uses RMSNorm + SiLU after every hidden linear layer. Output layers of the
reward and critic heads start at zero, so their first predictions are 0 and early
gradients do not blow up the two-hot logits.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn


def Norm(dim: int) -> nn.Module:
    # DreamerV3 uses RMSNorm; LayerNorm plays the same role and has a fused CPU kernel:
    # measured here 3x faster forward+backward than nn.RMSNorm on (8192, 256).
    return nn.LayerNorm(dim, eps=1e-4)


def init_linear(layer: nn.Linear, scale: float = 1.0) -> nn.Linear:
    """Truncated-normal fan-average init (DreamerV3); scale 0 gives a zero output layer."""
    if scale == 0.0:
        nn.init.zeros_(layer.weight)
    else:
        fan = (layer.in_features + layer.out_features) / 2
        std = math.sqrt(scale / fan) / 0.87962566103423978
        nn.init.trunc_normal_(layer.weight, 0.0, std, -2 * std, 2 * std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def adam(params: Iterable[nn.Parameter], lr: float, eps: float) -> torch.optim.Adam:
    """Adam with the fused kernel where this torch has one for the parameters' device (CPU
    since torch 2.4): one kernel per tensor instead of a handful of ops. Measured here on the
    small world model's 40 tensors: step + gradient clip 2.3 -> 1.0 ms. Same update up to
    float rounding."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, eps=eps, fused=True)
    except (RuntimeError, ValueError):  # older torch: no fused kernel on this device
        return torch.optim.Adam(params, lr=lr, eps=eps)


class MLP(nn.Module):
    """`layers` x (Linear -> RMSNorm -> SiLU), then an optional output Linear."""

    def __init__(self, in_dim: int, out_dim: int | None, units: int, layers: int,
                 out_scale: float = 1.0) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        dim = in_dim
        for _ in range(layers):
            mods += [init_linear(nn.Linear(dim, units, bias=False)), Norm(units), nn.SiLU()]
            dim = units
        self.body = nn.Sequential(*mods)
        self.head = init_linear(nn.Linear(dim, out_dim), out_scale) if out_dim else None
        self.out_dim = out_dim or dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x)
        return self.head(x) if self.head is not None else x


class ChannelNorm(nn.Module):
    """RMS-normalise conv features over channels: (B, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = Norm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _stages(size: int, min_size: int = 4) -> int:
    n = 0
    while size > min_size and size % 2 == 0:
        size //= 2
        n += 1
    return n


class ImageEncoder(nn.Module):
    """uint8 images (N, H, W, C) -> features (N, out_dim). Stride-2 convs halve the
    resolution until 4x4 (64x64 -> 4 stages), channels depth * (1, 2, 4, 8, ...)."""

    def __init__(self, shape: tuple[int, int, int], depth: int) -> None:
        super().__init__()
        h, w, c = shape
        stages = _stages(min(h, w))
        mods: list[nn.Module] = []
        ch_in = c
        for i in range(stages):
            ch = depth * 2 ** i
            mods += [nn.Conv2d(ch_in, ch, 4, 2, 1, bias=False), ChannelNorm(ch), nn.SiLU()]
            ch_in = ch
        self.net = nn.Sequential(*mods)
        self.out_dim = ch_in * (h >> stages) * (w >> stages)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.float().permute(0, 3, 1, 2) / 255.0 - 0.5
        return self.net(x).flatten(1)


class ImageDecoder(nn.Module):
    """Features (N, F) -> images (N, H, W, C) in [-0.5, 0.5] (pixels / 255 - 0.5)."""

    def __init__(self, in_dim: int, shape: tuple[int, int, int], depth: int) -> None:
        super().__init__()
        h, w, c = shape
        stages = _stages(min(h, w))
        self.start = (depth * 2 ** (stages - 1), h >> stages, w >> stages)
        self.proj = init_linear(nn.Linear(in_dim, math.prod(self.start)))
        mods: list[nn.Module] = []
        ch_in = self.start[0]
        for i in reversed(range(stages)):
            last = i == 0
            ch = c if last else depth * 2 ** (i - 1)
            mods.append(nn.ConvTranspose2d(ch_in, ch, 4, 2, 1, bias=last))
            if not last:
                mods += [ChannelNorm(ch), nn.SiLU()]
            ch_in = ch
        self.net = nn.Sequential(*mods)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        x = self.proj(feat).reshape(-1, *self.start)
        return self.net(x).permute(0, 2, 3, 1)
