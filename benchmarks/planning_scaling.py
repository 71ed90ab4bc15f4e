"""Compute scaling of latent MPC: return of a trained run against the planning budget.

  python -m benchmarks.planning_scaling --run RUN --budgets 64x1x5 256x3x5 1024x3x10 --episodes 5

Each budget is SAMPLESxITERATIONSxHORIZON; the same checkpoint is evaluated with CEM (or
--planner mppi) at every budget, after the learned actor alone as the reference row. Prints
a table with the mean return and the wall time per decision (one batched `act` over the
--episodes envs), and writes the curve as a PNG (default <run>/planning_scaling.png).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def parse_budget(text: str) -> tuple[int, int, int]:
    try:
        samples, iterations, horizon = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"error: budget '{text}' must look like SAMPLESxITERATIONSxHORIZON, e.g. 256x3x5") from None
    if min(samples, iterations, horizon) <= 0:
        raise SystemExit(f"error: budget '{text}' needs positive numbers")
    return samples, iterations, horizon


def evaluate_budget(run: str, overrides: dict[str, Any], episodes: int, seed: int,
                    shield: str | None) -> dict[str, Any]:
    """Evaluate one planner setting; returns the eval result plus `ms_per_decision`."""
    from worldmodel.api import _run_config, load
    from worldmodel.trainer import env_factory, evaluate
    overrides = dict(overrides)
    if shield == "off":
        overrides["shield.mode"] = "off"  # no veto, no filter; the model keeps its heads
    cfg = _run_config(run, overrides)
    agent = load(run, overrides=overrides)
    act, times = agent.planner.act, []

    def timed(*args: Any, **kwargs: Any):
        start = time.perf_counter()
        out = act(*args, **kwargs)
        times.append(time.perf_counter() - start)
        return out

    agent.planner.act = timed  # instance attribute: times every decision of this agent only
    rules = cfg.shield.rules if cfg.shield.mode == "on" else ""
    result = evaluate(agent, env_factory(cfg), episodes, seed=seed, shield_rules=rules)
    result["ms_per_decision"] = 1e3 * sum(times) / max(len(times), 1)
    result["decisions"] = len(times)
    return result


def plot(rows: list[dict[str, Any]], out: Path, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    mpc = [r for r in rows if r["planner"] != "actor"]
    fig, ax = plt.subplots(figsize=(6, 4))
    x = [r["imagined_steps"] for r in mpc]
    ax.errorbar(x, [r["return_mean"] for r in mpc], yerr=[r["return_std"] for r in mpc], marker="o",
                capsize=3, label=mpc[0]["planner"] if mpc else "mpc")
    for r in mpc:
        ax.annotate(f"{r['budget']}\n{r['ms_per_decision']:.0f} ms", (r["imagined_steps"], r["return_mean"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=7)
    for r in rows:
        if r["planner"] == "actor":
            ax.axhline(r["return_mean"], color="gray", linestyle="--", label="actor (no planning)")
    ax.set_xscale("log")
    ax.set_xlabel("imagined steps per decision (samples x iterations x horizon)")
    ax.set_ylabel("episode return")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.planning_scaling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run directory of a trained agent")
    parser.add_argument("--budgets", nargs="+", default=["64x1x5", "256x3x5", "1024x3x10"],
                        help="SAMPLESxITERATIONSxHORIZON, one per point")
    parser.add_argument("--episodes", type=int, default=5, help="episodes per budget (run in parallel)")
    parser.add_argument("--planner", choices=["cem", "mppi"], default="cem")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--shield", choices=["on", "off"], default=None,
                        help="evaluate with the run's rules on or off (default: as trained)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more overrides for every row, e.g. planner.latent=mode")
    parser.add_argument("--no-actor", action="store_true", help="skip the actor-only reference row")
    parser.add_argument("--out", default=None, help="PNG (default: <run>/planning_scaling.png)")
    parser.add_argument("--record", action="store_true", help="append to benchmarks/results/planning_scaling.jsonl")
    args = parser.parse_args(argv)
    budgets = [parse_budget(b) for b in args.budgets]
    if not (Path(args.run) / "config.yaml").exists():
        print(f"error: {args.run} is not a run directory (no config.yaml)", file=sys.stderr)
        return 2
    extra = {}
    for kv in args.set:
        if "=" not in kv:
            print(f"error: --set {kv!r} must look like key=value, e.g. planner.latent=mode", file=sys.stderr)
            return 2
        key, value = kv.split("=", 1)
        extra[key] = value
    settings: list[tuple[str, dict[str, Any]]] = [] if args.no_actor else [("actor", {**extra, "planner.kind": "actor"})]
    for samples, iterations, horizon in budgets:
        settings.append((f"{samples}x{iterations}x{horizon}", {
            **extra, "planner.kind": args.planner, "planner.samples": samples,
            "planner.iterations": iterations, "planner.horizon": horizon}))
    rows = []
    print(f"{'planner':<8} {'budget':<12} {'imagined':>9} {'return':>16} {'ms/decision':>12}")
    for budget, overrides in settings:
        result = evaluate_budget(args.run, overrides, args.episodes, args.seed, args.shield)
        steps = 0 if budget == "actor" else (overrides["planner.samples"] * overrides["planner.iterations"]
                                             * overrides["planner.horizon"])
        row = {"planner": overrides["planner.kind"], "budget": budget, "imagined_steps": steps,
               "episodes": args.episodes, **{k: v for k, v in result.items() if k != "returns"}}
        rows.append(row)
        print(f"{row['planner']:<8} {budget:<12} {steps:>9} "
              f"{row['return_mean']:>8.1f} +- {row['return_std']:<5.1f} {row['ms_per_decision']:>12.1f}",
              flush=True)
    out = Path(args.out) if args.out else Path(args.run) / "planning_scaling.png"
    print(f"wrote {plot(rows, out, f'{args.run}: return vs planning budget ({args.episodes} episodes)')}")
    out.with_suffix(".json").write_text(json.dumps({"run": str(args.run), "rows": rows}, indent=1))
    if args.record:
        from benchmarks.common import record
        record("planning_scaling", {"run": str(args.run), "rows": rows}, " ".join(sys.argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
