"""plan-speed: the planner is built with the asked kind and budget, and each decision of the
debug agent takes a positive time; the command records one row per env and planner."""
import json
import re

from benchmarks.__main__ import main
from benchmarks.plan_speed import _agent, time_decisions


def test_agent_gets_the_budget():
    from planners.mppi import MPPI
    agent, env = _agent("Pendulum-v1", ["debug"], {"planner.kind": "mppi", "planner.samples": 48,
                                                   "planner.horizon": 4, "planner.iterations": 2})
    env.close()
    assert isinstance(agent.planner, MPPI)
    assert (agent.planner.samples, agent.planner.horizon, agent.planner.iterations) == (48, 4, 2)


def test_decision_time_is_positive():
    r = time_decisions("Pendulum-v1", ["debug"], "mppi", samples=32, horizon=3, iterations=2, decisions=4, warmup=1)
    assert r["ms_per_decision"] > 0 and r["planner_ms"] > 0 and r["cpu_ms_per_decision"] > 0
    assert r["ms_min"] <= r["ms_per_decision"] <= r["ms_p90"]
    assert abs(r["decisions_per_s"] * r["ms_per_decision"] - 1e3) < 1e-6
    assert (r["samples"], r["horizon"], r["iterations"], r["decisions"]) == (32, 3, 2, 4)
    assert r["device"] == "cpu"  # gpu_check.sh passes device="cuda"


def test_command_records_rows(results, capsys):
    assert main(["plan-speed", "--preset", "debug", "--env", "CartPole-v1", "--planner", "cem", "actor",
                 "--samples", "16", "--horizon", "2", "--iterations", "1", "--decisions", "3",
                 "--warmup", "1"]) == 0
    rows = [json.loads(line) for line in (results / "plan_speed.jsonl").read_text().splitlines()]
    assert [(r["env"], r["planner"], r["samples"]) for r in rows] == [("CartPole-v1", "cem", 16),
                                                                     ("CartPole-v1", "actor", None)]
    assert all(r["ms_per_decision"] > 0 and r["commit"] and r["machine"] for r in rows)
    out = capsys.readouterr().out
    assert re.search(r"^CartPole-v1 +cem +16 x 2 x 1 ", out, re.MULTILINE)
    assert "reproduce: python -m benchmarks plan-speed" in out


def test_with_rules_times_the_planner_with_the_shipped_rules(results, capsys):
    assert main(["plan-speed", "--preset", "debug", "--env", "CartPole-v1", "--planner", "mppi", "actor",
                 "--samples", "16", "--horizon", "2", "--iterations", "1", "--decisions", "5",
                 "--warmup", "1", "--with-rules"]) == 0
    rows = [json.loads(line) for line in (results / "plan_speed.jsonl").read_text().splitlines()]
    # the planner, then its interleaved overhead row; the actor once: it checks no plans
    assert [(r["planner"], r.get("rules")) for r in rows] == [("mppi", None), ("mppi", "cartpole_track"),
                                                             ("actor", None)]
    o = rows[1]
    assert min(o["ms_none"], o["ms_objective"], o["ms_shield"]) > 0
    assert o["shield_overhead"] == o["ms_shield"] / o["ms_objective"] - 1.0
    assert o["rules_overhead"] == o["ms_shield"] / o["ms_none"] - 1.0
    assert re.search(r"the shield adds [+-]\d+\.\d%, all rule work [+-]\d", capsys.readouterr().out)


def test_rules_overhead_checks_plans_only_in_the_shield_setting():
    """Each setting really is what it says: the shield's check runs only in 'shield'."""
    from benchmarks.plan_speed import rules_overhead
    from planners.imagined_shield import ImaginationShield
    calls = []
    check = ImaginationShield.check
    ImaginationShield.check = lambda self, *a, **k: (calls.append(1), check(self, *a, **k))[1]
    try:
        r = rules_overhead("CartPole-v1", "cartpole_track", ["debug"], "mppi", samples=16, horizon=2,
                           iterations=1, rounds=3, per_round=2, warmup=1)
    finally:
        ImaginationShield.check = check
    assert len(calls) == 1 + 3 * 2  # warmup round + 3 rounds of 2 decisions, shield setting only
    assert r["rounds"] == 3 and r["ms_shield"] > 0


def test_prior_overhead_runs_the_prior_only_when_on(results, capsys):
    """--prior: the planner's prior term runs in the 'on' setting only, and the row says so."""
    from planners.mpc import LatentMPC
    calls = []
    bonus = LatentMPC._prior_bonus
    LatentMPC._prior_bonus = lambda self, *a, **k: (calls.append(self.prior), bonus(self, *a, **k))[1]
    try:
        assert main(["plan-speed", "--preset", "debug", "--env", "Pendulum-v1", "--planner", "mppi",
                     "--samples", "16", "--horizon", "2", "--iterations", "1", "--decisions", "10",
                     "--warmup", "1", "--prior", "0.003"]) == 0
    finally:
        LatentMPC._prior_bonus = bonus
    rows = [json.loads(line) for line in (results / "plan_speed.jsonl").read_text().splitlines()]
    o = rows[1]
    assert o["prior"] == 0.003 and o["rounds"] == 2 and min(o["ms_prior_off"], o["ms_prior_on"]) > 0
    assert o["prior_overhead"] == o["ms_prior_on"] / o["ms_prior_off"] - 1.0
    # the plain timing row plans with the default prior; the interleaved row adds 0.003 in
    # its 'on' setting only: warmup + 2 rounds of 5 decisions, one iteration each
    from worldmodel.config import load_config
    default = load_config(["debug"]).planner.prior
    assert calls.count(0.003) == 1 + 2 * 5 and set(calls) == {default, 0.003}
    assert re.search(r"planner.prior 0.003 .*: off \d+\.\d ms, on \d+\.\d ms: [+-]\d", capsys.readouterr().out)


def test_compile_speedup_times_eager_and_compiled_decisions_in_turn(results, capsys, monkeypatch):
    """--compile: one agent, its imagination swapped between the eager methods and the
    compiled ones (run.compile's), interleaved; each compiled setting compiles before the
    timed rounds, and the row and the printed line say what was measured."""
    import torch

    from planners.mpc import LatentMPC
    original = LatentMPC.compile_imagination
    monkeypatch.setattr(LatentMPC, "compile_imagination",
                        lambda self, backend="inductor": original(self, backend="aot_eager"))
    calls = {"eager": 0}
    returns = LatentMPC._returns

    def counted(self, *args, **kwargs):
        if not torch.compiler.is_compiling():  # (a count inside traced code would be a guard)
            calls["eager"] += 1
        return returns(self, *args, **kwargs)
    monkeypatch.setattr(LatentMPC, "_returns", counted)
    torch._dynamo.reset()
    try:
        assert main(["plan-speed", "--preset", "debug", "--env", "CartPole-v1", "--planner", "mppi",
                     "--samples", "16", "--horizon", "2", "--iterations", "1", "--decisions", "10",
                     "--warmup", "1", "--compile"]) == 0
    finally:
        torch._dynamo.reset()
    rows = [json.loads(line) for line in (results / "plan_speed.jsonl").read_text().splitlines()]
    o = rows[1]
    assert o["rounds"] == 2 and min(o["ms_eager"], o["ms_compiled"], o["ms_compiled_onehot"]) > 0
    assert o["compile_speedup"] == o["ms_eager"] / o["ms_compiled"] and o["compile_s"] > 0
    # eager calls: the plain timing row (1 + 10 decisions) and the eager setting (1 + 2 x 5);
    # the compiled settings' 2 x (1 + 1 + 2 x 5) calls ran compiled code
    assert calls["eager"] == 11 + 11
    assert re.search(r"run.compile .*: eager \d+\.\d ms, compiled \d+\.\d ms \(\d\.\d\dx", capsys.readouterr().out)
