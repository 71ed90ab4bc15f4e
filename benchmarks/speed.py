"""Speed benchmark: time per update, updates/s and FLOPs per update of each size preset,
measured on synthetic replay data (no env in the loop), with torch threads set
explicitly. Achieved GFLOP/s is reported against the machine's measured matmul peak.

  python -m benchmarks speed [--presets debug small medium] [--threads 1] [--repeats 10]
  python -m benchmarks gather-ab [--presets small medium xs-matched] [--rounds 6] [--planner]
  python -m benchmarks speed-grid [--preset small] [--batches 8 16 32] [--lengths 16 32 64]
                                  [--presets debug small medium] [--repeats 3]

gather-ab: the same agent's update (or, with --planner, its MPPI 256 x 5 x 3 decision) timed
with the heads' latent gather (worldmodel/nets.py LatentLinear) on and off, alternating in one
process; "xs-matched" is the small preset at SheepRL's XS size (benchmarks/sheeprl/compare.py).

speed-grid: how time per update and memory grow with batch size, sequence length and model
size; one fresh process per point (memory: see `update_cost`). Rows go to
benchmarks/results/speed.jsonl and speed_grid.jsonl."""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


def matmul_peak(threads: int, n: int = 1024, repeats: int = 10) -> float:
    """Measured fp32 GFLOP/s of a large square matmul: the practical ceiling."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def _agent(preset: str, env_id: str, overrides: dict[str, Any], device: str = "cpu"):
    import gymnasium as gym
    from envs.spaces import action_spec, obs_spec
    from worldmodel.agent import Agent
    from worldmodel.config import load_config
    cfg = load_config([preset], overrides)
    env = gym.make(env_id)
    agent = Agent(cfg, obs_spec(env.observation_space), action_spec(env.action_space), device=device)
    env.close()
    return cfg, agent


def _fake_batch(agent, cfg, rng: np.random.Generator) -> dict[str, np.ndarray]:
    B, T = cfg.replay.batch, cfg.replay.length
    data: dict[str, np.ndarray] = {}
    for k in agent.obs_spec.keys:
        if k.kind == "image":
            data[k.name] = rng.integers(0, 255, (B, T, *k.shape), dtype=np.uint8)
        else:
            data[k.name] = rng.normal(size=(B, T, *k.shape)).astype(np.float32)
    idx = rng.integers(0, agent.act_spec.dim, (B, T))
    data["action"] = np.eye(agent.act_spec.dim, dtype=np.float32)[idx]
    data["reward"] = rng.normal(size=(B, T)).astype(np.float32)
    data["is_first"] = np.zeros((B, T), bool)
    data["is_first"][:, 0] = True
    data["is_last"] = np.zeros((B, T), bool)
    data["is_terminal"] = np.zeros((B, T), bool)
    data["mask"] = np.ones((B, T), bool)
    data["cost"] = np.zeros((B, T), np.float32)
    return data


def time_updates(preset: str, env_id: str = "CartPole-v1", threads: int = 1, repeats: int = 10,
                 overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    overrides = dict(overrides or {})
    # run.compile: FLOPs are counted on the eager update (a dispatch mode does not see inside
    # compiled kernels), then the agent is compiled and warmed up (the compile time is kept)
    compiled = str(overrides.pop("run.compile", False)).lower() in ("1", "true", "yes")
    cfg, agent = _agent(preset, env_id, overrides)
    rng = np.random.default_rng(0)
    batch = _fake_batch(agent, cfg, rng)
    for _ in range(2):
        agent.train_step(batch)
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        agent.train_step(batch)
    flops = counter.get_total_flops()
    compile_s = None
    if compiled:
        t = time.perf_counter()
        agent.compile()
        for _ in range(3):  # compiling, and a recompile once the return normaliser has started
            agent.train_step(batch)
        compile_s = time.perf_counter() - t
    times, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        agent.train_step(batch)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    per_update = statistics.median(times)
    # CPU time of the process (all its threads): on a machine shared with other jobs it moves
    # far less than wall time, which counts the time other processes hold the cores
    return {"preset": preset, "env": env_id, "threads": threads, "params": sum(agent.param_counts().values()),
            "batch": cfg.replay.batch, "length": cfg.replay.length, "ms_per_update": per_update * 1e3,
            "cpu_ms_per_update": statistics.median(cpu) * 1e3,
            "updates_per_s": 1 / per_update, "gflop_per_update": flops / 1e9,
            "gflops_achieved": flops / per_update / 1e9, "compiled": compiled, "compile_s": compile_s,
            "overrides": overrides}


def alternate(work: dict[Any, Callable[[], Any]], rounds: int) -> dict[Any, float]:
    """Median CPU seconds of each callable over `rounds` rounds, run in alternating order
    (a, b, then b, a, ...) so that changes of the machine's load hit every one alike."""
    cpu: dict[Any, list[float]] = {key: [] for key in work}
    for r in range(rounds):
        for key in (list(work) if r % 2 == 0 else list(work)[::-1]):
            c = time.process_time()
            work[key]()
            cpu[key].append(time.process_time() - c)
    return {key: statistics.median(times) for key, times in cpu.items()}


# -- the latent gather, on against off ----------------------------------------------------------
def gather_ab(preset: str, env_id: str = "CartPole-v1", threads: int = 1, rounds: int = 6,
              planner: bool = False, compiled: bool = False) -> dict[str, Any]:
    """Median CPU time per update (or per MPPI decision) with LatentLinear's gather on and
    off, alternating (on, off, off, on, ...) so that load changes hit both alike.
    `compiled`: of an agent compiled as run.compile does (`Agent.compile`), whose compiled
    code takes either path too (each setting compiles once, before the timed rounds)."""
    from worldmodel.nets import LatentLinear
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    overrides: dict[str, Any] = {}
    name = preset
    if preset == "xs-matched":
        from benchmarks.sheeprl.compare import MATCHED
        preset, overrides = "small", dict(MATCHED)
    if planner:
        from benchmarks.plan_speed import _agent as plan_agent
        agent, env = plan_agent(env_id, [preset], {**overrides, "planner.kind": "mppi", "planner.samples": 256,
                                                   "planner.horizon": 5, "planner.iterations": 3})
        env.close()
        state = agent.model.initial(1)
        state = {k: v for k, v in agent.model.imagine(state, torch.zeros(1, 1, agent.act_spec.dim), 1)[2].items()}
        work = lambda: agent.planner.act(agent.model, state, explore=False)  # noqa: E731
    else:
        cfg, agent = _agent(preset, env_id, overrides)
        batch = _fake_batch(agent, cfg, np.random.default_rng(0))
        work = lambda: agent.train_step(batch)  # noqa: E731
    if compiled:
        agent.compile()

    def switched(flag: bool) -> Callable[[], Any]:
        return lambda: (setattr(LatentLinear, "enabled", flag), work())
    try:
        for flag in (True, False) if compiled else (True,):
            for _ in range(3 if compiled else 2):  # compiled: and a recompile once the return normaliser has started
                switched(flag)()
        cpu = alternate({True: switched(True), False: switched(False)}, rounds)
    finally:
        LatentLinear.enabled = True
    on, off = cpu[True], cpu[False]
    return {"preset": name, "env": env_id, "threads": threads, "rounds": rounds,
            "work": "mppi 256x5x3 decision" if planner else "update", "compiled": compiled,
            "cpu_ms_gather": on * 1e3, "cpu_ms_dense": off * 1e3, "speedup": off / on}


# -- run.compile on against off ----------------------------------------------------------------
def compile_ab(preset: str, env_id: str = "CartPole-v1", threads: int = 1, rounds: int = 20) -> dict[str, Any]:
    """Median CPU time per update of two agents of the same seed, one eager and one compiled
    (`Agent.compile`, what run.compile does), alternating (eager, compiled, compiled, eager,
    ...) in one process so that load changes hit both alike; plus the compile time."""
    torch.set_num_threads(threads)
    agents = {}
    for name in ("eager", "compiled"):
        torch.manual_seed(0)
        cfg, agents[name] = _agent(preset, env_id, {})
    batch = _fake_batch(agents["eager"], cfg, np.random.default_rng(0))
    t = time.perf_counter()
    agents["compiled"].compile()
    for _ in range(3):  # compiling, and a recompile once the return normaliser has started
        agents["compiled"].train_step(batch)
    compile_s = time.perf_counter() - t
    for _ in range(2):
        agents["eager"].train_step(batch)
    cpu = alternate({name: (lambda a=agent: a.train_step(batch)) for name, agent in agents.items()}, rounds)
    eager, compiled = cpu["eager"], cpu["compiled"]
    return {"preset": preset, "env": env_id, "threads": threads, "rounds": rounds, "compile_s": compile_s,
            "cpu_ms_eager": eager * 1e3, "cpu_ms_compiled": compiled * 1e3, "speedup": eager / compiled}


# -- scaling grid: time and memory against batch, sequence length and model size ---------------
def update_cost(preset: str, batch: int, length: int, env_id: str = "CartPole-v1", threads: int = 1,
                repeats: int = 3) -> dict[str, Any]:
    """One grid point; meant to run in a fresh process (see `grid_point`). Memory is the
    process's peak resident set (ru_maxrss): `update_mb` is its growth over the first two
    updates (activations kept for backward, gradients, Adam state, imagination), read in a
    fresh process so that no earlier peak hides it; `peak_rss_mb` is the whole process
    (Python, torch, model, batch and update) at its peak. The growth is a lower bound where
    the update reuses memory that the allocator got earlier and kept. tracemalloc would miss
    torch's CPU tensors, and torch has no public CPU allocator statistics (its profiler
    records allocations per op, not the process's peak)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg, agent = _agent(preset, env_id, {"replay.batch": batch, "replay.length": length})
    data = _fake_batch(agent, cfg, np.random.default_rng(0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    for _ in range(2):
        agent.train_step(data)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        agent.train_step(data)
        times.append(time.perf_counter() - t)
    per_update = statistics.median(times)
    return {"preset": preset, "env": env_id, "threads": threads, "batch": batch, "length": length,
            "params": sum(agent.param_counts().values()), "repeats": repeats, "ms_per_update": per_update * 1e3,
            "updates_per_s": 1 / per_update, "update_mb": (peak - before) / 1024, "peak_rss_mb": peak / 1024,
            "memory": "ru_maxrss of a fresh process"}


def grid_point(preset: str, batch: int, length: int, env_id: str, threads: int, repeats: int) -> dict[str, Any]:
    """`update_cost` in a fresh interpreter (one per point: ru_maxrss only ever grows)."""
    args = json.dumps([preset, batch, length, env_id, threads, repeats])
    code = ("import json, sys; from benchmarks.speed import update_cost; "
            "print(json.dumps(update_cost(*json.loads(sys.argv[1]))))")
    out = subprocess.run([sys.executable, "-c", code, args], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"preset": preset, "batch": batch, "length": length, "threads": threads, "error": tail}
    return json.loads(out.stdout.strip().splitlines()[-1])


def grid_points(preset: str = "small", batches: tuple[int, ...] = (8, 16, 32),
                lengths: tuple[int, ...] = (16, 32, 64),
                presets: tuple[str, ...] = ("debug", "small", "medium")) -> list[tuple[str, int, int]]:
    """The points: `preset` at every batch x length, then each of `presets` at its own default
    batch x length (a point already in the first part is not repeated)."""
    from worldmodel.config import load_config
    points = [(preset, b, t) for b in batches for t in lengths]
    for name in presets:
        cfg = load_config([name])
        point = (name, cfg.replay.batch, cfg.replay.length)
        if point not in points:
            points.append(point)
    return points
