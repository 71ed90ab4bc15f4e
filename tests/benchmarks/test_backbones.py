"""benchmarks.backbones (issue 10): each (backbone, T) point times the update, its parts and a
whole train step on a CueMemory-shaped batch, in a fresh process; a run where every point
failed must not replace the last good plot or add a record."""
import json
import math

import pytest

from benchmarks import backbones


@pytest.mark.parametrize("kind", ["gru", "ssm"])
def test_measure_times_every_part_of_a_small_update(kind):
    # the small preset trains the critic on replayed returns, which reads is_last
    row = backbones.measure(kind, T=8, B=2, presets=["small"], overrides={}, repeats=1, threads=1)
    assert row["backbone"] == kind and row["T"] == 8 and row["imagine_starts"] == 16
    for key in ("ms_per_update", "ms_dynamics", "ms_heads", "ms_train_step", "ms_imagine"):
        assert math.isfinite(row[key]) and row[key] > 0, key
    assert row["peak_live_mb"] is None or row["peak_live_mb"] > 0


def test_command_records_a_point_and_plots_it(results, capsys):
    assert backbones.main(["--lengths", "8", "--backbones", "gru", "--preset", "debug", "--repeats", "1",
                           "--set", "critic.replay_loss=0.3"]) == 0
    assert (results / "backbones.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((results / "backbones.jsonl").read_text())
    assert [(r["backbone"], r["T"]) for r in record["rows"]] == [("gru", 8)] and "error" not in record["rows"][0]


def test_every_point_failing_keeps_the_last_plot_and_records_nothing(results, monkeypatch, capsys):
    (results / "backbones.png").write_bytes(b"the last good plot")
    monkeypatch.setattr(backbones, "_subprocess",
                        lambda kind, T, args: {"backbone": kind, "T": T, "batch": args.batch, "error": "KeyError"})
    assert backbones.main(["--lengths", "8", "--backbones", "gru", "ssm"]) == 1
    assert (results / "backbones.png").read_bytes() == b"the last good plot"
    assert not (results / "backbones.jsonl").exists()
    assert "every point failed" in capsys.readouterr().err


def test_ratios_time_every_backbone_in_one_process_against_the_gru(results, capsys):
    from benchmarks.report import report
    assert backbones.main(["--ratios", "--lengths", "8", "--preset", "debug", "--repeats", "2"]) == 0
    record = json.loads((results / "backbones.jsonl").read_text())
    assert record["kind"] == "ratios" and [r["backbone"] for r in record["rows"]] == ["gru", "ssm", "hybrid"]
    gru, ssm = record["rows"][0], record["rows"][1]
    assert gru["of_gru"] == 1.0 and ssm["of_gru"] == pytest.approx(ssm["cpu_ms_per_update"] / gru["cpu_ms_per_update"])
    assert not (results / "backbones.png").exists()  # no time-against-T plot from ratios alone
    text = report(results)
    assert "Backbones: update time against the GRU's" in text and "| gru | 8 | 4 |" in text


def test_learn_trains_on_the_revealing_cue_memory_and_records_it(results, capsys, monkeypatch):
    seen = []
    from benchmarks import common
    real_train = common.train

    def train(env, presets, overrides):
        seen.append(overrides["env.kwargs"])
        return real_train(env=env, presets=presets, overrides=overrides)

    monkeypatch.setattr(common, "train", train)
    assert backbones.main(["--learn", "--reveal", "--backbones", "ssm", "--distances", "3", "--learn-steps", "60",
                           "--preset", "debug", "--eval-episodes", "2", "--set", "train.prefill=20"]) == 0
    assert seen == [{"length": 3, "reveal": True}]
    (run,) = json.loads((results / "backbones.jsonl").read_text())["runs"]
    assert run["reveal"] is True and run["distance"] == 3 and -1.0 <= run["eval_return"] <= 1.0
