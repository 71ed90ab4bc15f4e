"""learn --steps/--target/--check on the debug preset: the budget and target reach the run
and the record, and --check fails a run that never reached its target."""
import json

import pytest

from benchmarks.__main__ import main


def test_learn_check_fails_below_target(results, capsys):
    argv = ["learn", "--task", "cartpole", "--preset", "debug", "--seeds", "0", "--steps", "200",
            "--eval-every", "100", "--target", "1e9", "--check",
            "--set", "train.ratio=16", "run.eval_episodes=2"]  # few updates and episodes: seconds
    assert main(argv) == 1
    assert "check failed: 1 seed(s) never reached 1000000000.0" in capsys.readouterr().out
    row = json.loads((results / "learning.jsonl").read_text().splitlines()[-1])
    assert row["overrides"] == {"train.ratio": "16", "run.eval_episodes": "2", "run.steps": 200}
    run = row["runs"][0]
    assert [step for step, _ in run["curve"]] == [100, 200] and run["target"] == 1e9
    assert run["steps_to_target"] is None and row["summary"]["seeds_reaching_target"] == 0
    assert run["frames_per_step"] == 1


def test_cue_memory_task_runs_with_its_env_length_and_a_replay_that_holds_an_episode(results):
    from benchmarks.learning import TASKS
    for name in ("cue-8", "cue-24", "cue-reveal-8", "cue-reveal-24"):
        _, _, target, over = TASKS[name]
        # an episode is length + 2 observations (cue, blanks, query, terminal); a replayed
        # sequence shorter than that never shows the world model a cue and its answer together
        assert over["replay.length"] >= over["env.kwargs"]["length"] + 2 and 0 < target <= 1
    argv = ["learn", "--task", "cue-8", "--preset", "debug", "--seeds", "0", "--steps", "100",
            "--eval-every", "100", "--set", "train.ratio=16", "run.eval_episodes=4"]
    assert main(argv) == 0
    run = json.loads((results / "learning.jsonl").read_text().splitlines()[-1])["runs"][0]
    # each answer pays +1 or -1, so the mean of 4 evaluation episodes lies in [-1, 1]
    assert run["task"] == "cue-8" and run["target"] == 0.8 and -1.0 <= run["curve"][0][1] <= 1.0
    # the row says what the task set, so a later change of the task's settings cannot relabel it
    assert run["task_overrides"]["replay.length"] == TASKS["cue-8"][3]["replay.length"]
    assert run["task_overrides"]["env.kwargs"] == {"length": 8}


def test_an_interrupted_run_ends_the_benchmark_and_records_nothing(results, monkeypatch):
    import worldmodel
    # what the trainer returns after SIGTERM: it checkpointed and stopped early
    monkeypatch.setattr(worldmodel, "train", lambda **kw: {"interrupted": "SIGTERM", "step": 1000})
    with pytest.raises(SystemExit, match="interrupted \\(SIGTERM\\) at env step 1000; nothing recorded"):
        main(["learn", "--task", "cartpole", "--preset", "debug", "--seeds", "0", "--steps", "200"])
    assert not (results / "learning.jsonl").exists()


def test_seeds_finished_before_an_interruption_are_recorded(results, monkeypatch, capsys):
    import worldmodel
    real = worldmodel.train
    calls = []

    def train(**kw):  # seed 0 runs for real, seed 1 is stopped at once
        calls.append(kw["overrides"]["run.seed"])
        return real(**kw) if len(calls) == 1 else {"interrupted": "SIGINT", "step": 64}
    monkeypatch.setattr(worldmodel, "train", train)
    argv = ["learn", "--task", "cartpole", "--preset", "debug", "--seeds", "0", "1", "--steps", "100",
            "--eval-every", "100", "--set", "train.ratio=16", "run.eval_episodes=2"]
    assert main(argv) == 1
    assert "interrupted (SIGINT) at env step 64" in capsys.readouterr().err
    row = json.loads((results / "learning.jsonl").read_text().splitlines()[-1])
    assert [r["seed"] for r in row["runs"]] == [0] and row["summary"]["seeds"] == 1


def test_dmc_rows_count_frames_as_the_issue_does():
    # the issue's DMC budgets are simulator frames: an agent step is action_repeat of them
    from benchmarks.learning import frames_per_step
    assert frames_per_step("worldmodel/dmc-cartpole-swingup-v0", {}) == 2          # the adapter's default
    assert frames_per_step("worldmodel/dmc-reacher-easy-v0", {"env.kwargs": '{"action_repeat": 8}'}) == 8
    assert frames_per_step("worldmodel/dmc-reacher-easy-v0", {"env.kwargs": {"action_repeat": 4}}) == 4
    assert frames_per_step("CartPole-v1", {"env.kwargs": '{"action_repeat": 8}'}) == 1


def test_a_dmc_budget_is_50k_frames_at_any_action_repeat(monkeypatch):
    import worldmodel
    from benchmarks.learning import run_seed
    seen = []

    def train(env, presets, overrides):  # records the budget, writes what a finished run leaves
        from pathlib import Path
        seen.append(overrides["run.steps"])
        logdir = Path(overrides["run.logdir"])
        logdir.mkdir(parents=True, exist_ok=True)
        (logdir / "eval.jsonl").write_text(json.dumps({"step": 1, "return_mean": 0.0, "wall_s": 1.0}) + "\n")
        (logdir / "metrics.jsonl").write_text(json.dumps({"updates": 1, "ups": 1.0}) + "\n")
        return {}
    monkeypatch.setattr(worldmodel, "train", train)
    rows = [run_seed(task, 0, ["debug"], over, 1000, 1) for task, over in (
        ("dmc-reacher-easy", {}), ("dmc-reacher-easy", {"env.kwargs": '{"action_repeat": 4}'}),
        ("dmc-reacher-easy", {"run.steps": "300"}),
        ("dmc-cartpole-swingup", {}), ("dmc-cartpole-swingup", {"env.kwargs": '{"action_repeat": 2}'}))]
    assert seen == [25_000, 12_500, "300", 6_250, 25_000]   # an explicit budget wins
    assert [(r["steps"], r["frames_per_step"]) for r in rows] == [(25_000, 2), (12_500, 4), (300, 2), (6_250, 8),
                                                                  (25_000, 2)]
