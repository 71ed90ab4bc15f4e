"""check_env_report: one line per check, a verdict, and the right exit code."""
from __future__ import annotations

import pytest

import envs
from envs.builtin import BUILTINS


def _lines_ok(text: str) -> None:
    lines = text.splitlines()
    assert lines[-1].startswith("verdict: ")
    for line in lines[1:-1]:
        assert line[:4] in ("PASS", "WARN", "FAIL") or line.lstrip().startswith("- ")


@pytest.mark.parametrize("target", ["CartPole-v1"] + [i for i, *_ in BUILTINS])
def test_usable_envs_exit_0(target: str) -> None:
    text, code = envs.check_env_report(target, steps=200)
    _lines_ok(text)
    assert code == 0, text
    assert "verdict: usable" in text
    for name in ("gymnasium", "obs", "action", "api", "episodes", "driver", "seeding",
                 "render", "speed", "memory"):
        assert any(line[6:].startswith(name) for line in text.splitlines()), (name, text)


@pytest.mark.parametrize("target, reason", [
    ("tests.envs.fake_envs:FourTupleEnv", "4-tuple"),
    ("tests.envs.fake_envs:TextActionEnv", "action space Text"),
    ("tests.envs.fake_envs:CrashOnInitEnv", "simulator license not found"),
    ("NoSuchEnv-v0", "unknown env id"),
])
def test_broken_envs_exit_1(target: str, reason: str) -> None:
    text, code = envs.check_env_report(target, steps=50)
    _lines_ok(text)
    assert code == 1
    verdict = text.splitlines()[-1]
    assert verdict.startswith("verdict: not usable: ") and reason in text, text


def test_warnings_for_never_ending_episodes_dropped_keys_and_memory() -> None:
    text, code = envs.check_env_report("tests.envs.fake_envs:NeverEndsEnv", steps=100,
                                       replay_capacity=1_000_000, memory_budget_bytes=1_000_000)
    assert code == 0
    assert "WARN  episodes   no episode ended in 100 random steps and there is no TimeLimit" in text
    assert "WARN  memory" in text and "use a replay capacity of about 20,000" in text
    text, code = envs.check_env_report("tests.envs.fake_envs:DictTextEnv", steps=50)
    assert code == 0 and "WARN  obs        observation keys dropped: 'mission' (Text)" in text


def test_kwargs_and_pixels_reach_the_env() -> None:
    text, code = envs.check_env_report("worldmodel/CueMemory-v0", {"length": 3}, obs="pixels",
                                       steps=50)
    assert code == 0
    assert "'obs' image (64, 64, 3)" in text
    assert "mean length 4.0" in text
