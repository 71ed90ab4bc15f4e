"""The real-step shield never executes a forbidden action (unless it reports a dead end)."""
from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from symbolic import Ledger, RuleSet, Shield, ShieldWrapper, load_rules, reference

DISCRETE = RuleSet.from_string("""
signals: x = obs[0] in [-2, 2]; v = obs[1] in [-3, 3]
actions: push : {left=0, right=1, stay=2}
rule right_edge (hard): x > 1 and v > 0 -> push == left
rule lean (hard): x > 1.5 -> push == right
rule slow (hard): abs(v) > 2 -> push != stay
rule calm (soft): push == stay
fallback: stay
""", action_space=gym.spaces.Discrete(3))

CONTINUOUS = RuleSet.from_string("""
signals: w = obs[0] in [-8, 8]; c = obs[1] in [-1, 1]
actions: torque = action[0] in [-2, 2]; lift = action[1] in [-1, 1]
rule power (hard): torque * w <= 4                   # not bound-style: sampled or z3
rule budget (hard): abs(torque) + abs(lift) <= 2.5 - c
rule tight (hard): w > 6 -> torque <= 0.3
fallback: [0.0, 0.0]
""", action_space=gym.spaces.Box(np.array([-2, -1]), np.array([2, 1]), (2,), np.float32))

floats = st.one_of(st.floats(-4, 4), st.just(float("nan")), st.sampled_from([1.0, 1.5, 2.0, -2.0]))


def _hard_ok(rules: RuleSet, frame: dict[str, float]) -> bool:
    return all(reference.rule_ok(r, [frame], 0, rules.program)
               for r in rules.program.rules if r.kind == "hard")


@settings(max_examples=60, deadline=None)
@given(obs=arrays(np.float64, (8, 2), elements=floats),
       proposed=arrays(np.int64, (8,), elements=st.integers(0, 2)),
       prefs=st.one_of(st.none(), arrays(np.float64, (8, 3), elements=st.floats(-5, 5))))
def test_discrete_shield_never_executes_forbidden(obs, proposed, prefs) -> None:
    shield = Shield(DISCRETE, DISCRETE.action_space, num_envs=8)
    executed, info = shield.filter(obs, proposed, preferences=prefs)
    for i in range(8):
        frame = {"x": obs[i, 0], "v": obs[i, 1], "push": float(executed[i])}
        ok = _hard_ok(DISCRETE, frame)
        assert ok or info["dead_end"][i]
        assert info["executed_violation"][i] == (not ok)
        proposal_ok = _hard_ok(DISCRETE, dict(frame, push=float(proposed[i])))
        assert info["vetoed"][i] == (not proposal_ok)
        if proposal_ok:
            assert executed[i] == proposed[i] and info["rule"][i] == ""
        elif not info["dead_end"][i] and prefs is not None:  # best allowed by preference
            allowed = [a for a in range(3) if _hard_ok(DISCRETE, dict(frame, push=float(a)))]
            assert prefs[i, executed[i]] == max(prefs[i, a] for a in allowed)


@settings(max_examples=40, deadline=None)
@given(obs=arrays(np.float64, (4, 2), elements=st.one_of(st.floats(-8, 8), st.just(float("nan")),
                                                         st.sampled_from([6.0, -8.0, 8.0]))),
       proposed=arrays(np.float64, (4, 2), elements=st.floats(-1, 1, width=32)))
def test_continuous_shield_never_executes_forbidden(obs, proposed) -> None:
    obs[:, 1] = np.clip(obs[:, 1], -1, 1)
    shield = Shield(CONTINUOUS, CONTINUOUS.action_space, num_envs=4)
    executed, info = shield.filter(obs, proposed.astype(np.float32))
    assert executed.dtype == np.float32
    for i in range(4):
        frame = {"w": obs[i, 0], "c": obs[i, 1], "torque": float(executed[i, 0]),
                 "lift": float(executed[i, 1])}
        assert _hard_ok(CONTINUOUS, frame) or info["dead_end"][i]
        assert -2 <= executed[i, 0] <= 2 and -1 <= executed[i, 1] <= 1
        if not info["vetoed"][i]:
            assert np.array_equal(executed[i], proposed[i].astype(np.float32))


def test_clamp_projection_is_exact_for_bound_rules() -> None:
    rules = load_rules("pendulum_torque", gym.spaces.Box(-np.inf, np.inf, (3,)),
                       gym.spaces.Box(-2, 2, (1,), np.float32))
    shield = Shield(rules, rules.action_space, num_envs=3)
    obs = np.array([[1, 0, 8.0], [1, 0, 4.0], [1, 0, -6.0]])
    executed, info = shield.filter(obs, np.array([[2.0], [2.0], [-2.0]], np.float32))
    assert info["vetoed"].all() and not info["dead_end"].any()
    # |torque| <= 2 - 0.2*(|w| - 3): 1.8 at w=4; beyond |w| > 5 no spin-up past 0.5
    np.testing.assert_allclose(executed[:, 0], [0.5, 1.8, -0.5], atol=1e-6)
    np.testing.assert_allclose(info["projection_distance"], [1.5, 0.2, 1.5], atol=1e-6)
    assert info["rule"] == ["torque_limit", "torque_limit", "torque_limit"]


def test_minigrid_fallback_and_preferences() -> None:
    rules = load_rules("minigrid_lava")
    shield = Shield(rules, gym.spaces.Discrete(7), num_envs=2)
    image = np.zeros((2, 7, 7, 3), np.uint8)
    image[:, 3, 5, 0] = 9
    executed, info = shield.filter({"image": image}, np.array([2, 1]))
    assert executed.tolist() == [0, 1] and info["fallback"].tolist() == [True, False]
    prefs = np.array([[0, 5, 9, 1, 0, 0, 0], [0, 5, 9, 1, 0, 0, 0]], np.float64)
    executed, info = shield.filter({"image": torch.as_tensor(image)}, np.array([2, 2]), prefs)
    assert executed.tolist() == [1, 1] and not info["fallback"].any()
    assert info["latency_ms"] >= 0 and info["cost"].tolist() == [0.0, 0.0]


PAST = RuleSet.from_string("""
signals: x = obs[0]
actions: a : {l=0, r=1}
rule no_triple_left (hard): prev(a == l) and prev(prev(a == l)) -> a != l
rule recent_left (soft): historically[1,2](a == l)      # vacuously true at an episode start
rule was_right (soft): prev(a == r)
""", action_space=gym.spaces.Discrete(2))


def test_monitor_state_resets_and_round_trips() -> None:
    shield = Shield(PAST, PAST.action_space, num_envs=2)
    obs, left = np.zeros((2, 1)), np.array([0, 0])
    first = np.array([True, True])
    done = []
    for step in range(6):
        executed, info = shield.filter(obs, left, is_first=first)
        done.append(executed.tolist())
        first = np.array([False, step == 3])  # env 1 starts a new episode at step 4
    assert [d[0] for d in done] == [0, 0, 1, 0, 0, 1]
    assert [d[1] for d in done] == [0, 0, 1, 0, 0, 0]
    buffer = io.BytesIO()
    torch.save(shield.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    clone = Shield(PAST, PAST.action_space, num_envs=2)
    clone.load_state_dict(state)
    a, _ = shield.filter(obs, left)
    b, _ = clone.filter(obs, left)
    assert a.tolist() == b.tolist()


def test_monitor_matches_reference_on_executed_trace() -> None:
    rng = np.random.default_rng(0)
    shield = Shield(PAST, PAST.action_space, num_envs=1)
    frames = []
    for _ in range(20):
        executed, info = shield.filter(np.zeros((1, 1)), rng.integers(0, 2, 1))
        frames.append({"x": 0.0, "a": float(executed[0])})
        expected = [not reference.rule_ok(r, frames, len(frames) - 1) for r in PAST.program.rules]
        assert info["cost"][0] == sum(expected)


def test_wrapper_keeps_cartpole_on_the_track() -> None:
    env = ShieldWrapper(gym.make("CartPole-v1"), "cartpole_track")
    ledger, positions = Ledger(), []
    obs, _ = env.reset(seed=0)
    for _ in range(300):  # a balancing controller that drifts right off a 1.0 track
        action = int(obs[2] + 0.5 * obs[3] + 0.02 > 0)
        obs, _, terminated, truncated, info = env.step(action)
        positions.append(obs[0])
        ledger.update(info, terminated or truncated)
        assert {"proposed", "vetoed", "rule", "dead_end", "fallback", "cost"} <= set(info["shield"])
        if terminated or truncated:
            obs, _ = env.reset()
    summary = ledger.summary()
    assert max(abs(p) for p in positions) <= 1.0
    assert summary["vetoes"] > 0 and summary["executed_violations"] == 0
    assert summary["dead_ends"] == 0 and summary["steps"] == 300


def test_ledger_counts_steps_and_episodes() -> None:
    ledger = Ledger(num_envs=2)
    info = {"vetoed": np.array([True, False]), "executed_violation": np.array([False, True]),
            "dead_end": np.array([False, True]), "fallback": np.array([True, False]),
            "projection_distance": np.array([0.5, 0.0]), "cost": np.array([0.0, 1.0]),
            "latency_ms": 0.2}
    ledger.update(info, np.array([False, True]))
    ledger.update(info, np.array([True, False]))
    summary = ledger.summary()
    assert summary["steps"] == 4 and summary["episodes"] == 2 and summary["vetoes"] == 2
    assert summary["executed_violations"] == 2 and summary["episodes_with_violation"] == 1
    assert summary["mean_projection_distance"] == 0.25 and summary["mean_latency_ms"] == 0.2
    assert ledger.episode_records[1]["steps"] == 2 and ledger.episode_records[1]["vetoed"] == 2
