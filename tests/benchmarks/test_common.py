"""Result rows name the code that produced them: the commit the benchmark process started
with, and the commit at writing time too when HEAD moved during the run."""
import json

from benchmarks import common


def test_row_keeps_the_commit_the_run_started_with(results, monkeypatch):
    monkeypatch.setattr(common, "STARTED_AT", "aaaaaaa")
    monkeypatch.setattr(common, "machine", lambda: {"cpus": 2})
    monkeypatch.setattr(common, "commit", lambda: "aaaaaaa")
    row = common.record("speed", {"x": 1}, "cmd")
    assert row["commit"] == "aaaaaaa" and "commit_at_record" not in row
    monkeypatch.setattr(common, "commit", lambda: "bbbbbbb")  # a commit landed during the run
    row = common.record("speed", {"x": 2}, "cmd")
    assert row["commit"] == "aaaaaaa" and row["commit_at_record"] == "bbbbbbb"
    stored = [json.loads(line) for line in (results / "speed.jsonl").read_text().splitlines()]
    assert [r["commit"] for r in stored] == ["aaaaaaa", "aaaaaaa"] and stored[1]["commit_at_record"] == "bbbbbbb"


def test_started_at_is_this_checkout_head():
    assert common.STARTED_AT == common.commit() != "unknown"
