"""benchmarks.context_gap on a short debug run (its replay is only in the checkpoint, no
chunk yet): the acting-vs-training head errors are measured and recorded, and a folder
that is not a run is one line and exit 2."""
import json

import pytest

from benchmarks import context_gap


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import worldmodel
    logdir = tmp_path_factory.mktemp("run")
    worldmodel.train(env="CartPole-v1", presets=["debug"],
                     overrides={"run.steps": 200, "run.logdir": str(logdir), "train.ratio": 16})
    return logdir


def test_measures_both_posteriors_and_records(run, results, capsys):
    assert context_gap.main(["--run", str(run), "--window", "3", "--min-length", "8", "--points", "3"]) == 0
    row = json.loads((results / "context_gap.jsonl").read_text().splitlines()[-1])
    assert row["episodes"] >= 1 and row["points"] >= 1
    for key in ("reward_full", "reward_window", "cont_full", "cont_window"):
        assert 0.0 <= row[key] < 10.0
    assert "| cont |" in capsys.readouterr().out


def test_reading_a_run_changes_none_of_its_files(run):
    # a chunk newer than the checkpoint (a run still training) would be deleted by a resume
    newer = run / "replay" / "lane0_000000001024.npz"
    newer.write_bytes(b"written after the checkpoint")
    before = sorted(p.name for p in (run / "replay").iterdir())
    context_gap.measure(str(run), window=3, points=2, min_length=8)
    assert sorted(p.name for p in (run / "replay").iterdir()) == before
    newer.unlink()


def test_not_a_run_is_one_line(tmp_path, capsys):
    assert context_gap.main(["--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
