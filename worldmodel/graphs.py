"""CUDA graphs of a whole update (`run.cuda_graphs`).

On a GPU an update of the `small` preset is bound by launching kernels, not by running
them: ~5,300 launches at 20-45 us of host time each, for ~21 ms of kernel time (README,
"On a GPU"). A CUDA graph records the kernels of one call once and replays them all with one
launch, so the host's Python, dispatch and launch costs disappear from every later update.

`Agent.train_step` runs in four steps; the two on the device alone are captured:
  1. model gradients    world-model loss and backward                       graph "model"
  2. model apply        host: finite checks, all-reduce (torchrun), clip, Adam step
  3. behavior gradients imagination from step 1's posteriors, actor and critic losses
                        and their backward                                   graph "behavior"
  4. behavior apply     host: clip, Adam steps, slow critic, metrics (one transfer)
The optimizer steps stay outside the graphs: a skipped update (non-finite loss or gradient)
must not move the parameters, and that is a host decision (worldmodel/faults.py). Fused Adam
and foreach clipping are a handful of launches each.

What a graph needs, and how it gets it:
- Fixed addresses. The batch is copied into tensors allocated once (`inputs`); step 3 reads
  step 1's outputs, which a replay rewrites in place; gradients are allocated inside the
  capture (zero_grad(set_to_none=True) before the backward), so .grad stays the graph's.
  Parameters and optimizer states are updated in place. A batch of another shape or with
  other keys starts over: warm-up, then a new capture.
- No host reads inside. Both gradient steps read nothing back (tests/worldmodel/test_graphs.py
  runs them with every host read raising); code that would branch on data checks
  `nets.tracing()`, which is true during a capture (the GRU's per-step reset mask).
- Warm-up on a side stream. The first `warmup` updates run eagerly on a side stream, so
  lazy initialisation (cuBLAS handles, autograd's streams) happens before the capture, as
  PyTorch's docs require.
- Eager kernels only: with `run.compile` as well the capture failed on an H200 (torch 2.11:
  the compiled kernels' random-number offsets), so the config refuses the pair.
- A step that cannot be captured stays eager, with a one-line warning (`failed`).
- Random numbers: the default CUDA generator is registered with every graph, so each replay
  draws new samples (imagination and the posterior sample differently every update).
"""
from __future__ import annotations

import sys
from typing import Any, Callable

import torch

from worldmodel.nets import CAPTURING


_SIDE_STREAMS: dict[int, torch.cuda.Stream] = {}


def side_stream() -> torch.cuda.Stream:
    """One side stream per device for the whole process. PyTorch keeps a cuBLAS workspace
    (tens of MB on recent GPUs) for every stream that has run a matmul, until the process
    ends; a new stream per agent would add one for every agent made. (On the H200 each
    graphed agent left about 65 MB allocated after it was deleted, while it used its own
    stream: the size of such workspaces. The shared stream was not yet measured there.)"""
    device = torch.cuda.current_device()
    if device not in _SIDE_STREAMS:
        _SIDE_STREAMS[device] = torch.cuda.Stream()
    return _SIDE_STREAMS[device]


class UpdateGraphs:
    """Captures named phases of an update once and replays them; see the module docstring."""

    def __init__(self, warmup: int = 3) -> None:
        self.warmup = warmup
        self.updates = 0  # updates run since the last (re)start; captured once it reaches warmup
        self.captures = 0  # phases captured in this process (tests, logs)
        self.signature: tuple | None = None
        self.static: dict[str, torch.Tensor] = {}
        self.graphs: dict[str, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[str, Any] = {}
        self.failed: dict[str, str] = {}  # phase -> why its capture failed (it then stays eager)
        self._stream: torch.cuda.Stream | None = None

    def inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch in the fixed input tensors (copied in); call once per update, first."""
        signature = tuple((k, tuple(v.shape), v.dtype, v.device) for k, v in batch.items())
        if signature != self.signature:  # new shapes or keys: warm up and capture again
            self.signature, self.updates = signature, 0
            self.graphs, self.outputs = {}, {}
            self.static = {k: v.clone() for k, v in batch.items()}
        else:
            for k, v in batch.items():
                self.static[k].copy_(v, non_blocking=True)
            self.updates += 1
        return self.static

    @property
    def warm(self) -> bool:
        return self.updates >= self.warmup

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        """fn() (which reads only fixed tensors): eagerly while warming up, then captured
        once, then replayed. Returns fn's outputs (the graph's fixed output tensors)."""
        graph = self.graphs.get(name)
        if graph is not None:
            graph.replay()
            return self.outputs[name]
        if self._stream is None:
            self._stream = side_stream()
        self._stream.wait_stream(torch.cuda.current_stream())
        if not self.warm or name in self.failed:
            return self._eager(fn)
        graph = torch.cuda.CUDAGraph()
        CAPTURING[0] = True
        try:
            # thread_local: the replay's prefetch thread (worldmodel/replay.py) may copy the
            # next batch to the GPU meanwhile, which a global capture would forbid
            with torch.cuda.graph(graph, stream=self._stream, capture_error_mode="thread_local"):
                out = fn()
        except Exception as exc:  # something in fn cannot be captured: stay eager, say so once
            self.failed[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        finally:
            CAPTURING[0] = False
        if name in self.failed:
            print(f"warning: run.cuda_graphs: the {name} step could not be captured as a CUDA graph "
                  f"({self.failed[name]}); it runs eagerly", file=sys.stderr, flush=True)
            return self._eager(fn)
        self.graphs[name], self.outputs[name] = graph, out
        self.captures += 1
        graph.replay()  # a capture records the kernels without running them
        return out

    def _eager(self, fn: Callable[[], Any]) -> Any:
        """fn() on the side stream (warm-up, or a step that cannot be captured)."""
        with torch.cuda.stream(self._stream):
            out = fn()
        torch.cuda.current_stream().wait_stream(self._stream)
        return out
