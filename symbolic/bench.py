"""``python -m symbolic.bench``: batched state-checks per second and real-step veto latency.

Runs on one torch thread. Targets (research note): >= 1M state-checks/s for
<= 10 rules, and <= 1 ms per real step without z3.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from gymnasium import spaces

from .ruleset import RuleSet, load_rules
from .shield import Shield

TEN_RULES = """
signals: x = obs[0] in [-4.8, 4.8]; xdot = obs[1] in [-10, 10]
         theta = obs[2] in [-0.42, 0.42]; thetadot = obs[3] in [-10, 10]
actions: push : {left=0, right=1}
""" + "\n".join(f"rule r{i} (hard): abs(x) + {i} * 0.01 * abs(theta) <= 2.4 or push == left"
                for i in range(8)) + """
rule lean (hard): theta > 0.2 and thetadot > 1 -> push == right
rule soft_center (soft): abs(x) <= 1 and abs(xdot) <= 2
"""


def _rate(fn, states: int, repeats: int = 3) -> float:
    fn()  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return states / best


def bench_batched(rules: RuleSet, obs: np.ndarray, actions: np.ndarray) -> float:
    return _rate(lambda: rules.evaluate(obs, actions), len(obs))


def bench_latency(rules: RuleSet, space: spaces.Space, obs, proposed, num_envs: int,
                  steps: int = 200) -> float:
    shield = Shield(rules, space, num_envs=num_envs)
    shield.filter(obs, proposed)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        shield.filter(obs, proposed)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def main(states: int = 1_000_000) -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    cart_obs = rng.uniform([-2.4, -3, -0.2, -3], [2.4, 3, 0.2, 3], (states, 4))
    cart_act = rng.integers(0, 2, states)
    print(f"batched evaluation, {states:,} states, 1 thread (float64):")
    for name, rules in [("10 rules (9 hard, 1 soft)", RuleSet.from_string(TEN_RULES)),
                        ("cartpole_track (next under model)", load_rules("cartpole_track"))]:
        rate = bench_batched(rules, cart_obs, cart_act)
        print(f"  {name:<36} {rate / 1e6:6.2f} M state-checks/s")
    pend_obs = np.stack([np.cos(t := rng.uniform(-np.pi, np.pi, states)), np.sin(t),
                         rng.uniform(-8, 8, states)], 1)
    pend_act = rng.uniform(-2, 2, (states, 1))
    rate = bench_batched(load_rules("pendulum_torque"), pend_obs, pend_act)
    print(f"  {'pendulum_torque (4 rules)':<36} {rate / 1e6:6.2f} M state-checks/s")
    image = np.zeros((states // 10, 7, 7, 3), np.uint8)
    image[::2, 3, 5, 0] = 9
    rate = _rate(lambda: load_rules("minigrid_lava").allowed_actions({"image": image}),
                 len(image) * 7)
    print(f"  {'minigrid_lava allowed_actions':<36} {rate / 1e6:6.2f} M state-action checks/s")

    print("real-step shield latency (median per filter call):")
    lava = load_rules("minigrid_lava")
    for envs in (1, 16):
        img = np.zeros((envs, 7, 7, 3), np.uint8)
        img[:, 3, 5, 0] = 9
        ms = bench_latency(lava, spaces.Discrete(7), {"image": img}, np.full(envs, 2), envs)
        print(f"  minigrid_lava, {envs:>2} env(s), every step vetoed   {ms:6.3f} ms")
    cart = load_rules("cartpole_track")
    ms = bench_latency(cart, spaces.Discrete(2), np.array([[0.95, 0.5, 0, 0]]), np.array([1]), 1)
    print(f"  cartpole_track, 1 env, vetoed            {ms:6.3f} ms")
    pend = load_rules("pendulum_torque")
    box = spaces.Box(-2, 2, (1,), np.float32)
    ms = bench_latency(pend, box, np.array([[1.0, 0.0, 7.0]]), np.array([[1.9]]), 1)
    print(f"  pendulum_torque, 1 env, clamp projection {ms:6.3f} ms")


if __name__ == "__main__":
    main()
