"""Where one training update's time goes, on any device: kernel launches and host-side time
against the time the device computes, eager or compiled.

  python -m benchmarks.update_profile --preset small --device cuda
  python -m benchmarks.update_profile --preset small --device cuda --cuda-graphs

An update that launches thousands of small kernels is bound by launching them, not by the
device: then `device busy` (the kernels' summed time over the update's wall time) is low,
and only fusing (torch.compile) or replaying (CUDA graphs) helps, not a bigger GPU.
Prints one JSON line per configuration."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def profile_update(preset: str, device: str, precision: str = "float32", compile_mode: str = "none",
                   repeats: int = 10, env_id: str = "CartPole-v1", cuda_graphs: bool = False) -> dict:
    """Median wall ms per update, then one profiled update: launches, syncs, device time."""
    from benchmarks.speed import _agent, _fake_batch
    cfg, agent = _agent(preset, env_id, {"run.device": device, "run.precision": precision,
                                         "run.cuda_graphs": cuda_graphs}, device)
    t0 = time.perf_counter()
    if compile_mode != "none":
        agent.compile()
    batch = _fake_batch(agent, cfg, np.random.default_rng(0))
    for _ in range(5):  # warm-up (and compiling; with CUDA graphs: 3 eager updates, then the capture)
        agent.train_step(batch)
    _sync(device)
    warmup_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        agent.train_step(batch)
        _sync(device)
        times.append(time.perf_counter() - t)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        t = time.perf_counter()
        agent.train_step(batch)
        _sync(device)
        profiled_ms = (time.perf_counter() - t) * 1e3
    events = prof.events()
    launches = sum(1 for e in events if e.name.startswith(("cudaLaunchKernel", "cuLaunchKernel", "cudaGraphLaunch")))
    graph_replays = sum(1 for e in events if e.name.startswith("cudaGraphLaunch"))
    syncs = sum(1 for e in events if e.name in ("cudaStreamSynchronize", "cudaDeviceSynchronize",
                                                 "cudaEventSynchronize"))
    # kernels (and copies) on the device: their own events, each with its time range in us
    device_us = sum(e.time_range.elapsed_us() for e in events if str(e.device_type).endswith("CUDA"))
    aten_ops = sum(1 for e in events if e.name.startswith("aten::"))
    ms = statistics.median(times) * 1e3
    top = sorted(prof.key_averages(), key=lambda a: a.count, reverse=True)
    return {"preset": preset, "device": device, "precision": precision, "compile": compile_mode,
            "cuda_graphs": bool(agent.graphs and agent.graphs.captures),
            "batch": cfg.replay.batch, "length": cfg.replay.length, "ms_per_update": round(ms, 2),
            "warmup_s": round(warmup_s, 1), "profiled_ms": round(profiled_ms, 1),
            "kernel_launches": launches, "graph_replays": graph_replays, "syncs": syncs, "aten_ops": aten_ops,
            "device_ms": round(device_us / 1e3, 2), "device_busy": round(device_us / 1e3 / profiled_ms, 3),
            "us_per_launch": round(profiled_ms * 1e3 / launches, 1) if launches else None,
            "most_called": [(a.key, a.count) for a in top if a.key.startswith("aten::")][:8]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", nargs="+", default=["small"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="float32", choices=["float32", "bf16"])
    p.add_argument("--compile", default="none", choices=["none", "default"],
                   help="torch.compile the hot paths (Agent.compile)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="run.cuda_graphs: replay the update's gradient steps as CUDA graphs (CUDA only)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--no-record", action="store_true", help="print only; do not append to results")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from benchmarks.common import record
    command = "python -m benchmarks.update_profile " + " ".join(argv if argv is not None else sys.argv[1:])
    for preset in args.preset:
        row = profile_update(preset, args.device, args.precision, args.compile, args.repeats,
                             cuda_graphs=args.cuda_graphs)
        if not args.no_record:
            row = record("update_profile", {**row, "threads": args.threads}, command)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
