"""benchmarks.sheeprl.compare's end-to-end parts that need no SheepRL: the time to a first
solved episode, the summary's ratio (a lower bound when SheepRL never got there), pinning a
child to CPUs, and --parallel running SheepRL beside our seeds."""
import os
import sys
import threading
import time
from argparse import Namespace

import pytest

from benchmarks.sheeprl import children, compare


def test_solve_stats_counts_from_the_child_start():
    episodes = [(100.0, 50, 20.0), (130.0, 900, 480.0), (140.0, 1400, 500.0)]
    got = compare.solve_stats(episodes, t0=90.0, target=475.0)
    assert got == {"solve_target": 475.0, "time_to_solve_s": 40.0, "steps_to_solve": 900}
    assert compare.solve_stats(episodes, 90.0, 600.0)["time_to_solve_s"] is None
    assert compare.solve_stats(episodes, 90.0, None) == {}


def _row(system, seed, solve_s, wall=100.0):
    return {"task": "CartPole-v1", "system": system, "seed": seed, "time_to_solve_s": solve_s,
            "steps_to_solve": None if solve_s is None else 1000, "solve_target": 475.0, "wall_s": wall,
            "env_steps": 2000, "best_return": 60.0}


def test_summary_ratio_is_a_lower_bound_when_sheeprl_never_solved():
    rows = [_row("ours", 0, 100.0), _row("ours", 1, None), _row("ours", 2, 200.0),
            _row("sheeprl", 0, None, wall=9000.0)]
    (line,) = compare.solve_summary(rows, 475.0)
    # median of 100, 200 and never (the worst) is 200 s; 9000 / 200 = 45
    assert "after 200 s (median" in line and "never" in line
    assert "**at least 45.0x** sooner" in line and "9000 s" in line


def test_summary_ratio_when_both_solved():
    rows = [_row("ours", 0, 100.0), _row("ours", 1, 300.0), _row("sheeprl", 0, 4000.0)]
    (line,) = compare.solve_summary(rows, 475.0)
    assert "**20.0x** sooner" in line  # median of 100 and 300 is 200


def test_summary_says_when_our_median_seed_never_solved():
    rows = [_row("ours", 0, None), _row("ours", 1, None), _row("ours", 2, 50.0), _row("sheeprl", 0, None)]
    (line,) = compare.solve_summary(rows, 475.0)
    assert "did not reach 475" in line and "x**" not in line


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin to one of them")
def test_run_child_pins_the_child_to_its_cpus(tmp_path):
    cpu = max(os.sched_getaffinity(0))
    out = tmp_path / "out.txt"
    res = children.run_child([sys.executable, "-c", f"import os; open({str(out)!r}, 'w').write("
                              "repr(sorted(os.sched_getaffinity(0))))"], tmp_path / "log.txt", None, {cpu})
    assert res["returncode"] == 0 and out.read_text() == repr([cpu])
    assert res["t0"] <= time.time() and not res["stopped_at_budget"]


def test_parallel_runs_sheeprl_beside_our_seeds(tmp_path, monkeypatch):
    spans, lock = {}, threading.Lock()

    def fake(system):
        def run(task, *args):
            cpus = args[-1]
            t = time.time()
            time.sleep(0.3)
            with lock:
                spans.setdefault(system, []).append((t, time.time(), cpus))
            return {"system": system, "config": "-", "env_steps": 1, "updates": 1, "wall_s": 0.3,
                    "peak_rss_mb": 1.0, "last10_return": 1.0, "time_to_solve_s": None}
        return run

    monkeypatch.setattr(compare, "ours_e2e", fake("ours"))
    monkeypatch.setattr(compare, "sheeprl_e2e", fake("sheeprl"))
    args = Namespace(task=["CartPole-v1"], budget_s=10, sheeprl_budget_s=None, steps=100, solve=475.0,
                     parallel=True, seeds=[0, 1], seed=0, ours_preset="small", sheeprl_preset="S",
                     replay_ratio=1.0)
    rows = compare.e2e(args, tmp_path)
    assert [r["system"] for r in rows] == ["ours", "ours", "sheeprl"]
    (theirs,) = spans["sheeprl"]
    assert len(spans["ours"]) == 2
    assert theirs[0] < spans["ours"][0][1] and spans["ours"][0][0] < theirs[1]  # they overlapped
    if len(os.sched_getaffinity(0)) >= 2:
        assert all(r["parallel"] for r in rows)
        assert theirs[2] and spans["ours"][0][2] and not theirs[2] & spans["ours"][0][2]
