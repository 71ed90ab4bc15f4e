"""Network building blocks: normed MLPs, the image CNN encoder/decoder, and init.

DreamerV3 uses RMSNorm + SiLU after every hidden linear layer. Output layers of the
reward and critic heads start at zero, so their first predictions are 0 and early
gradients do not blow up the two-hot logits.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.optim.optimizer import register_optimizer_step_post_hook


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


# Optimizer steps taken in this process. LatentLinear caches a rearranged copy of its weight
# and must see every change to it: in-place edits bump a tensor's version counter, but the
# fused Adam kernel (see `adam`) does not (measured on torch 2.13), so every step counts here.
_STEPS = [0]


def _count_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    _STEPS[0] += 1


register_optimizer_step_post_hook(_count_step)


try:  # torch >= 2.4 takes the device type; the older spelling is deprecated there
    torch.is_autocast_enabled("cpu")

    def cpu_autocast() -> bool:
        return torch.is_autocast_enabled("cpu")
except TypeError:  # torch < 2.4
    cpu_autocast = torch.is_autocast_cpu_enabled


def compiling() -> bool:
    is_compiling = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
    return bool(is_compiling and is_compiling())


# True while worldmodel/graphs.py captures a CUDA graph (a flag of ours: a CPU-only torch
# build cannot even ask torch.cuda whether a stream is capturing)
CAPTURING = [False]


def tracing() -> bool:
    """True while torch.compile traces or a CUDA graph is captured: code must then take
    paths that do not depend on tensor values (no host reads, no branches on data)."""
    return CAPTURING[0] or compiling()


def _latent_product(x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    table: torch.Tensor, dense: int) -> torch.Tensor:
    """x @ W.T (+ b) for x (R, D + G*C) = [dense part | one-hot groups] with the one-hot part
    given by its flat indices (R, G) into table (G*C + 1, O), the latent columns of W as rows
    and a last row of zeros (absent latents add nothing; a zero row measured 10x faster than
    embedding_bag's padding_idx). No autograd: see _LatentProduct."""
    out = F.embedding_bag(index, table, mode="sum")
    if dense:
        out = torch.addmm(out, x[:, :dense], weight[:, :dense].t())
    return out if bias is None else out + bias


class _LatentProduct(torch.autograd.Function):
    """`_latent_product` under autograd: forward gathers and sums W's columns (an embedding
    bag) instead of multiplying by zeros; backward is the dense product's, so gradients
    (including the straight-through ones into the latent) are exactly nn.Linear's."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                table: torch.Tensor, dense: int) -> torch.Tensor:
        out = _latent_product(x, index, weight, bias, table, dense)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad @ weight if ctx.needs_input_grad[0] else None
        grad_w = grad.t() @ x if ctx.needs_input_grad[2] else None
        grad_b = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[3] else None
        return grad_x, None, grad_w, grad_b, None, None


class LatentLinear(nn.Linear):
    """A Linear whose input is a feature [deter (D) | latent (G groups x C classes)], where
    the latent is one-hot per group (DreamerV3's categorical sample). Given the sampled
    classes as flat indices `index` (..., G) into the G*C latent columns (G*C = absent,
    e.g. the zero latent of an initial state), the latent part of the product is a sum of
    G weight columns instead of a (G*C)-wide matmul: measured 5-10x faster for the forward
    of the XS-sized first layers on this CPU. Without `index`, or off the CPU, it is
    nn.Linear. Same parameters and state_dict as nn.Linear."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 dense: int, groups: int, classes: int) -> None:
        super().__init__(in_features, out_features, bias)
        assert dense + groups * classes == in_features, (dense, groups, classes, in_features)
        self.dense, self.groups, self.classes = dense, groups, classes
        self._table: tuple[tuple[int, int, int], torch.Tensor] | None = None

    def table(self) -> torch.Tensor:
        """The latent columns as embedding rows (G*C + 1, O), last row zero; rebuilt only
        when the weight may have changed (its version, storage, or any optimizer step).
        Under torch.compile it is built inside the graph each call (a (G*C, O) copy): the
        cache key reads storage pointers, which a compiled graph cannot guard on."""
        if compiling():
            return self._build_table()
        w = self.weight
        key = (w._version, w.data_ptr(), _STEPS[0])
        if self._table is None or self._table[0] != key:
            self._table = (key, self._build_table())
        return self._table[1]

    def _build_table(self) -> torch.Tensor:
        rows = self.weight.detach()[:, self.dense:].t()
        return torch.cat([rows, rows.new_zeros(1, rows.shape[1])], 0)

    enabled = True  # class-wide switch (benchmarks time both paths in one process)

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        # GPUs multiply faster than they gather; autocast takes the plain path. Compiled code
        # on the CPU gathers too: the one-hot product costs it what it costs eager code
        if (index is None or not self.enabled or x.device.type != "cpu" or x.dtype != self.weight.dtype
                or cpu_autocast()):
            return super().forward(x)
        lead = x.shape[:-1]
        args = (x.reshape(-1, x.shape[-1]), index.reshape(-1, self.groups), self.weight, self.bias,
                self.table(), self.dense)
        grads = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        # without gradients (planning, targets) skip autograd.Function's per-call overhead
        out = _LatentProduct.apply(*args) if grads else _latent_product(*args)
        return out.reshape(*lead, self.out_features)


class MLP(nn.Module):
    """`layers` x (Linear -> RMSNorm -> SiLU), then an optional output Linear.
    `latent` = (deter, groups, classes) when the input is a world-model feature: the first
    linear is then a LatentLinear, and `forward(feat, index)` uses the sampled classes."""

    def __init__(self, in_dim: int, out_dim: int | None, units: int, layers: int,
                 out_scale: float = 1.0, latent: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        dim = in_dim

        def linear(d_in: int, d_out: int, bias: bool) -> nn.Linear:
            if latent is not None and d_in == in_dim and not mods:  # the first layer
                dense, groups, classes = latent
                return LatentLinear(d_in, d_out, bias, dense=dense, groups=groups, classes=classes)
            return nn.Linear(d_in, d_out, bias)

        for _ in range(layers):
            mods += [init_linear(linear(dim, units, False)), Norm(units), nn.SiLU()]
            dim = units
        self.body = nn.Sequential(*mods)
        self.head = init_linear(linear(dim, out_dim, True), out_scale) if out_dim else None
        self.out_dim = out_dim or dim
        self.latent = latent is not None

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """x (..., in) -> (..., out); `index` (..., G): the latent's classes (see LatentLinear)."""
        if index is None or not self.latent:
            x = self.body(x)
            return self.head(x) if self.head is not None else x
        if not len(self.body):
            return self.head(x, index)
        x = self.body[0](x, index)
        for i in range(1, len(self.body)):
            x = self.body[i](x)
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
