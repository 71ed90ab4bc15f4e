"""Bad input (issue 7): every bad config, env, rules file or run directory is one line with
exit code 2, never a traceback; fuzzed config overrides and rule files included."""
from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.worldmodel.cli_helpers import assert_one_line_error, run_cli
from worldmodel import checkpoint
from worldmodel.config import key_docs, load_config


# -- bad input: one line, exit 2 -------------------------------------------------------------
class BreaksLaterEnv(gym.Env):
    """Fine for 30 steps, then returns an observation of the wrong shape."""
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.steps = 0  # since construction: episodes never end

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.steps += 1
        obs = np.zeros(2 if self.steps < 30 else 3, np.float32)
        return obs, 0.0, False, False, {}


CONTRADICTION = """signals:
  x = obs[0] in [-2.4, 2.4]
actions:
  push : {left=0, right=1}
rule a (hard): push == left
rule b (hard): push == right
"""


def test_env_that_breaks_mid_run_keeps_its_progress(tmp_path):
    run = tmp_path / "r"
    code, _, err = run_cli(["train", "--preset", "debug", "--logdir", str(run), "--run.checkpoint_every", "10",
                            "--env", "tests.worldmodel.test_bad_input:BreaksLaterEnv"])
    assert_one_line_error(code, err, "progress saved in")
    assert checkpoint.list_checkpoints(run / "checkpoints")[-1].name == "step_000000029.pt"


@pytest.mark.parametrize("argv,needles", [
    (["--model.detr", "3"], ["unknown config key 'model.detr'", "did you mean 'model.deter'"]),
    (["--replay.chunk", "0"], ["'replay.chunk' must be positive"]),
    (["--train.max_skipped", "lots"], ["'train.max_skipped' must be an integer"]),
    (["--preset", "tiny"], ["unknown preset 'tiny'"]),
    (["--env", "CartPol-v1"], ["CartPole-v1"]),
    (["--env", "no_such_module_xyz:Env"], ["no_such_module_xyz"]),
    (["--rules", "RULES_BAD"], ["bad.rules:2:", "expected"]),
    (["--rules", "RULES_CONTRA"], ["fails static verification", "conflict between", "rules check"]),
    (["--logdir", "UNDER_A_FILE"], ["cannot write the run directory", "choose another --logdir"]),
])
def test_bad_input_is_one_line_and_exit_2(argv, needles, tmp_path):
    (tmp_path / "bad.rules").write_text("signals:\n  x = obs[0] in [-2.4, 2.4\n")
    (tmp_path / "contra.rules").write_text(CONTRADICTION)
    (tmp_path / "file").write_text("")
    subs = {"RULES_BAD": str(tmp_path / "bad.rules"), "RULES_CONTRA": str(tmp_path / "contra.rules"),
            "UNDER_A_FILE": str(tmp_path / "file" / "run")}
    argv = [subs.get(a, a) for a in argv]
    preset = [] if "--preset" in argv else ["--preset", "debug"]
    logdir = [] if "--logdir" in argv else ["--logdir", str(tmp_path / "run")]
    code, _, err = run_cli(["train", *preset, *logdir, "--steps", "4", *argv])
    assert_one_line_error(code, err, *needles)


def test_compile_without_a_cpp_compiler_stops_before_the_run(tmp_path, monkeypatch):
    """run.compile on the CPU needs a C++ compiler; without one the run stops at the start
    with one line (not after its prefill, in the first compiled update)."""
    from torch._inductor import cpp_builder

    def missing():
        raise RuntimeError("no working C++ compiler")
    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", missing)
    code, _, err = run_cli(["train", "--preset", "debug", "--logdir", str(tmp_path / "run"), "--steps", "4",
                            "--run.compile", "true"])
    assert_one_line_error(code, err, "run.compile", "C++ compiler", "drop --run.compile")
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())


def test_missing_checkpoint_is_one_line(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text(load_config(["debug"]).to_yaml())
    code, _, err = run_cli(["eval", "--run", str(run)])
    assert_one_line_error(code, err, "has no checkpoint yet")


# -- fuzzing: config overrides and rule files never end in a traceback -------------------------
class _Reached(Exception):
    """Raised instead of training: the config was accepted."""


SCHEMA = [k for k in key_docs()[0] if k not in ("run.logdir",)]
VALUES = st.one_of(st.integers(-3, 10**7).map(str), st.floats(allow_nan=True).map(str),
                   st.sampled_from(["true", "off", "[1, 2]", "{a: 1}", "", "cem", "pixels", "1e-4", "-0"]),
                   st.text(max_size=12))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(st.one_of(st.sampled_from(SCHEMA), st.text(min_size=1, max_size=15)), VALUES),
                      max_size=4),
       presets=st.lists(st.sampled_from(["debug", "small", "pixels", "large", "bogus"]), max_size=2))
def test_fuzz_config_overrides_never_traceback(pairs, presets, monkeypatch, tmp_path):
    import worldmodel.api as api

    def reached(*args, **kwargs):
        raise _Reached()
    monkeypatch.setattr(api, "Trainer", reached)
    argv = ["train", "--logdir", str(tmp_path / "fuzz")] + (["--preset", *presets] if presets else [])
    for key, value in pairs:
        argv += [f"--{key}", value]
    code, _, err = run_cli(argv)
    assert "Traceback" not in err and code in (1, 2)
    if code == 1:  # only the stub may end in exit 1: everything else the config rejects in one line
        assert "_Reached" in err, err
    else:
        assert len(err.strip().splitlines()) == 1, err


TOKENS = ["signals:", "actions:", "constants:", "model:", "invariant:", "rule", "fallback:", "ranked",
          "x = obs[0] in [-1, 1]", "push : {left=0, right=1}", "(hard)", "(soft)", ":", "x", "push", "left",
          "<=", ">=", "==", "and", "or", "not", "next(", ")", "prev(", "abs(", "1", "-2.5", "\n", "\n  ",
          "x'", "=", "any(", ",", "if", "then", "else", "# c", "'", "\"d\"", "0.0/0"]


@settings(max_examples=30, deadline=None)
@given(st.one_of(st.lists(st.sampled_from(TOKENS), max_size=30).map(" ".join), st.text(max_size=80)))
def test_fuzz_rule_files_never_traceback(text):
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".rules", delete=False) as f:
        f.write(text)
    try:
        code, out, err = run_cli(["rules", "check", f.name])
    finally:
        os.unlink(f.name)
    assert "Traceback" not in out + err and code in (0, 1, 2), (code, out, err)
    assert not err.startswith("error: ") or code == 2, err  # an internal error would be exit 1
