"""Does action noise alone find a sparse reward? The env without any agent.

  python -m benchmarks.noise_reach [--env worldmodel/dmc-pendulum-swingup-v0] [--episodes 40]
                                   [--std 1.0] [--kinds white pink brown ar0.97]

Runs `--episodes` episodes per noise kind, each action = clip(std * eps_t, -1, 1) with eps a
unit-variance sequence drawn per episode: white (independent), pink (power ~ 1/f), brown
(1/f^2), both by shaping a random spectrum (Timmer & Koenig), or ar<rho> (AR(1):
eps_t = rho eps_{t-1} + sqrt(1 - rho^2) n_t). It reports the share of episodes that earned
any reward and the mean return. This is what an agent's exploration starts from before its
world model has seen a reward: the actor starts near N(0, 0.9^2) (actor.max_std 1, raw
output 0), and its entropy bonus keeps it there while every return is zero. Results go to
benchmarks/results/noise_reach.jsonl.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

import numpy as np


def noise(kind: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """A unit-variance noise sequence (length,) of `kind`: white | pink | brown | ar<rho>."""
    if kind == "white":
        return rng.standard_normal(length)
    if kind.startswith("ar"):
        rho = float(kind[2:])
        x, e = np.empty(length), rng.standard_normal(length)
        x[0] = e[0]
        for t in range(1, length):
            x[t] = rho * x[t - 1] + np.sqrt(1.0 - rho * rho) * e[t]
        return x
    beta = {"pink": 1.0, "brown": 2.0}[kind]
    freqs = np.fft.rfftfreq(length)
    freqs[0] = freqs[1]  # no infinite power at frequency 0
    spectrum = (rng.standard_normal(len(freqs)) + 1j * rng.standard_normal(len(freqs))) * freqs ** (-beta / 2)
    x = np.fft.irfft(spectrum, n=length)
    return (x - x.mean()) / x.std()


def measure(env_id: str, kinds: list[str], episodes: int, std: float, seed: int = 0) -> list[dict[str, Any]]:
    import gymnasium as gym

    import envs  # noqa: F401  (registers worldmodel/* ids)
    env = gym.make(env_id)
    low, high = env.action_space.low, env.action_space.high
    out = []
    for kind in kinds:
        rng = np.random.default_rng(seed)
        returns = []
        for ep in range(episodes):
            env.reset(seed=seed * 100_000 + ep)  # every kind sees the same start states
            limit = env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else 1000
            eps = noise(kind, limit, rng)[:, None] * np.ones(env.action_space.shape)
            total, t, done = 0.0, 0, False
            while not done:
                action = np.clip(std * eps[min(t, limit - 1)], low, high).astype(np.float32)
                _, reward, terminated, truncated, _ = env.step(action)
                total, t, done = total + float(reward), t + 1, terminated or truncated
            returns.append(total)
        r = np.array(returns)
        out.append({"env": env_id, "kind": kind, "std": std, "episodes": episodes,
                    "share_rewarded": float((r > 0).mean()), "mean_return": float(r.mean()),
                    "max_return": float(r.max())})
    env.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.noise_reach", description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="worldmodel/dmc-pendulum-swingup-v0")
    p.add_argument("--episodes", type=int, default=40)
    p.add_argument("--std", type=float, default=1.0)
    p.add_argument("--kinds", nargs="+", default=["white", "pink", "brown", "ar0.97"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args(argv)
    from benchmarks.common import record
    command = "python -m benchmarks.noise_reach " + shlex.join(sys.argv[1:] if argv is None else argv)
    print("| noise | episodes | share with any reward | mean return | max return |\n|---|---|---|---|---|")
    for row in measure(args.env, args.kinds, args.episodes, args.std, args.seed):
        print(f"| {row['kind']} | {row['episodes']} | {row['share_rewarded']:.2f} | {row['mean_return']:.1f} "
              f"| {row['max_return']:.1f} |")
        if not args.no_record:
            record("noise_reach", row, command)
    print(f"reproduce: {command}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
