"""`report` on a tiny synthetic results folder: a table per suite present with the medians,
one PNG learning curve per task and overrides set (the newest row of each)."""
import json

from benchmarks.__main__ import main
from benchmarks.curves import learning_plots, plot_name
from benchmarks.report import report


def write(folder, suite, *rows):
    with open(folder / f"{suite}.jsonl", "a") as f:
        for row in rows:
            f.write(json.dumps({"suite": suite, "commit": "abc1234", "command": f"cmd-{suite}", **row}) + "\n")


def learning_row(task, finals, overrides=None):
    runs = [{"task": task, "seed": seed, "curve": [[1000, 10.0], [2000, final]], "final_return": final,
             "steps_to_target": 2000 if final >= 100 else None, "target": 100.0, "wall_s": 60.0 * (seed + 1)}
            for seed, final in enumerate(finals)]
    reached = [r["steps_to_target"] for r in runs]
    return {"task": task, "presets": ["small"], "overrides": overrides or {}, "runs": runs, "summary": {
        "seeds": len(runs), "median_final_return": sorted(finals)[len(finals) // 2],
        "median_wall_s": 120.0, "median_steps_to_target": 2000 if all(reached) else None,
        "seeds_reaching_target": sum(s is not None for s in reached)}}


def fill(folder):
    write(folder, "learning", learning_row("cartpole", [1.0, 2.0, 3.0]),        # replaced by the next row
          learning_row("cartpole", [150.0, 320.5, 90.0]),
          learning_row("cartpole", [200.0], {"train.ratio": "64"}))
    write(folder, "speed", {"preset": "small", "threads": 1, "params": 451718, "batch": 16, "length": 32,
                            "ms_per_update": 178.26, "updates_per_s": 5.61, "gflop_per_update": 4.73,
                            "gflops_achieved": 26.55, "matmul_peak_gflops": 137.3},
          {"preset": "small", "env": "CartPole-v1", "threads": 1, "params": 451718, "batch": 16, "length": 32,
           "ms_per_update": 120.5, "updates_per_s": 8.3, "gflop_per_update": 4.73, "gflops_achieved": 39.3,
           "matmul_peak_gflops": 137.3, "compiled": True})
    write(folder, "plan_speed", {"env": "Pendulum-v1", "presets": ["small"], "planner": "mppi", "threads": 1,
                                 "samples": 256, "horizon": 5, "iterations": 3, "decisions": 50,
                                 "ms_per_decision": 17.25, "ms_p90": 19.5, "planner_ms": 16.0,
                                 "cpu_ms_per_decision": 15.5, "decisions_per_s": 58.0, "target_ms": 20.0},
          # a `--with-rules` row: the rules' overhead, no decision time of its own
          {"env": "Pendulum-v1", "rules": "pendulum_torque", "presets": ["small"], "planner": "mppi",
           "threads": 1, "samples": 128, "horizon": 15, "iterations": 2, "rounds": 60, "per_round": 5,
           "ms_none": 46.4, "ms_objective": 49.4, "ms_shield": 54.2, "shield_overhead": 0.097,
           "rules_overhead": 0.169},
          # a `--prior` row: the policy prior's cost
          {"env": "Pendulum-v1", "prior": 0.003, "presets": ["small"], "planner": "mppi", "threads": 1,
           "samples": 256, "horizon": 5, "iterations": 3, "rounds": 10, "per_round": 5,
           "ms_prior_off": 44.0, "ms_prior_on": 50.6, "prior_overhead": 0.15},
          # a `--compile` row: compiled against eager decisions
          {"env": "CartPole-v1", "presets": ["small"], "planner": "mppi", "threads": 2, "samples": 256,
           "horizon": 5, "iterations": 3, "rounds": 10, "per_round": 5, "backend": "inductor",
           "ms_eager": 84.9, "ms_compiled": 48.9, "ms_compiled_onehot": 53.0, "compile_speedup": 1.736,
           "compile_s": 32.4, "compile_onehot_s": 3.0})
    write(folder, "gather_ab", {"preset": "xs-matched", "work": "update", "env": "CartPole-v1", "threads": 1,
                                "rounds": 6, "cpu_ms_gather": 1123.0, "cpu_ms_dense": 1391.6, "speedup": 1.239},
          {"preset": "small", "work": "update", "env": "CartPole-v1", "threads": 1, "compiled": True,
           "rounds": 16, "cpu_ms_gather": 216.7, "cpu_ms_dense": 223.0, "speedup": 1.029})
    write(folder, "compile_ab", {"preset": "small", "env": "Pendulum-v1", "threads": 1, "rounds": 20,
                                 "compile_s": 381.2, "cpu_ms_eager": 349.9, "cpu_ms_compiled": 230.0, "speedup": 1.521})
    run = {"task": "corridor", "steps": 3000, "veto_rate_first10": 0.1, "veto_rate_last10": 0.0,
           "eval_shield_off": {"success": 0.0}}
    write(folder, "shield", {"task": "corridor", "runs": [
        {**run, "mode": "on", "seed": s, "train_executed_violations": 0, "train_vetoes": v,
         "eval_shield_on": {"success": 1.0, "executed_violations": 0}} for s, v in enumerate([10, 30, 20])] + [
        {**run, "mode": "off", "seed": s, "train_executed_violations": v, "train_vetoes": v,
         "eval_shield_on": {"success": 0.5, "executed_violations": 0}} for s, v in enumerate([7, 400, 11])]})


def test_report_tables_hold_the_medians(tmp_path):
    fill(tmp_path)
    text = report(tmp_path)
    for title in ("### Learning", "### Speed", "### Decision time", "### The shield"):
        assert title in text
    assert "### Kill" not in text and "### Side by side" not in text  # suites without results: no section
    cartpole = [line for line in text.splitlines() if line.startswith("| cartpole | small |")]
    assert len(cartpole) == 1 and "| 150.0 |" in cartpole[0] and "| 2/3 |" in cartpole[0]  # newest row only
    assert "| small + train.ratio=64 |" in text
    # the compiled update is a row of its own: it does not replace the eager one
    assert "| small | CartPole-v1 | 1 | no | 451,718 | 16 x 32 | 178.3 |" in text and "| 19% |" in text
    assert "| small | CartPole-v1 | 1 | yes | 451,718 | 16 x 32 | 120.5 |" in text
    assert "| Pendulum-v1 | small | mppi | 256 x 5 x 3 | 1 | 17.2 |" in text
    assert "| Pendulum-v1 | pendulum_torque | 128 x 15 x 2 | 46.4 | 49.4 | 54.2 | +9.7% | +16.9% |" in text
    assert "| Pendulum-v1 | mppi | 0.003 | 256 x 5 x 3 | 44.0 | 50.6 | +15.0% |" in text
    assert text.count("| Pendulum-v1 | small | mppi |") == 1  # overhead rows are not decision times
    assert "| CartPole-v1 | mppi | 256 x 5 x 3 | 2 | 84.9 | 48.9 | 1.74x | 53.0 | 32 | 10 x 5 |" in text
    assert "| CartPole-v1 | small | mppi |" not in text  # nor is a compile row
    assert "| xs-matched | update | CartPole-v1 | 1 | 1391.6 | 1123.0 | 1.24x |" in text
    assert "| small | update, compiled | CartPole-v1 | 1 | 223.0 | 216.7 | 1.03x |" in text
    assert "| small | Pendulum-v1 | 1 | 349.9 | 230.0 | 1.52x | 381 | 20 |" in text
    shield = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| corridor |")}
    assert "| 0 | 20 |" in shield["on"]  # median over seeds of 10, 30, 20 vetoes
    assert "| 11 | 11 |" in shield["off"]  # median of 7, 400, 11 violations
    assert "`cmd-learning`" in text


def test_learning_plots_one_png_per_task_and_overrides(tmp_path):
    fill(tmp_path)
    paths = learning_plots(tmp_path)
    assert sorted(p.name for p in paths) == sorted([
        "learning-cartpole-small.png", plot_name(learning_row("cartpole", [1.0], {"train.ratio": "64"}))])
    for p in paths:
        assert p.parent == tmp_path and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_report_command_prints_tables_and_png_paths(results, capsys):
    fill(results)
    assert main(["report"]) == 0
    out = capsys.readouterr().out
    assert "### Learning" in out and f"wrote {results / 'learning-cartpole-small.png'}" in out
    assert (results / "learning-cartpole-small.png").exists()


def test_report_without_results(tmp_path):
    assert "no results yet" in report(tmp_path)
    assert learning_plots(tmp_path) == []


def test_memory_probe_one_off_rows_do_not_replace_the_plain_probe(tmp_path):
    """A row a patched one-off script wrote (its `patched` field) has the plain probe's
    command; it must show as its own row, named, and leave the plain row's figure alone."""
    def probe_row(reached, **extra):
        return {"overrides": {}, **extra, "rows": [{
            "backbone": "ssm", "distance": 8, "reward": "xor", "readout": "twohot", "seed": 0,
            "updates": 6000, "reached": reached, "final_accuracy": 1.0 if reached else 0.48}]}
    write(tmp_path, "memory_probe", probe_row(None), probe_row(3250, patched="output layer random at the start"))
    section = report(tmp_path).split("### Memory probe")[1]
    rows = [line for line in section.splitlines() if line.startswith("| twohot")]
    assert len(rows) == 2
    plain = [r for r in rows if "one-off" not in r]
    assert len(plain) == 1 and "not within 6,000" in plain[0]
    assert "one-off: output layer random at the start" in section and "3,250" in section


def test_seeds_run_as_separate_commands_are_reported_together(tmp_path):
    from benchmarks.report import frames_per_step, learning_runs
    rows = [learning_row("cartpole", [5.0, 6.0]), learning_row("cartpole", [150.0]),
            learning_row("cartpole", [0.0, 320.5])]
    rows[1]["runs"][0]["seed"] = 1                      # `--seeds 1` run as its own command
    rows[2]["runs"] = rows[2]["runs"][1:]               # ... then `--seeds 1` again: the newest wins
    rows[2]["runs"][0]["seed"] = 2
    write(tmp_path, "learning", rows[0])                # another commit: not mixed in
    with open(tmp_path / "learning.jsonl", "a") as f:
        for row in rows[1:]:
            f.write(json.dumps({"suite": "learning", "commit": "def5678", "command": "c", **row}) + "\n")
    (row, runs, same), = learning_runs(tmp_path).values()
    assert len(same) == 2                               # both rows of that commit, for their commands
    assert row["commit"] == "def5678" and [(r["seed"], r["final_return"]) for r in runs] == [(1, 150.0), (2, 320.5)]
    assert "| cartpole | small | 2,000 | 100 | 2 | 235.2 |" in report(tmp_path)  # median of the two seeds
    # DMC curves count frames: recorded per run, or read from an older row's overrides
    dmc = {"task": "dmc-cartpole-swingup", "overrides": {"env.kwargs": '{"action_repeat": 8}'}}
    assert frames_per_step(dmc, {}) == 8 and frames_per_step(dmc, {"frames_per_step": 4}) == 4
    assert frames_per_step({"task": "dmc-reacher-easy", "overrides": {}}, {}) == 2
    assert frames_per_step({"task": "cartpole", "overrides": {}}, {}) == 1


def test_gpu_check_and_update_profile_rows_are_reported(tmp_path):
    machine = {"cuda": "NVIDIA H200", "torch": "2.11.0+cu130"}
    write(tmp_path, "gpu", {"machine": machine, "total_s": 315.0, "failures": 0, "timings": [
        {"preset": "small", "variant": "bf16", "batch": 16, "length": 32, "params": 451718, "ms_per_update": 121.7,
         "updates_per_s": 8.2, "max_memory_allocated_mb": 106.0},
        {"preset": "large", "variant": "bf16+compile", "skipped": "time budget 280 s spent"}],
        "train_runs": [{"preset": "small", "steps": 2000, "extra": "", "returncode": 0, "wall_s": 61.0, "ups": 9.5,
                        "fps": 38.0},
                       {"preset": "small", "steps": 1500, "extra": "--replay.prefetch off",
                        "skipped": "time budget 150 s spent"}],
        "planning": [{"samples": 256, "horizon": 5, "iterations": 3, "ms_per_decision": 21.3}]})
    write(tmp_path, "update_profile", {"preset": "small", "device": "cuda", "precision": "bf16", "compile": "none",
                                       "machine": machine, "ms_per_update": 142.7, "aten_ops": 15373,
                                       "kernel_launches": 5303, "syncs": 28, "device_ms": 21.05, "device_busy": 0.09})
    write(tmp_path, "update_profile", {"preset": "small", "device": "cuda", "precision": "float32", "compile": "none",
                                       "cuda_graphs": True, "machine": machine, "ms_per_update": 28.93, "aten_ops": 491,
                                       "kernel_launches": 67, "syncs": 12, "device_ms": 21.45, "device_busy": 0.596})
    text = report(tmp_path)
    assert "GPU: one update per preset (NVIDIA H200" in text
    assert "| small | bf16 | 16 x 32 | 451,718 | 121.7 | 8.2 | 106 |" in text
    assert "| large | bf16+compile | – | time budget 280 s spent |" in text
    assert "| --preset small --steps 2000 | 0 | 61 | 9.5 | 38.0 |" in text
    assert "| --preset small --steps 1500 --replay.prefetch off | time budget 150 s spent |" in text
    assert "21.3 ms/decision" in text
    assert "| small | NVIDIA H200 | bf16 | none | 142.7 | 15,373 | 5,303 | 28 | 21.1 | 9% | abc1234 |" in text
    assert "| small | NVIDIA H200 | float32 | none + CUDA graphs | 28.9 | 491 | 67 | 12 | 21.4 | 60% | abc1234 |" in text


def test_noise_reach_rows_are_reported(tmp_path):
    for kind, share in (("white", 0.025), ("pink", 0.075)):
        write(tmp_path, "noise_reach", {"env": "worldmodel/dmc-pendulum-swingup-v0", "kind": kind, "std": 1.0,
                                        "episodes": 40, "share_rewarded": share, "mean_return": 1.5, "max_return": 61.0})
    text = report(tmp_path)
    assert "| worldmodel/dmc-pendulum-swingup-v0 | white | 1.00 | 40 | 0.03 | 1.5 | 61.0 |" in text
    assert "| worldmodel/dmc-pendulum-swingup-v0 | pink | 1.00 | 40 | 0.07 | 1.5 | 61.0 |" in text
