"""Decision time of latent MPC: milliseconds per `Agent.act` call for one env.

  python -m benchmarks plan-speed [--preset small] [--planner mppi cem] [--env Pendulum-v1 CartPole-v1]
                                  [--samples 256 --horizon 5 --iterations 3] [--threads 1] [--decisions 50]
                                  [--with-rules] [--prior 0.003] [--compile]

The agent is built through the project's factories (worldmodel/agent.py: `Agent` ->
`build_model`, `build_planner`; the env through worldmodel/trainer.py `env_factory`) with
`planner.kind` and the budget (N samples, H horizon, iterations) overridden. It acts in the
real env, stepping it with its own actions, greedy as in evaluation (`explore=False`). After
--warmup decisions, each of --decisions calls of `agent.act(obs, state)` is timed: the median
and 90th percentile of the whole call (encode the observation, update the latent, plan), the
median of the planner's own share (`planner.act`), and the median CPU time of the calling
thread per call (with one torch thread, the figure other jobs on a shared machine disturb
least). The weights are untrained: MPC does the same work whatever the weights, so the time
is that of a trained agent of the same size.

The issue's target: MPPI at N=256, H=5, 3 iterations within 20 ms per decision on 2 cores.
Rows go to benchmarks/results/plan_speed.jsonl.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

TARGET_MS = 20.0  # the budget for MPPI 256 x 5 x 3 on a 2-core CPU
# --with-rules: the shipped rules file of each env, checked on every imagined candidate
SHIPPED_RULES = {"CartPole-v1": "cartpole_track", "Pendulum-v1": "pendulum_torque",
                 "worldmodel/SafeCorridor-v0": "safe_corridor"}


def _agent(env_id: str, presets: list[str], overrides: dict[str, Any], device: str = "cpu"):
    from envs.spaces import action_spec, obs_spec
    from worldmodel.agent import Agent
    from worldmodel.config import load_config
    from worldmodel.trainer import env_factory
    cfg = load_config(presets, {"env.id": env_id, **overrides})
    env = env_factory(cfg)()
    agent = Agent(cfg, obs_spec(env.observation_space), action_spec(env.action_space), device,
                  env.observation_space, env.action_space)
    agent._obs_space = env.observation_space  # as worldmodel.api.load sets it, for `act`
    return agent, env


def time_decisions(env_id: str = "Pendulum-v1", presets: list[str] | None = None, planner: str = "mppi",
                   samples: int = 256, horizon: int = 5, iterations: int = 3, threads: int = 1,
                   decisions: int = 50, warmup: int = 5, seed: int = 0,
                   overrides: dict[str, Any] | None = None, device: str = "cpu") -> dict[str, Any]:
    """Time `decisions` greedy `act` calls for one env after `warmup` untimed ones. On a GPU
    each call ends with the action copied to the host, so the time includes all device work."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    presets = presets or ["small"]
    over = {"planner.kind": planner, "run.seed": seed, **(overrides or {})}
    if planner != "actor":
        over.update({"planner.samples": samples, "planner.horizon": horizon, "planner.iterations": iterations})
    agent, env = _agent(env_id, presets, over, device)
    planner_act, planner_times = agent.planner.act, []

    def timed_planner(*args: Any, **kwargs: Any):
        t = time.perf_counter()
        out = planner_act(*args, **kwargs)
        planner_times.append(time.perf_counter() - t)
        return out

    agent.planner.act = timed_planner  # instance attribute: this agent only
    obs, _ = env.reset(seed=seed)
    state, times, cpu_times, episodes = None, [], [], 0
    for i in range(warmup + decisions):
        t, c = time.perf_counter(), time.thread_time()
        action, state = agent.act(obs, state)
        dt, dc = time.perf_counter() - t, time.thread_time() - c
        if i >= warmup:
            times.append(dt)
            cpu_times.append(dc)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
            state, episodes = None, episodes + 1
    env.close()
    ms = sorted(1e3 * t for t in times)
    median = statistics.median(ms)
    return {"env": env_id, "presets": presets, "planner": planner, "threads": threads, "device": device,
            "samples": samples if planner != "actor" else None, "horizon": horizon if planner != "actor" else None,
            "iterations": iterations if planner != "actor" else None, "decisions": decisions, "warmup": warmup,
            "ms_per_decision": median, "ms_p90": ms[min(len(ms) - 1, int(0.9 * len(ms)))], "ms_min": ms[0],
            "planner_ms": statistics.median(1e3 * t for t in planner_times[warmup:]),
            "cpu_ms_per_decision": statistics.median(1e3 * c for c in cpu_times),
            "decisions_per_s": 1e3 / median, "episodes_ended": episodes,
            "params": sum(agent.param_counts().values()), "target_ms": TARGET_MS}


def rules_overhead(env_id: str, rules: str, presets: list[str] | None = None, planner: str = "mppi",
                   samples: int = 128, horizon: int = 15, iterations: int = 2, threads: int = 1,
                   rounds: int = 10, per_round: int = 5, warmup: int = 5, seed: int = 0,
                   run: str | None = None) -> dict[str, Any]:
    """The shield's share of planning, measured interleaved in one agent (shared machines are
    noisy): each round times `per_round` decisions in each of three settings, in turn --
      none:      no rules at all (no cost penalty, no check);
      objective: the rules' cost penalty in the imagined return (the objective the critic of
                 a rule-trained agent learned), no check;
      shield:    the penalty and the shield in imagination (decode + rules + cost threshold).
    Time per decision (`agent.act`), medians over all rounds. `run`: a trained run instead of
    untrained weights. That matters here: the shield decodes the 2 x elites best candidates
    first and the rest only when too few of those are safe, which an untrained model's
    random predictions often are not."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    over = {"planner.kind": planner, "run.seed": seed, "shield.rules": rules, "planner.samples": samples,
            "planner.horizon": horizon, "planner.iterations": iterations}
    if run:
        from worldmodel.api import _run_config, load
        from worldmodel.trainer import env_factory
        agent, env = load(run, overrides=over), env_factory(_run_config(run, over))()
        torch.set_num_threads(threads)  # load() applied the run's run.threads
    else:
        agent, env = _agent(env_id, presets or ["small"], over)
    mpc = agent.planner
    shield, penalty = mpc.shield, mpc.actor_critic.cost_penalty
    settings = {"none": (None, 0.0), "objective": (None, penalty), "shield": (shield, penalty)}

    def apply(name: str) -> None:
        mpc.shield, mpc.actor_critic.cost_penalty = settings[name]

    ms = interleaved(agent, env, list(settings), apply, rounds, per_round, warmup, seed)
    return {"env": env_id, "rules": rules, "presets": presets or ["small"], "planner": planner, "threads": threads,
            "samples": samples, "horizon": horizon, "iterations": iterations, "rounds": rounds,
            "per_round": per_round, "run": run, "ms_none": ms["none"], "ms_objective": ms["objective"], "ms_shield": ms["shield"],
            "shield_overhead": ms["shield"] / ms["objective"] - 1.0, "rules_overhead": ms["shield"] / ms["none"] - 1.0}


def interleaved(agent: Any, env: Any, names: list[str], apply: Any, rounds: int, per_round: int,
                warmup: int, seed: int) -> dict[str, float]:
    """Median ms per `agent.act` in each setting, timed in turn on one agent and one env
    trajectory (shared machines are noisy: interleaving spreads the noise over all of them).
    `apply(name)` switches the agent to a setting; round 0 warms up, then each round times
    `per_round` decisions per setting, rotating which setting goes first."""
    times: dict[str, list[float]] = {k: [] for k in names}
    obs, _ = env.reset(seed=seed)
    state = None
    for r in range(rounds + 1):
        for name in names[r % len(names):] + names[: r % len(names)]:
            apply(name)
            for _ in range(per_round if r else warmup):
                t = time.perf_counter()
                action, state = agent.act(obs, state)
                if r:
                    times[name].append(time.perf_counter() - t)
                obs, _, terminated, truncated, _ = env.step(action)
                if terminated or truncated:
                    obs, _ = env.reset()
                    state = None
    env.close()
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def prior_overhead(env_id: str, prior: float, presets: list[str] | None = None, planner: str = "mppi",
                   samples: int = 256, horizon: int = 5, iterations: int = 3, threads: int = 1,
                   rounds: int = 10, per_round: int = 5, warmup: int = 5, seed: int = 0) -> dict[str, Any]:
    """The policy prior's cost (`planner.prior`: one actor pass over every imagined
    candidate step), interleaved with the same planner at prior 0 on one agent."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    over = {"planner.kind": planner, "run.seed": seed, "planner.samples": samples,
            "planner.horizon": horizon, "planner.iterations": iterations}
    agent, env = _agent(env_id, presets or ["small"], over)

    def apply(name: str) -> None:
        agent.planner.prior = prior if name == "on" else 0.0

    ms = interleaved(agent, env, ["off", "on"], apply, rounds, per_round, warmup, seed)
    return {"env": env_id, "prior": prior, "presets": presets or ["small"], "planner": planner, "threads": threads,
            "samples": samples, "horizon": horizon, "iterations": iterations, "rounds": rounds,
            "per_round": per_round, "ms_prior_off": ms["off"], "ms_prior_on": ms["on"],
            "prior_overhead": ms["on"] / ms["off"] - 1.0}


def compile_speedup(env_id: str, presets: list[str] | None = None, planner: str = "mppi",
                    samples: int = 256, horizon: int = 5, iterations: int = 3, threads: int = 1,
                    rounds: int = 10, per_round: int = 5, warmup: int = 5, seed: int = 0,
                    backend: str = "inductor") -> dict[str, Any]:
    """What `run.compile` does to a decision on the CPU (`LatentMPC.compile_imagination`),
    interleaved on one agent: eager; compiled; and compiled with the world model's latent
    products as one-hot matmuls (`LatentLinear.enabled` off, the compiled path before
    2026-11-30). The first call of each compiled setting (the compile) is timed apart."""
    import torch
    from worldmodel.nets import LatentLinear
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    over = {"planner.kind": planner, "run.seed": seed, "planner.samples": samples,
            "planner.horizon": horizon, "planner.iterations": iterations}
    agent, env = _agent(env_id, presets or ["small"], over)
    mpc = agent.planner
    eager = (mpc._proposals, mpc._returns)
    mpc.compile_imagination(backend)
    compiled = (mpc._proposals, mpc._returns)
    names = ["eager", "compiled", "compiled_onehot"]

    def apply(name: str) -> None:
        mpc._proposals, mpc._returns = eager if name == "eager" else compiled
        LatentLinear.enabled = name != "compiled_onehot"

    compile_s = {}
    obs, _ = env.reset(seed=seed)
    for name in names[1:]:  # compile each setting once, outside the timed rounds
        apply(name)
        t = time.perf_counter()
        agent.act(obs, None)
        compile_s[name] = time.perf_counter() - t
    try:
        ms = interleaved(agent, env, names, apply, rounds, per_round, warmup, seed)
    finally:
        LatentLinear.enabled = True
    return {"env": env_id, "presets": presets or ["small"], "planner": planner, "threads": threads,
            "samples": samples, "horizon": horizon, "iterations": iterations, "rounds": rounds,
            "per_round": per_round, "backend": backend, "ms_eager": ms["eager"], "ms_compiled": ms["compiled"],
            "ms_compiled_onehot": ms["compiled_onehot"], "compile_speedup": ms["eager"] / ms["compiled"],
            "compile_s": compile_s["compiled"], "compile_onehot_s": compile_s["compiled_onehot"]}


def budget(row: dict[str, Any]) -> str:
    return "actor" if row["samples"] is None else f"{row['samples']} x {row['horizon']} x {row['iterations']}"


def print_header() -> None:
    print(f"{'env':<12} {'planner':<7} {'N x H x iters':>14} {'ms/decision':>11} {'p90':>6} "
          f"{'planner ms':>10} {'CPU ms':>7} {'decisions/s':>11}")


def print_row(r: dict[str, Any]) -> None:
    print(f"{r['env']:<12} {r['planner']:<7} {budget(r):>14} {r['ms_per_decision']:>11.1f} {r['ms_p90']:>6.1f} "
          f"{r['planner_ms']:>10.1f} {r['cpu_ms_per_decision']:>7.1f} {r['decisions_per_s']:>11.1f}", flush=True)
