"""learn --steps/--target/--check on the debug preset: the budget and target reach the run
and the record, and --check fails a run that never reached its target."""
import json

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
