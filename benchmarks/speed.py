"""Speed benchmark: time per update, updates/s and FLOPs per update of each size preset,
measured on synthetic replay data (no env in the loop), with torch threads set
explicitly. Achieved GFLOP/s is reported against the machine's measured matmul peak."""
from __future__ import annotations

import statistics
import time
from typing import Any

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


def _agent(preset: str, env_id: str, overrides: dict[str, Any]):
    import gymnasium as gym
    from envs.spaces import action_spec, obs_spec
    from worldmodel.agent import Agent
    from worldmodel.config import load_config
    cfg = load_config([preset], overrides)
    env = gym.make(env_id)
    agent = Agent(cfg, obs_spec(env.observation_space), action_spec(env.action_space))
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
    cfg, agent = _agent(preset, env_id, overrides or {})
    rng = np.random.default_rng(0)
    batch = _fake_batch(agent, cfg, rng)
    for _ in range(2):
        agent.train_step(batch)
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        agent.train_step(batch)
    flops = counter.get_total_flops()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        agent.train_step(batch)
        times.append(time.perf_counter() - t)
    per_update = statistics.median(times)
    return {"preset": preset, "env": env_id, "threads": threads, "params": sum(agent.param_counts().values()),
            "batch": cfg.replay.batch, "length": cfg.replay.length, "ms_per_update": per_update * 1e3,
            "updates_per_s": 1 / per_update, "gflop_per_update": flops / 1e9,
            "gflops_achieved": flops / per_update / 1e9}
