"""Markdown tables of every stored benchmark suite (the PNG learning curves: benchmarks/curves.py).

  python -m benchmarks report

Reads benchmarks/results/<suite>.jsonl for each suite present (learning, speed, speed_grid,
gather_ab, compile_ab, plan_speed, sheeprl, shield, scaling, kill_resume, backbones, planning_scaling, memory_probe,
gpu, update_profile, noise_reach) and keeps the
newest row per setting; where a row holds several seeds the table gives their median (for
learning, the newest run of each seed recorded at that row's commit). Under
each table: the commands that produced its rows.
"""
from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.common import load

Row = dict[str, Any]


def fmt(v: Any, spec: str = ".1f") -> str:
    return "–" if v is None else format(v, spec)


def median(values: Iterable[Any]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def newest(rows: list[Row], key: Callable[[Row], Any], sort: bool = False) -> dict[Any, Row]:
    """The last row (rows are appended oldest first) for each key, in the order the keys
    first appeared (or sorted)."""
    latest: dict[Any, Row] = {}
    for row in rows:
        latest[key(row)] = row
    return dict(sorted(latest.items(), key=lambda kv: str(kv[0]))) if sort else latest


def _table(title: str, header: list[str], body: list[list[str]], rows: Iterable[Row], note: str = "") -> list[str]:
    lines = [f"### {title}", ""]
    if note:
        lines += [note, ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    commands = list(dict.fromkeys(r["command"] for r in rows if r.get("command")))
    lines += [""] + [f"`{c}`  " for c in commands] + [""]
    return lines


def _overrides(row: Row) -> str:
    return " ".join(f"{k}={v}" for k, v in (row.get("overrides") or {}).items())


def _learning_key(row: Row) -> tuple[str, tuple[str, ...], str]:
    return row["task"], tuple(row["presets"]), json.dumps(row.get("overrides") or {}, sort_keys=True)


def learning_runs(root: Path) -> dict[Any, tuple[Row, list[Row], list[Row]]]:
    """Per task, presets and overrides: the newest row, the newest run of each seed among the
    rows of that setting recorded at the newest row's commit (seeds run as separate commands
    side by side land in separate rows), in seed order, and those rows."""
    rows = load("learning", root)
    latest = newest(rows, _learning_key, sort=True)
    out = {}
    for key, row in latest.items():
        same = [old for old in rows if _learning_key(old) == key and old.get("commit") == row.get("commit")]
        seeds = {r["seed"]: r for old in same for r in old.get("runs", [])}
        out[key] = (row, [seeds[s] for s in sorted(seeds)], same)
    return out


def frames_per_step(row: Row, run: Row) -> int:
    """Simulator frames per env step of a run: recorded since DMC budgets count frames; for
    older rows, from the row's overrides (the DMC adapter's default repeat otherwise)."""
    if run.get("frames_per_step"):
        return int(run["frames_per_step"])
    from benchmarks.learning import TASKS, frames_per_step as from_overrides
    env_id = TASKS[row["task"]][0] if row["task"] in TASKS else ""
    return from_overrides(env_id, row.get("overrides") or {})


# -- one section per suite -----------------------------------------------------------------------
def learning(root: Path) -> list[str]:
    from benchmarks.learning import summarize
    latest = learning_runs(root)
    body = []
    for (task, presets, _), (row, runs, _) in latest.items():
        s = summarize(runs) if runs else row["summary"]
        extra = _overrides(row)
        steps = max((r["curve"][-1][0] for r in runs if r.get("curve")), default=None)
        target = runs[0].get("target") if runs else None
        body.append([task, " ".join(presets) + (f" + {extra}" if extra else ""), fmt(steps, ","), fmt(target, "g"),
                     str(s["seeds"]), fmt(s["median_final_return"]), fmt(s["median_steps_to_target"], ","),
                     f"{s['seeds_reaching_target']}/{s['seeds']}", fmt(s["median_wall_s"] / 60), row["commit"]])
    return _table("Learning (medians over seeds)", [
        "task", "preset (+ overrides)", "env steps", "target", "seeds", "median final eval return",
        "median env steps to target", "seeds at target", "median wall (min)", "commit"], body,
        [source for _, _, same in latest.values() for source in same])


def speed(root: Path) -> list[str]:
    # a compiled update (`--set run.compile=true`) is its own row, next to the eager one
    latest = newest(load("speed", root), lambda r: (r["preset"], r.get("env", "CartPole-v1"), r["threads"],
                                                      bool(r.get("compiled"))))
    body = [[r["preset"], r.get("env", "CartPole-v1"), str(r["threads"]), "yes" if r.get("compiled") else "no",
             f"{r['params']:,}", f"{r['batch']} x {r['length']}",
             fmt(r["ms_per_update"]), fmt(r["updates_per_s"], ".2f"), fmt(r["gflop_per_update"], ".2f"),
             fmt(r["gflops_achieved"]), f"{100 * r['gflops_achieved'] / r['matmul_peak_gflops']:.0f}%", r["commit"]]
            for r in latest.values()]
    return _table("Speed (synthetic batch, one update = world model + actor-critic; median of the repeats)", [
        "preset", "env", "threads", "compiled", "params", "batch x length", "ms/update", "updates/s",
        "GFLOP/update", "GFLOP/s", "% of matmul peak", "commit"], body, latest.values(),
        note="Target (issue 8): a `small` update within 50 ms on 2 cores.")


def speed_grid(root: Path) -> list[str]:
    latest = newest([r for r in load("speed_grid", root) if "error" not in r],
                    lambda r: (r["preset"], r["threads"], r["batch"], r["length"]))
    body = [[r["preset"], str(r["threads"]), f"{r['params']:,}", str(r["batch"]), str(r["length"]),
             fmt(r["ms_per_update"]), fmt(r["updates_per_s"], ".2f"), fmt(r["update_mb"], ".0f"),
             fmt(r["peak_rss_mb"], ".0f"), r["commit"]] for r in latest.values()]
    return _table("Time and memory per update against batch, length and model size", [
        "preset", "threads", "params", "batch", "length", "ms/update (median)", "updates/s",
        "update peak MB", "process peak RSS MB", "commit"], body, latest.values(),
        note="Memory: ru_maxrss of a fresh process per point; update peak = its growth over the first two updates.")


def plan_speed(root: Path) -> list[str]:
    from benchmarks.plan_speed import TARGET_MS, budget
    rows = load("plan_speed", root)
    # `--with-rules` adds rows of the rules' overhead (with "ms_none"), without decision times,
    # ... `--prior` rows of the policy prior's cost (with "ms_prior_off"), `--compile` rows
    # of compiled against eager decisions (with "ms_compiled")
    latest = newest([r for r in rows if not {"ms_none", "ms_prior_off", "ms_compiled"} & r.keys()],
                    lambda r: (r["env"], tuple(r["presets"]), r["planner"], budget(r), r["threads"]))
    body = [[r["env"], " ".join(r["presets"]), r["planner"], budget(r), str(r["threads"]), fmt(r["ms_per_decision"]),
             fmt(r["ms_p90"]), fmt(r["planner_ms"]), fmt(r.get("cpu_ms_per_decision")), fmt(r["decisions_per_s"]),
             str(r["decisions"]), r["commit"]]
            for r in latest.values()]
    lines = _table("Decision time, one env (`Agent.act`, greedy)", [
        "env", "preset", "planner", "N x H x iterations", "threads", "ms/decision (median)", "p90 ms",
        "planner ms (median)", "CPU ms (median)", "decisions/s", "decisions timed", "commit"], body, latest.values(),
        note=f"Target (issue 8): MPPI 256 x 5 x 3 within {TARGET_MS:g} ms per decision.")
    rules = newest([r for r in rows if "ms_none" in r], lambda r: (r["env"], r["rules"], budget(r), r["threads"]))
    if rules:
        body = [[r["env"], r["rules"], budget(r), fmt(r["ms_none"]), fmt(r["ms_objective"]), fmt(r["ms_shield"]),
                 f"{100 * r['shield_overhead']:+.1f}%", f"{100 * r['rules_overhead']:+.1f}%",
                 f"{r['rounds']} x {r['per_round']}", r["commit"]] for r in rules.values()]
        lines += _table("The rules' cost in an MPC decision (interleaved, median ms)", [
            "env", "rules", "N x H x iterations", "no rules", "+ cost penalty", "+ shield in imagination",
            "the shield adds", "all rule work adds", "rounds x decisions", "commit"], body, rules.values(),
            note="Target (issue 4): the shield adds at most 10% to a planning step.")
    prior = newest([r for r in rows if "ms_prior_off" in r],
                   lambda r: (r["env"], r["planner"], r["prior"], budget(r), r["threads"]))
    if prior:
        body = [[r["env"], r["planner"], f"{r['prior']:g}", budget(r), fmt(r["ms_prior_off"]), fmt(r["ms_prior_on"]),
                 f"{100 * r['prior_overhead']:+.1f}%", f"{r['rounds']} x {r['per_round']}", r["commit"]]
                for r in prior.values()]
        lines += _table("The policy prior's cost in an MPC decision (interleaved, median ms)", [
            "env", "planner", "planner.prior", "N x H x iterations", "prior off", "prior on", "the prior adds",
            "rounds x decisions", "commit"], body, prior.values())
    compiled = newest([r for r in rows if "ms_compiled" in r], lambda r: (r["env"], r["planner"], budget(r), r["threads"]))
    if compiled:
        body = [[r["env"], r["planner"], budget(r), str(r["threads"]), fmt(r["ms_eager"]), fmt(r["ms_compiled"]),
                 f"{r['compile_speedup']:.2f}x", fmt(r["ms_compiled_onehot"]), f"{r['compile_s']:.0f}",
                 f"{r['rounds']} x {r['per_round']}", r["commit"]] for r in compiled.values()]
        lines += _table("`run.compile` in an MPC decision (interleaved, median ms)", [
            "env", "planner", "N x H x iterations", "threads", "eager", "compiled", "speed-up",
            "compiled, one-hot latent products", "compiling s", "rounds x decisions", "commit"], body,
            compiled.values())
    return lines


def sheeprl(root: Path) -> list[str]:
    from benchmarks.sheeprl.compare import tables
    rows = load("sheeprl", root)
    sp = next((r for r in reversed(rows) if r.get("speed")), None)
    e2e = next((r for r in reversed(rows) if r.get("e2e")), None)
    parts = [(sp, tables(sp["speed"], e2e["e2e"] if e2e is sp else []))] if sp else []
    if e2e and e2e is not sp:
        parts.append((e2e, tables(None, e2e["e2e"])))
    lines = ["### Side by side with SheepRL", ""]
    for row, text in parts:
        lines += [text, "", f"SheepRL {row.get('sheeprl_version')}, commit {row['commit']}: `{row['command']}`", ""]
    return lines


def shield(root: Path) -> list[str]:
    latest = newest(load("shield", root), lambda r: r["task"])
    body = []
    for task, row in latest.items():
        for mode in dict.fromkeys(r["mode"] for r in row["runs"]):
            runs = [r for r in row["runs"] if r["mode"] == mode]
            on = [r["eval_shield_on"] for r in runs]
            body.append([task, mode, str(len(runs)), fmt(median(r["steps"] for r in runs), ",.0f"),
                         fmt(median(r["train_executed_violations"] for r in runs), "g"),
                         fmt(median(r["train_vetoes"] for r in runs), "g"),
                         f"{fmt(median(r['veto_rate_first10'] for r in runs), '.3f')} / "
                         f"{fmt(median(r['veto_rate_last10'] for r in runs), '.3f')}",
                         fmt(median(e["success"] for e in on), ".2f"),
                         fmt(median(e["executed_violations"] for e in on), "g"),
                         fmt(median(r["eval_shield_off"]["success"] for r in runs), ".2f"), row["commit"]])
    return _table("The shield, on vs off in training (medians over seeds)", [
        "task", "training shield", "seeds", "env steps", "executed violations in training", "vetoes",
        "veto rate first / last 10%", "eval with shield: success", "eval with shield: violations",
        "eval without shield: success", "commit"], body, latest.values())


def scaling(root: Path) -> list[str]:
    latest = newest(load("scaling", root), lambda r: (r["preset"], r["steps"], r["procs"]))
    body = [[str(r["procs"]), r["preset"], f"{r['steps']:,}", fmt(r["env_steps_per_s"]), fmt(r["updates_per_s"], ".2f"),
             str(r["updates"]), r["commit"]] for r in latest.values()]
    return _table("Data-parallel training (torchrun)", [
        "processes", "preset", "env steps", "env steps/s", "updates/s", "updates", "commit"], body, latest.values())


def gather_ab(root: Path) -> list[str]:
    # `compiled` rows (gather-ab --compiled) time an agent compiled as run.compile does
    work = lambda r: r["work"] + (", compiled" if r.get("compiled") else "")  # noqa: E731
    latest = newest(load("gather_ab", root), lambda r: (r["preset"], work(r), r["env"], r["threads"]))
    body = [[r["preset"], work(r), r["env"], str(r["threads"]), fmt(r["cpu_ms_dense"]), fmt(r["cpu_ms_gather"]),
             fmt(r["speedup"], ".2f") + "x", str(r["rounds"]), r["commit"]] for r in latest.values()]
    return _table("The heads' latent gather against the one-hot matmul (CPU ms, interleaved)", [
        "preset", "work", "env", "threads", "one-hot matmul", "gather", "speed-up", "rounds", "commit"],
        body, latest.values())


def compile_ab(root: Path) -> list[str]:
    latest = newest(load("compile_ab", root), lambda r: (r["preset"], r["env"], r["threads"]))
    body = [[r["preset"], r["env"], str(r["threads"]), fmt(r["cpu_ms_eager"]), fmt(r["cpu_ms_compiled"]),
             fmt(r["speedup"], ".2f") + "x", fmt(r["compile_s"], ".0f"), str(r["rounds"]), r["commit"]]
            for r in latest.values()]
    return _table("run.compile on the CPU: one update, eager against compiled (CPU ms, interleaved)", [
        "preset", "env", "threads", "eager", "compiled", "speed-up", "compile s", "rounds", "commit"],
        body, latest.values())


def kill_resume(root: Path) -> list[str]:
    latest = newest(load("kill_resume", root), lambda r: (tuple(r["preset"]), r["steps"], r["cycles"]))
    body = []
    for r in latest.values():
        k, u = r["killed"], r["uninterrupted"]
        body.append([" ".join(r["preset"]), f"{r['steps']:,}", f"{r['kills']} / {r['starts']}",
                     f"{k['lost_steps']} / {k['duplicated_steps']}",
                     f"{k['lost_episodes']} / {k['duplicated_episodes']}",
                     str(k["cut_episodes"]), f"{k['curve_duplicates']} / {k['curve_rewinds']}",
                     f"{fmt(k['final_return'])} / {fmt(u['final_return'])}",
                     f"{fmt(k.get('eval_return'))} / {fmt(u.get('eval_return'))}",
                     f"{r['seconds']:.0f} / {r['uninterrupted_seconds']:.0f}", r["commit"]])
    return _table("Kill -9 / resume", [
        "preset", "env steps", "kills / starts", "lost / duplicated steps", "lost / duplicated episodes",
        "episodes cut by a kill", "curve duplicates / rewinds", "last-10 return killed / uninterrupted",
        "eval return killed / uninterrupted", "wall s killed / uninterrupted", "commit"], body, latest.values())


def backbones(root: Path) -> list[str]:
    rows = load("backbones", root)
    lines: list[str] = []
    timing = next((r for r in reversed(rows) if r.get("kind") == "timing"), None)
    if timing:
        body = [[p["backbone"], str(p["T"]), str(p["batch"]), fmt(p["ms_per_update"]), fmt(p["us_per_step"]),
                 fmt(p["peak_update_mb"], ".0f")] for p in timing["rows"] if "error" not in p]
        lines += _table(f"Backbones: one world-model update (preset {' '.join(timing['presets'])}, "
                        f"commit {timing['commit']})",
                        ["backbone", "T", "batch", "ms/update", "us/step", "peak MB of the update"], body, [timing])
    ratio = next((r for r in reversed(rows) if r.get("kind") == "ratios"), None)
    if ratio:
        body = [[p["backbone"], str(p["T"]), str(p["batch"]), fmt(p["cpu_ms_per_update"]),
                 "" if p["of_gru"] is None else f"{p['of_gru']:.2f}x",
                 "" if p["of_gru"] is None else f"{1 / p['of_gru']:.2f}x"] for p in ratio["rows"]]
        lines += _table(f"Backbones: update time against the GRU's, in one process, in turn (commit {ratio['commit']})",
                        ["backbone", "T", "batch", "CPU ms/update (median)", "of the GRU's", "faster than the GRU"],
                        body, [ratio], note="Target (issue 10): ssm or hybrid at least 2x faster than gru at T = 256.")
    learned = next((r for r in reversed(rows) if r.get("kind") == "learn"), None)
    if learned:
        keys = dict.fromkeys((p["backbone"], p["distance"]) for p in learned["runs"])
        body = []
        for kind, distance in keys:
            runs = [p for p in learned["runs"] if (p["backbone"], p["distance"]) == (kind, distance)]
            body.append([kind, str(distance), str(len(runs)), fmt(runs[0]["steps"], ","),
                         fmt(median(p["eval_return"] for p in runs), ".2f"),
                         fmt(median(p["wall_s"] for p in runs), ".0f")])
        lines += _table(f"Backbones: CueMemory (medians over seeds, commit {learned['commit']})",
                        ["backbone", "cue distance", "seeds", "env steps", "median eval return", "median wall s"],
                        body, [learned])
    return lines


def planning_scaling(root: Path) -> list[str]:
    latest = newest(load("planning_scaling", root), lambda r: r["run"])
    body = [[run, p["planner"], p["budget"], str(p["imagined_steps"]), fmt(p["return_mean"]), fmt(p.get("return_std")),
             fmt(p["ms_per_decision"]), row["commit"]] for run, row in latest.items() for p in row["rows"]]
    return _table("Return against planning budget (one trained run)", [
        "run", "planner", "budget", "imagined steps", "mean return", "std", "ms/decision", "commit"], body,
        latest.values())


def _probe_set(row: Row, probe: Row) -> str:
    """The overrides (--set) of a memory-probe run `row`, a biased answer (--answer-p0) of one
    `probe` in it, and what a one-off script changed (`patched`): part of the key, so none of
    them replaces the plain probe's row."""
    parts = [f"{k}={v}" for k, v in (row.get("overrides") or {}).items()]
    if probe.get("answer_p0", 0.5) != 0.5:
        parts.append(f"answer P(0)={probe['answer_p0']}")
    if row.get("patched"):
        parts.append(f"one-off: {row['patched']}")
    return " ".join(parts)


def memory_probe(root: Path) -> list[str]:
    latest = newest([dict(p, command=row["command"], commit=row["commit"], set=_probe_set(row, p))
                     for row in load("memory_probe", root) for p in row["rows"]],
                    lambda p: (p.get("readout", "world-model"), p["set"], p["reward"], p["distance"], p["backbone"],
                               p["seed"]))
    body = [[p.get("readout", "world-model"), p["set"], p["reward"], str(p["distance"]), p["backbone"], str(p["seed"]),
             f"{p['reached']:,}" if p["reached"] else f"not within {p['updates']:,}",
             fmt(p["final_accuracy"], ".2f"), p["commit"]] for p in latest.values()]
    return _table("Memory probe: updates until the cue-dependent reward is predicted", [
        "trained", "overrides", "reward", "cue distance", "backbone", "seed", "updates to 95% sign accuracy",
        "final accuracy", "commit"], body, latest.values())


def gpu(root: Path) -> list[str]:
    """The newest `benchmarks/gpu_check.sh` row: per-preset updates, training runs, planning."""
    r = load("gpu", root)[-1]
    gpu_name = r["machine"].get("cuda") or "CPU dry run"
    lines = []
    body = []
    for t in r["timings"]:
        shape = f"{t['batch']} x {t['length']}" if t.get("batch") else "–"
        if "ms_per_update" not in t:
            body.append([t["preset"], t["variant"], shape, t.get("skipped") or t.get("error", "")[:80], "", "", ""])
            continue
        body.append([t["preset"], t["variant"], shape, f"{t['params']:,}", fmt(t["ms_per_update"]),
                     fmt(t["updates_per_s"]), fmt(t.get("max_memory_allocated_mb"), ".0f")])
    lines += _table(f"GPU: one update per preset ({gpu_name}, torch {r['machine']['torch']})", [
        "preset", "variant", "batch x length", "params", "ms/update (median)", "updates/s", "max GPU memory MB"],
        body, [r], note=f"Commit {r['commit']}; {r['total_s']:.0f} s in all, {r['failures']} failures.")
    body = [[f"--preset {t['preset']} --steps {t['steps']} {t['extra']}".strip(), str(t["returncode"]),
             fmt(t["wall_s"], ".0f"), fmt(t["ups"]), fmt(t["fps"])] if "skipped" not in t else
            [f"--preset {t['preset']} --steps {t['steps']} {t['extra']}".strip(), t["skipped"], "", "", ""]
            for t in r["train_runs"]]
    body += [[f"MPPI {p['samples']} x {p['horizon']} x {p['iterations']} (Pendulum-v1, small)",
              "0" if "error" not in p else "error", "", f"{fmt(p.get('ms_per_decision'))} ms/decision", ""]
             for p in r["planning"]]
    lines += _table(f"GPU: end-to-end training and planning ({gpu_name})", [
        "run", "exit", "wall (s)", "updates/s", "env steps/s"], body, [])
    return lines


def update_profile(root: Path) -> list[str]:
    latest = newest(load("update_profile", root),
                    lambda r: (r["preset"], r["device"], r["precision"], r["compile"], r.get("cuda_graphs", False),
                               r["machine"].get("cuda")))
    body = [[r["preset"], r["machine"].get("cuda") or "CPU", r["precision"],
             r["compile"] + (" + CUDA graphs" if r.get("cuda_graphs") else ""), fmt(r["ms_per_update"]),
             f"{r['aten_ops']:,}", f"{r['kernel_launches']:,}", str(r["syncs"]), fmt(r["device_ms"]),
             f"{100 * r['device_busy']:.0f}%", r["commit"]] for r in latest.values()]
    return _table("Where one update's time goes (one profiled update after the timed ones)", [
        "preset", "device", "precision", "compile / graphs", "ms/update (median)", "aten ops", "kernel launches",
        "syncs", "device ms", "device busy", "commit"], body, latest.values(),
        note="Device busy = the kernels' summed time over the profiled update's wall time.")


def noise_reach(root: Path) -> list[str]:
    latest = newest(load("noise_reach", root), lambda r: (r["env"], r["std"], r["kind"]))
    body = [[r["env"], r["kind"], fmt(r["std"], ".2f"), str(r["episodes"]), fmt(r["share_rewarded"], ".2f"),
             fmt(r["mean_return"]), fmt(r["max_return"])] for r in latest.values()]
    return _table("Does action noise alone find a sparse reward? (no agent)", [
        "env", "noise", "std", "episodes", "share with any reward", "mean return", "max return"], body,
        latest.values())


SECTIONS: dict[str, Callable[[Path], list[str]]] = {
    "learning": learning, "speed": speed, "speed_grid": speed_grid, "gather_ab": gather_ab, "compile_ab": compile_ab,
    "plan_speed": plan_speed,
    "sheeprl": sheeprl,
    "shield": shield, "scaling": scaling, "kill_resume": kill_resume, "backbones": backbones,
    "planning_scaling": planning_scaling, "memory_probe": memory_probe, "gpu": gpu, "update_profile": update_profile,
    "noise_reach": noise_reach}


def report(root: Path | None = None) -> str:
    """Markdown for every suite with a results file under `root` (default benchmarks/results)."""
    root = root or common.RESULTS
    lines: list[str] = []
    for suite, section in SECTIONS.items():
        if not (root / f"{suite}.jsonl").exists():
            continue
        try:
            lines += section(root)
        except (KeyError, TypeError, IndexError) as exc:  # a row from an older format of that suite
            lines += [f"### {suite}", "", f"(not shown: a row lacks {exc!r}; rerun the suite)", ""]
    return "\n".join(lines).rstrip() + "\n" if lines else "no results yet under " + str(root) + "\n"
