"""The torch compiler agrees with the plain reference evaluator and with z3."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import z3

from symbolic import RuleSet, load_rules, mask_logits
from symbolic import reference
from symbolic.compile_torch import Trace
from symbolic.compile_z3 import Env, Frame, Z3Compiler, real

STEP_RULES = """
signals: x = obs[0] in [-2, 2]; v = obs[1] in [-2, 2]; w = obs[2] in [-2, 2]
         e = obs[3] in [0, 3] enum {zero=0, one=1, two=2, three=3}
actions: a : {left=0, right=1, stay=2}
rule r1 (hard): x + 2 * v <= 1
rule r2 (hard): abs(x - v) < 0.5 or w >= 0.25
rule r3 (soft): not (min(x, v, w) > -0.5) -> a != left
rule r4 (hard): max(x, w) * v == 0.25 or e == two
rule r5 (hard): (if x > 0 then v else -v) - w^2 >= -1
rule r6 (soft): e != zero and a == stay -> x / 2 <= 0.5
rule r7 (hard): -x^3 > v - 1 -> (a == right or e >= 2)
"""

TEMPORAL_RULES = STEP_RULES + """
rule t1 (hard): historically[0,2](x <= 1) -> once[1,3](a == left)
rule t2 (soft): prev(v > 0) or next(w < 0.5)
rule t3 (hard): always[0,2](abs(x) <= 1.5) and eventually[1,2](e != one)
rule t4 (soft): not historically[1,1](prev(x > 0))
"""


def _states(rng: np.random.Generator, count: int) -> np.ndarray:
    """Mix of dyadic grid points (exact boundaries), random values and near-boundary nudges."""
    grid = rng.choice(np.arange(-2, 2.25, 0.25), size=(count, 3))
    uniform = rng.uniform(-2, 2, size=(count, 3))
    nudge = grid + rng.choice([-1e-6, 0, 1e-6], size=(count, 3))
    pick = rng.integers(0, 3, size=(count, 1))
    cont = np.where(pick == 0, grid, np.where(pick == 1, uniform, nudge))
    enum = rng.integers(0, 4, size=(count, 1)).astype(np.float64)
    return np.concatenate([cont, enum], 1)


def _frames(obs: np.ndarray, act: np.ndarray) -> list[dict[str, float]]:
    return [{"x": o[0], "v": o[1], "w": o[2], "e": o[3], "a": float(a)} for o, a in zip(obs, act)]


def test_step_semantics_match_reference() -> None:
    rules = RuleSet.from_string(STEP_RULES)
    rng = np.random.default_rng(1)
    obs, act = _states(rng, 3000), rng.integers(0, 3, 3000)
    result = rules.evaluate(obs, act)
    for i, frame in enumerate(_frames(obs, act)):
        expected = [not reference.rule_ok(r, [frame], 0, rules.program) for r in rules.program.rules]
        assert result.violated[i].tolist() == expected, (frame, expected)


def test_robustness_sign_matches_truth_off_boundary() -> None:
    rules = RuleSet.from_string(STEP_RULES)
    rng = np.random.default_rng(2)
    obs, act = rng.uniform(-2, 2, (2000, 4)), rng.integers(0, 3, 2000)
    obs[:, 3] = rng.integers(0, 4, 2000)
    result = rules.evaluate(obs, act)
    rob, bad = result.rule_robustness, result.violated
    assert torch.all(rob[bad] <= 0) and torch.all(rob[~bad] >= 0)


def test_trace_semantics_match_reference() -> None:
    rules = RuleSet.from_string(TEMPORAL_RULES)
    rng = np.random.default_rng(3)
    rows, steps = 40, 7
    for _ in range(5):
        obs = _states(rng, rows * steps).reshape(rows, steps, 4)
        act = rng.integers(0, 3, (rows, steps)).astype(np.float64)
        obs[rng.random((rows, steps)) < 0.03, 0] = np.nan  # sprinkle unknown values
        values = {"x": obs[..., 0], "v": obs[..., 1], "w": obs[..., 2], "e": obs[..., 3], "a": act}
        trace = Trace({k: torch.as_tensor(v) for k, v in values.items()}, (rows, steps))
        ok, _ = rules.compiled.evaluate(trace)
        for i in range(rows):
            frames = _frames(obs[i], act[i])
            for t in range(steps):
                expected = [reference.rule_ok(r, frames, t) for r in rules.program.rules]
                assert ok[i, :, t].tolist() == expected, (i, t)


def _z3_truth(compiler: Z3Compiler, rule, values: dict[str, float]) -> bool:
    env = Env(Frame(compiler.program), 0, {k: real(v) for k, v in values.items()})
    result = z3.simplify(compiler.rule(rule, env))
    assert z3.is_true(result) or z3.is_false(result), result
    return z3.is_true(result)


def test_torch_agrees_with_z3_near_boundaries() -> None:
    rules = RuleSet.from_string(STEP_RULES)
    compiler = Z3Compiler(rules.program)
    rng = np.random.default_rng(4)
    obs, act = _states(rng, 400), rng.integers(0, 3, 400)
    result = rules.evaluate(obs, act)
    for i, frame in enumerate(_frames(obs, act)):
        for j, rule in enumerate(rules.program.rules):
            assert _z3_truth(compiler, rule, frame) == (not result.violated[i, j].item()), \
                (rule.name, frame)


def test_model_next_agrees_with_z3_and_reference() -> None:
    rules = load_rules("cartpole_track")
    compiler = Z3Compiler(rules.program)
    rng = np.random.default_rng(5)
    # states close to the invariant's boundary, where the two actions disagree
    x = rng.uniform(-1.0, 1.0, 300)
    v = rng.uniform(-4, 4, 300)
    obs = np.stack([x, v, np.zeros(300), np.zeros(300)], 1)
    act = rng.integers(0, 2, 300)
    result = rules.evaluate(obs, act)
    rob = result.robustness.numpy()
    assert (~result.ok).any() and result.ok.any()
    for i in range(300):
        frame = {"x": x[i], "xdot": v[i], "theta": 0.0, "thetadot": 0.0, "push": float(act[i])}
        rule = rules.program.rules[0]
        assert reference.rule_ok(rule, [frame], 0, rules.program) == bool(result.ok[i])
        if abs(rob[i]) > 1e-9:  # z3 is exact; skip float ties
            assert _z3_truth(compiler, rule, frame) == bool(result.ok[i])


@pytest.mark.parametrize("body", ["not (x > 2)", "x != 1", "not (x <= 0) or true -> x == x",
                                  "(if x > 0 then 1 else 2) > 0", "abs(x) >= 0 or v < 10"])
def test_nan_is_a_violation(body: str) -> None:
    rules = RuleSet.from_string(f"signals: x = obs[0]; v = obs[1]\nrule r (hard): {body}")
    obs = np.array([[np.nan, 0.0], [0.5, 0.0]])
    result = rules.evaluate(obs, None)
    assert result.violated[0, 0] and not result.ok[0]
    assert torch.isfinite(result.robustness).all() and result.robustness[0] < 0


def test_horizon_overrun_is_a_violation() -> None:
    rules = RuleSet.from_string("""
        signals: x = obs[0]
        actions: a : {l=0, r=1}
        rule ev (hard): eventually[0,2](x > 0)
        rule al (soft): always[0,1](x > -5)
        rule nx (soft): next(a == l)
        rule hi (soft): historically[0,5](x > -5)
    """)
    obs = np.ones((2, 4, 1))  # (N, H+1, 1): H = 3 steps
    act = np.zeros((2, 3), np.int64)
    check = rules.check_trajectories(obs, act)
    violated = check.violated  # (N, R, H)
    assert violated.shape == (2, 4, 3)
    # eventually[0,2] at step 1 needs steps 1..3 -> obs 3 exists; at step 2 needs step 4: overrun
    assert violated[0, 0].tolist() == [False, False, True]
    assert violated[0, 1].tolist() == [False, False, False]   # always[0,1] at step 2 reads obs 3
    assert violated[0, 2].tolist() == [False, False, True]    # next action at step 3 is unknown
    assert violated[0, 3].tolist() == [False, False, False]   # past before start is neutral
    assert check.violations.tolist() == [1, 1] and not check.feasible.any()
    hard = rules.check_trajectories(obs, act, hard_only=True)  # what a planner evaluates
    assert torch.equal(hard.violated, violated[:, :1])
    assert torch.equal(hard.violations, check.violations) and torch.equal(hard.robustness, check.robustness)


def test_trajectory_feasibility_and_robustness() -> None:
    rules = load_rules("cartpole_track")
    obs = np.zeros((3, 5, 4))
    obs[1, 3, 0] = 1.5  # off the track at step 3
    obs[2, :, 1] = np.nan
    check = rules.check_trajectories(obs, np.zeros((3, 4), np.int64))
    assert check.feasible.tolist() == [True, False, False]
    assert check.robustness[0] > 0 > check.robustness[1]
    assert check.violations[1] == 1 and check.violations[2] == 4


def test_all_masked_logits_stay_finite() -> None:
    rules = RuleSet.from_string("""
        signals: x = obs[0]
        actions: a : {l=0, r=1}
        rule r1 (hard): x > 0 -> a == l
        rule r2 (hard): x > 1 -> a == r
    """)
    allowed = rules.allowed_actions(np.array([[0.5], [2.0]]))
    assert allowed.tolist() == [[True, False], [False, False]]  # row 1 is a dead end
    logits = torch.tensor([[1.0, 3.0], [1.0, 3.0]])
    probs = torch.softmax(mask_logits(logits, allowed), -1)
    assert torch.isfinite(probs).all()
    assert probs[0, 0] > 0.999 and torch.allclose(probs[1], torch.softmax(logits[1], -1))
