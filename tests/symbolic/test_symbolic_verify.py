"""Static checks: seeded faults are caught with rule names and counterexamples."""
from __future__ import annotations

import time

import numpy as np
import pytest
import z3
from gymnasium import spaces

from symbolic import check_file, parse, shipped_names, verify

HEADER = """
signals: x = obs[0] in [-2, 2]; v = obs[1] in [-3, 3]
actions: push : {left=0, right=1}
"""


def _report(body: str):
    return verify(parse(HEADER + body, "seeded.rules"))


@pytest.mark.parametrize("name", shipped_names())
def test_shipped_rules_pass_quickly(name: str) -> None:
    start = time.perf_counter()
    report = verify(name)
    assert time.perf_counter() - start < 1.0, report.format()
    assert report.ok and not report.items, report.format()
    assert "result: OK" in report.format()


def test_conflicting_rules() -> None:
    report = _report("""
        rule keep_low (hard): x <= -1
        rule keep_high (hard): x >= 1
        rule fine (soft): v <= 2
    """)
    assert not report.ok
    item = next(i for i in report.items if i.check == "consistency")
    assert set(item.rules) == {"keep_low", "keep_high"}
    assert item.counterexample is not None and "x" in item.counterexample
    assert "seeded.rules:" in item.location and "keep_low" in report.format()


def test_dead_end_reports_state_and_blocking_rules() -> None:
    report = _report("""
        rule right_edge (hard): x > 1 and v > 0 -> push == left
        rule moving_left (hard): v < -1 -> push == right
        rule lean (hard): x > 1.5 -> push == right
    """)
    item = next(i for i in report.items if i.check == "dead_end")
    assert item.severity == "error" and not report.ok
    state = item.counterexample
    assert state is not None and state["x"] > 1.5 and state["v"] > 0
    assert set(item.rules) == {"right_edge", "lean"}
    text = report.format()
    assert "push=left: blocked by lean" in text and "push=right: blocked by right_edge" in text


def test_continuous_dead_end() -> None:
    report = verify(parse("""
        signals: w = obs[0] in [-8, 8]
        actions: torque = action[0] in [-2, 2]
        rule low (hard): w > 6 -> torque <= -1
        rule high (hard): w > 7 -> torque >= 1
    """, "pendulum_bad.rules"))
    item = next(i for i in report.items if i.check == "dead_end")
    assert item.counterexample["w"] > 7 and set(item.rules) == {"low", "high"}


def test_vacuous_rule() -> None:
    report = _report("""
        rule real (hard): x > 1 -> push == left
        rule always_true (soft): abs(v) <= 3
    """)
    assert report.ok  # vacuity is a warning
    item = next(i for i in report.items if i.check == "vacuous")
    assert item.rules == ("always_true",) and item.severity == "warning"
    assert "seeded.rules:" in item.location


def test_redundant_rule() -> None:
    report = _report("""
        rule strict (hard): x > 0.5 -> push == left
        rule loose (hard): x > 1 -> push == left
    """)
    item = next(i for i in report.items if i.check == "redundant")
    assert item.rules == ("loose", "strict")
    assert item.counterexample is not None and item.counterexample["x"] > 1
    assert "implied by strict" in report.format()


def test_invariant_not_preserved() -> None:
    report = _report("""
        model: x' = x + 0.1 * v; v' = v
        invariant: abs(x) <= 1
        rule anything (hard): abs(v) <= 3
    """)
    assert any(i.check == "invariant" and i.severity == "error" for i in report.items)


def test_unknown_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(z3.Solver, "check", lambda self, *a: z3.unknown)
    report = verify("minigrid_lava")
    assert not report.ok and any("unknown" in i.message for i in report.items)


def test_check_file_exit_codes(tmp_path) -> None:
    good = tmp_path / "good.rules"
    good.write_text(HEADER + "rule r (hard): x > 1 -> push == left\n")
    text, code = check_file(str(good))
    assert code == 0 and "PASS" in text
    bad = tmp_path / "bad.rules"
    bad.write_text(HEADER + "rule a (hard): x > 1\nrule b (hard): x < 0\n")
    text, code = check_file(str(bad))
    assert code == 1 and "FAIL consistency" in text
    broken = tmp_path / "broken.rules"
    broken.write_text(HEADER + "rule a (hard): x >\n")
    text, code = check_file(str(broken))
    assert code == 2 and "broken.rules:" in text and "expected:" in text
    vacuous = tmp_path / "vacuous.rules"
    vacuous.write_text(HEADER + "rule a (hard): x <= 5\n")
    assert check_file(str(vacuous))[1] == 0 and check_file(str(vacuous), strict=True)[1] == 1


def test_check_file_binds_spaces() -> None:
    obs = spaces.Dict({"image": spaces.Box(0, 255, (7, 7, 3), np.uint8)})
    text, code = check_file("minigrid_lava", obs, spaces.Discrete(7))
    assert code == 0 and "PASS bindings" in text
    text, code = check_file("minigrid_lava", obs, spaces.Discrete(3))
    assert code == 1 and "outside Discrete(3)" in text
    text, code = check_file("pendulum_torque", spaces.Box(-1, 1, (3,)), spaces.Box(-2, 2, (1,)))
    assert code == 0
    text, code = check_file("pendulum_torque", spaces.Box(-1, 1, (3,)), spaces.Box(-2, 2, (2,)))
    assert code == 1 and "fallback has 1 value(s)" in text
    text, code = check_file("pendulum_torque", spaces.Box(-1, 1, (2,)), spaces.Box(-2, 2, (1,)))
    assert code == 1 and "outside the observation shape" in text
