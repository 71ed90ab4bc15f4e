"""Data-parallel training on torch.distributed, launched by torchrun.

Each rank steps its own envs into its own replay shard and trains on its own slice of
the batch; after every backward pass the gradients are averaged across ranks with one
all-reduce per parameter group (NCCL on GPUs, gloo on CPUs), so every rank applies the
same update and the parameters stay identical. The effective batch is the configured
`replay.batch`: each rank samples batch / world_size sequences.

Nothing here runs unless torchrun set WORLD_SIZE > 1.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init(device_name: str) -> tuple[Context, torch.device | None]:
    """Join the process group torchrun prepared (if any). Returns the context and, under
    torchrun with CUDA, the rank's own device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(), None
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    device = None
    if use_cuda:
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    return Context(rank, world, local), device


def average_gradients(params: Iterable[torch.nn.Parameter], ctx: Context) -> None:
    """Mean of each gradient over ranks, as one flat all-reduce (one message, not one per tensor)."""
    if not ctx.active:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ctx.world
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def broadcast_module(module: torch.nn.Module, ctx: Context) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not ctx.active:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def all_sum(value: float, ctx: Context) -> float:
    if not ctx.active:
        return value
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"  # NCCL only reduces GPU tensors
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


def any_flag(flag: bool, ctx: Context) -> bool:
    """True on every rank when it is True on any (e.g. one rank got SIGINT): ranks must
    stop at the same step, or the others would wait forever in the next all-reduce."""
    if not ctx.active:
        return flag
    return all_sum(float(flag), ctx) > 0


def divergence(module: torch.nn.Module, ctx: Context) -> float:
    """Largest difference over ranks of the parameters' sum: 0.0 when they are identical."""
    total = sum(float(p.detach().double().sum()) for p in module.parameters())
    if not ctx.active:
        return 0.0
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([total, -total], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t[0] + t[1])  # max - min


def barrier(ctx: Context) -> None:
    if ctx.active:
        dist.barrier()


def shutdown(ctx: Context) -> None:
    if ctx.active and dist.is_initialized():
        dist.destroy_process_group()
