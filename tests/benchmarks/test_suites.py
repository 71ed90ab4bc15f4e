"""Suites: the dry run lists the expected commands (and runs none of them); every command of
every suite is one our parsers accept; a real run goes on past a failure and reports it."""
import importlib.util
import re
import subprocess

import pytest

from benchmarks import suites
from benchmarks.__main__ import build_parser, main


@pytest.fixture
def no_subprocess(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a dry run started {args}")
    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)


def listed(out: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^ +\d+\. (python .*)$", out, re.MULTILINE)]


def test_cpu_quick_dry_run_lists_the_commands(capsys, no_subprocess):
    assert main(["run", "--suite", "cpu-quick", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert listed(out) == [
        "python -m benchmarks speed --presets debug small medium --repeats 3",
        "python -m benchmarks plan-speed --preset small --planner mppi --samples 256 --horizon 5 --iterations 3 "
        "--env Pendulum-v1 CartPole-v1",
        f"python -m benchmarks learn --task cartpole --seeds 0 --steps 2000 --eval-every 1000 "
        f"--target {suites.QUICK_LEARN_TARGET} --check",
        "python -m benchmarks report"]
    assert "dry run" in out and "python -m benchmarks run --suite cpu-quick" in out


def test_cpu_full_covers_every_task_three_seeds_shield_and_kill_resume(capsys, no_subprocess):
    assert main(["run", "--suite", "cpu-full", "--dry-run"]) == 0
    cmds = listed(capsys.readouterr().out)
    for task in ("cartpole", "pendulum", "cartpole-pixels"):  # the tasks issue 8 names
        assert f"python -m benchmarks learn --task {task} --seeds 0 1 2" in cmds
    shield = [c for c in cmds if c.startswith("python -m benchmarks.shield")]
    assert shield and all("--modes on off" in c and "--seeds 0 1 2" in c for c in shield)
    assert any(c.startswith("python -m benchmarks.kill_resume") for c in cmds)
    assert any(" speed-grid " in c for c in cmds) and any(" plan-speed " in c for c in cmds)
    assert cmds[-1] == "python -m benchmarks report"


@pytest.mark.parametrize("name", list(suites.SUITES))
def test_every_suite_command_parses(name):
    for cmd in suites.SUITES[name]:
        assert cmd[0] == "-m"
        if cmd[1] == "benchmarks":
            args, rest = build_parser().parse_known_args(list(cmd[2:]))  # SystemExit on a bad flag
            assert rest == [], cmd
        else:
            assert importlib.util.find_spec(cmd[1]) is not None, cmd


def test_run_goes_on_after_a_failure_and_reports_it(monkeypatch, capfd):
    monkeypatch.setitem(suites.SUITES, "fake", [("-c", "print('first', 'ran')"), ("-c", "import sys; sys.exit(3)"),
                                                 ("-c", "print('third', 'ran')")])
    assert suites.run_suite("fake") == 1
    out = capfd.readouterr().out
    assert "first ran" in out and "third ran" in out
    assert "FAILED (exit 3)" in out and "1 of 3 commands failed" in out
    assert suites.run_suite("fake", start=3) == 0
    out = capfd.readouterr().out
    assert "third ran" in out and "first ran" not in out
