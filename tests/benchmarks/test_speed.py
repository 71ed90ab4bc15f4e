"""speed-grid: the points (grid, then each preset at its default size, no repeats) and one
real point measured in a fresh process."""
from benchmarks.speed import grid_point, grid_points


def test_grid_points():
    points = grid_points("small", (8, 16), (16, 32), ("debug", "small"))
    assert points == [("small", 8, 16), ("small", 8, 32), ("small", 16, 16), ("small", 16, 32), ("debug", 4, 8)]


def test_grid_point_measures_time_and_memory():
    r = grid_point("debug", 2, 4, "CartPole-v1", 1, 2)
    assert "error" not in r, r
    assert (r["batch"], r["length"], r["repeats"]) == (2, 4, 2)
    assert r["ms_per_update"] > 0 and r["update_mb"] >= 0
    assert r["peak_rss_mb"] > 50 and r["peak_rss_mb"] > r["update_mb"]  # the process holds torch


def test_grid_point_reports_a_failure():
    r = grid_point("no-such-preset", 2, 4, "CartPole-v1", 1, 1)
    assert "unknown preset" in r["error"]


def test_gather_ab_times_both_paths_and_restores_the_switch():
    from benchmarks.speed import gather_ab
    from worldmodel.nets import LatentLinear
    for planner in (False, True):
        r = gather_ab("debug", rounds=2, planner=planner)
        assert r["cpu_ms_gather"] > 0 and r["cpu_ms_dense"] > 0
        assert abs(r["speedup"] - r["cpu_ms_dense"] / r["cpu_ms_gather"]) < 1e-9
        assert LatentLinear.enabled


def test_gather_ab_of_a_compiled_agent_compiles_it_and_warms_both_paths(monkeypatch):
    """--compiled: the agent is compiled as run.compile does, and each setting of the switch
    runs (compiles) before the timed rounds, so neither round times a compile."""
    import torch

    from benchmarks.speed import gather_ab
    from worldmodel.agent import Agent
    from worldmodel.nets import LatentLinear
    seen = []
    original = Agent.compile
    monkeypatch.setattr(Agent, "compile", lambda self, backend="inductor", imagination=None:
                        (seen.append("compile"), original(self, backend="aot_eager"))[1])
    from planners.mpc import LatentMPC
    act = LatentMPC.act  # MPPI decisions: what compiles fastest (the update: see compile-ab's test)
    monkeypatch.setattr(LatentMPC, "act", lambda self, *a, **k: (seen.append(LatentLinear.enabled), act(self, *a, **k))[1])
    torch._dynamo.reset()
    try:
        r = gather_ab("debug", rounds=2, planner=True, compiled=True)
    finally:
        torch._dynamo.reset()
    assert r["compiled"] and r["cpu_ms_gather"] > 0 and r["cpu_ms_dense"] > 0 and LatentLinear.enabled
    assert seen[:7] == ["compile", True, True, True, False, False, False]  # compile, then warm both
    assert sorted(seen[7:]) == [False, False, True, True]  # 2 timed rounds of each


def test_every_result_row_records_the_host_speed_and_keeps_the_thread_count(results):
    import json

    import torch
    from benchmarks.common import record
    before = torch.get_num_threads()
    record("probe", {"x": 1}, "python -m benchmarks probe")
    row = json.loads((results / "probe.jsonl").read_text())
    assert row["machine"]["matmul_gflops_1thread"] > 1.0  # any CPU that runs torch does more
    assert torch.get_num_threads() == before


def test_time_updates_compiled_counts_flops_eagerly_then_times_the_compiled_agent(monkeypatch):
    """`speed --set run.compile=true`: the FLOPs come from the eager update, then the agent
    is compiled (Agent.compile) and its compile time recorded."""
    import torch

    from benchmarks.speed import time_updates
    from worldmodel.agent import Agent
    compiled = []
    original = Agent.compile

    def compile_aot(self, backend="inductor", imagination=None):
        compiled.append(self)
        return original(self, backend="aot_eager", imagination=imagination)  # traces, no codegen: fast
    monkeypatch.setattr(Agent, "compile", compile_aot)
    torch._dynamo.reset()
    try:
        r = time_updates("debug", repeats=2, overrides={"run.compile": "true"})
        plain = time_updates("debug", repeats=2)
    finally:
        torch._dynamo.reset()
    assert len(compiled) == 1 and r["compiled"] and r["compile_s"] > 0 and "run.compile" not in r["overrides"]
    assert r["gflop_per_update"] == plain["gflop_per_update"] > 0
    assert not plain["compiled"] and plain["compile_s"] is None


def test_compile_ab_alternates_an_eager_and_a_compiled_agent(monkeypatch):
    import torch

    from benchmarks.speed import compile_ab
    from worldmodel.agent import Agent
    original = Agent.compile
    monkeypatch.setattr(Agent, "compile", lambda self, backend="inductor", imagination=None:
                        original(self, backend="aot_eager", imagination=imagination))
    torch._dynamo.reset()
    try:
        r = compile_ab("debug", rounds=2)
    finally:
        torch._dynamo.reset()
    assert r["cpu_ms_eager"] > 0 and r["cpu_ms_compiled"] > 0 and r["compile_s"] > 0
    assert abs(r["speedup"] - r["cpu_ms_eager"] / r["cpu_ms_compiled"]) < 1e-9
