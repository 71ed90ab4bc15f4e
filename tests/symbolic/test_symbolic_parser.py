"""Parser: round trips through the pretty printer, and readable error messages."""
from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from symbolic import RuleError, load_rules, parse, shipped_names
from symbolic import nodes as n
from symbolic.printer import program as pretty

FEATURES = """
# every feature of the language once
constants:
  LIMIT = 1.0; DT = 0.02
  HALF = LIMIT / 2
signals:
  x = obs.state[0] in [-4.8, 4.8]
  v = obs.state[1] in [-10, 10]
  front = obs.image[3, 5, 0] in [0, 10] enum {empty=1, wall=2, lava=9}
actions:
  move = action[0] : {left=0, right=1, forward=2}
  grip = action[1] : {open=0, close=1}
model:
  x' = x + DT * v
  v' = v + DT * (if move == right then any(1, 2) else any(-2, -1))
invariant: abs(x) <= LIMIT
rule track (hard) "stay on the track": next(abs(x) <= LIMIT)
rule lava (hard) "never step into lava": front == lava -> move != forward
rule arith (soft): -x^2 + min(x, v, 3) * max(v, -1) / 2 - abs(v) < HALF or not (x >= 0)
rule past (soft): historically[0,3](grip == open) and once[1, 2](move == left) -> prev(x > 0)
rule future (soft) "for the planner": always[0,2](x <= 2) and eventually[1,3](v == 0) and true
rule implication (hard): x > 1 -> v < 0 -> move == left
fallback: [left, open]
"""


@pytest.mark.parametrize("text", [FEATURES, *(load_rules(s).source for s in shipped_names())])
def test_round_trip(text: str) -> None:
    program = parse(text, "a.rules")
    printed = pretty(program)
    again = parse(printed, "b.rules")
    assert again == program
    assert pretty(again) == printed  # the canonical form is a fixed point


def test_features_are_typed_and_resolved() -> None:
    p = parse(FEATURES)
    assert [s.key for s in p.signals] == ["state", "state", "image"]
    assert p.signal("front").index == (3, 5, 0) and p.signal("front").labels[2] == ("lava", 9)
    assert p.constants[2].value == 0.5
    lava = p.rules[1].body
    assert isinstance(lava, n.Implies) and lava.left.discrete  # type: ignore[union-attr]
    assert isinstance(p.rules[5].body, n.Implies) and isinstance(p.rules[5].body.right, n.Implies)
    assert p.fallback is not None and p.fallback.values == (0.0, 0.0)
    assert p.rules[0].description == "stay on the track"


def _error(text: str) -> RuleError:
    with pytest.raises(RuleError) as info:
        parse(text, "bad.rules")
    return info.value


def test_syntax_error_has_location_caret_and_expected_words() -> None:
    error = _error("signals:\n  x = obs[0] in [-1, 1]\nrule a (hard): x <= \n")
    text = str(error)
    lines = text.splitlines()
    assert lines[0].startswith("bad.rules:4:1: unexpected end of file") or \
        lines[0].startswith("bad.rules:3:")
    assert "__ANON" not in text and "expected:" in lines[-1]
    assert "a number" in lines[-1] and "a name" in lines[-1]

    error = _error("signals:\n  x = obs[0] in [-1, 1]\nrule a (hard): x <= 1 )\n")
    lines = str(error).splitlines()
    assert lines[0].startswith("bad.rules:3:23: unexpected ')'")
    assert lines[1].strip() == "rule a (hard): x <= 1 )"
    assert lines[2].index("^") - 2 == 22  # caret under the column (2-space indent)
    assert lines[3].startswith("expected: ") and "a new section" in lines[3]


def test_unknown_character_and_bad_kind() -> None:
    assert "unexpected character '@'" in str(_error("rule a (hard): 1 @ 2"))
    error = _error("rule a (medium): true")
    assert "'hard'" in error.expected and "'soft'" in error.expected


def test_unknown_name_suggests_closest() -> None:
    error = _error("signals:\n  xdot = obs[1]\nrule a (hard): xdto <= 1\n")
    assert "bad.rules:3:16: unknown name 'xdto' (did you mean 'xdot'?)" in str(error)
    assert "^" in str(error) and "expected: a declared signal" in str(error)


@pytest.mark.parametrize("text, message", [
    ("signals: x = obs[0]\nrule a (hard): x + 1", "expected a condition"),
    ("signals: x = obs[0]\nrule a (hard): (x < 1) + 1 < 2", "expected a number"),
    ("signals: x = obs[0]\nrule a (hard): any(0, 1) < x", "only allowed in model"),
    ("signals: x = obs[0]\nrule a (hard): true\nrule a (soft): true", "a second rule named 'a'"),
    ("signals: x = obs[0]\nconstants: x = 2", "already declared"),
    ("signals: x = obs[0] in [2, 1]", "empty range"),
    ("signals: x = obs[0.5]", "not an integer"),
    ("signals: x = obs[0]\nrule a (hard): historically[3,1](x > 0)", "empty window"),
    ("signals: x = obs[0]\nmodel: y' = x", "not a declared signal"),
    ("signals: x = obs[0]\nactions: a : {l=0}\ninvariant: a == l", "only read state"),
    ("signals: x = obs[0]\nmodel: x' = x / any(1, 2)", "division by a term containing any"),
    ("actions: a : {l=0}\nfallback: r", "unknown action label 'r'"),
])
def test_semantic_errors(text: str, message: str) -> None:
    error = _error(text)
    assert message in str(error) and str(error).startswith("bad.rules:")


def test_shipped_names_and_unknown_name() -> None:
    assert {"minigrid_lava", "cartpole_track", "pendulum_torque"} <= set(shipped_names())
    with pytest.raises(RuleError, match="did you mean 'cartpole_track'"):
        load_rules("cartpole_trak")


def test_bindings_against_spaces() -> None:
    image = spaces.Dict({"image": spaces.Box(0, 255, (7, 7, 3), np.uint8)})
    load_rules("minigrid_lava", image, spaces.Discrete(7))
    with pytest.raises(RuleError, match="label done=6 is outside Discrete"):
        load_rules("minigrid_lava", image, spaces.Discrete(6))
    with pytest.raises(RuleError, match="no key 'image'"):
        load_rules("minigrid_lava", spaces.Dict({"imag": image["image"]}), spaces.Discrete(7))
    small = spaces.Dict({"image": spaces.Box(0, 255, (5, 5, 3), np.uint8)})
    with pytest.raises(RuleError, match=r"outside the observation shape \(5, 5, 3\)"):
        load_rules("minigrid_lava", small, spaces.Discrete(7))
    obs = spaces.Box(-np.inf, np.inf, (3,))
    with pytest.raises(RuleError, match="exceeds the Box bounds"):
        load_rules("pendulum_torque", obs, spaces.Box(-1, 1, (1,)))
    with pytest.raises(RuleError, match="cartpole_track.rules:"):
        load_rules("cartpole_track", spaces.Box(-1, 1, (2,)), spaces.Discrete(2))
