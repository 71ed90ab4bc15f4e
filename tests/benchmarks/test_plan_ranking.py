"""The model-ranking check: imagined and true rewards of the same random sequences."""
import pytest

from benchmarks.plan_ranking import main, rank_check
from worldmodel.cli import main as cli


@pytest.fixture(scope="module")
def pendulum_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("pend") / "run"
    assert cli(["train", "--preset", "debug", "--env", "Pendulum-v1", "--logdir", str(run), "--steps", "200"]) == 0
    return run


def test_rows_compare_the_model_with_the_simulator(pendulum_run):
    rows = rank_check(str(pendulum_run), horizon=3, candidates=8, every=10, steps=30, seed=0)
    assert [r["step"] for r in rows] == [5, 15, 25]  # the TimeLimit never saw the replays
    for r in rows:
        assert -1.0 <= r["corr"] <= 1.0
        assert r["true_spread"] > 0.0       # random torques do change Pendulum's reward
        assert r["regret"] >= 0.0           # the true best is never beaten by the model's pick


def test_env_without_copyable_state_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["train", "--preset", "debug", "--env", "worldmodel/SafeCorridor-v0", "--logdir", str(run),
                "--steps", "100"]) == 0
    with pytest.raises(SystemExit, match="copyable"):
        main(["--run", str(run)])
