"""Shield benchmark: the same task trained with the shield on and off (off = the rules
judge every proposal but never veto, so violations are counted, not prevented).

  python -m benchmarks.shield --task minigrid-lava --seeds 0 1 2
  python -m benchmarks.shield --task cartpole-track --seeds 0 --eval-episodes 200

Reports per mode: executed violations in training and in evaluation, evaluation return
and success rate, and the veto rate in the first vs the last 10% of training."""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TASKS = {
    # name: (env id, rules, env steps, success threshold on the episode return)
    "minigrid-lava": ("MiniGrid-LavaGapS5-v0", "minigrid_lava", 20000, 0.0),
    "cartpole-track": ("CartPole-v1", "cartpole_track", 15000, 475.0),
    "corridor": ("worldmodel/SafeCorridor-v0", "safe_corridor", 10000, 0.0),
}


def veto_rates(metrics: list[dict[str, Any]], steps: int) -> tuple[float, float]:
    rows = [m for m in metrics if "shield/veto_rate" in m]
    first = [m["shield/veto_rate"] for m in rows if m["step"] <= 0.1 * steps] or [rows[0]["shield/veto_rate"]]
    last = [m["shield/veto_rate"] for m in rows if m["step"] >= 0.9 * steps] or [rows[-1]["shield/veto_rate"]]
    return statistics.mean(first), statistics.mean(last)


def run(task: str, seed: int, mode: str, eval_episodes: int, steps: int | None, presets: list[str],
        keep: str | None = None, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """`keep`: leave the run directory in <keep>/<task>-<mode>-seed<seed> (default: deleted)."""
    from benchmarks.common import train
    from worldmodel.api import evaluate_run
    from worldmodel.config import ConfigError
    env_id, rules, default_steps, success = TASKS[task]
    steps = steps or default_steps
    with tempfile.TemporaryDirectory() as tmp:
        logdir = Path(keep) / f"{task}-{mode}-seed{seed}" if keep else Path(tmp) / "run"
        t0 = time.time()
        train(env=env_id, presets=presets, overrides={
            "run.steps": steps, "run.seed": seed, "run.logdir": str(logdir), "run.progress": False,
            "run.threads": 1, "run.video_every": 0, "shield.rules": rules, "shield.mode": mode, **(extra or {})})
        wall = time.time() - t0
        metrics = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
        shielded = evaluate_run(logdir, episodes=eval_episodes, shield="on", seed=seed + 777)
        bare = evaluate_run(logdir, episodes=eval_episodes, shield="off", seed=seed + 777)
        # no veto, but the agent acts under its learned verdicts (discrete): has it learned the rules?
        try:
            own = evaluate_run(logdir, episodes=eval_episodes, shield="learned", seed=seed + 777)
        except ConfigError:  # no verdict head (continuous actions)
            own = None
    first, last = veto_rates(metrics, steps)
    risk = [m for m in metrics if "shield/proposal_risk" in m]  # veto risk of the agent's own proposal
    risk_first = statistics.mean(m["shield/proposal_risk"] for m in risk[: max(1, len(risk) // 10)]) if risk else None
    risk_last = statistics.mean(m["shield/proposal_risk"] for m in risk[-max(1, len(risk) // 10):]) if risk else None
    rate = lambda r: sum(x > success for x in r["returns"]) / len(r["returns"])  # noqa: E731
    return {"task": task, "seed": seed, "mode": mode, "steps": steps, "wall_s": wall,
            "train_executed_violations": metrics[-1]["shield/executed_violations"],
            "train_vetoes": metrics[-1]["shield/vetoes"], "veto_rate_first10": first, "veto_rate_last10": last,
            "proposal_risk_first10": risk_first, "proposal_risk_last10": risk_last,
            "eval_shield_on": {"return": shielded["return_mean"], "success": rate(shielded),
                               "executed_violations": shielded["executed_violations"]},
            "eval_shield_off": {"return": bare["return_mean"], "success": rate(bare),
                                "executed_violations": bare["executed_violations"]},
            "eval_shield_learned": None if own is None else {
                "return": own["return_mean"], "success": rate(own), "executed_violations": own["executed_violations"]}}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = "python -m benchmarks.shield " + " ".join(shlex.quote(a) for a in argv)
    p = argparse.ArgumentParser(prog="python -m benchmarks.shield")
    p.add_argument("--task", choices=list(TASKS), default="corridor")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--modes", nargs="+", default=["on", "off"])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--preset", nargs="+", default=["small"])
    p.add_argument("--keep", default=None, help="leave each run directory in KEEP/<task>-<mode>-seed<N>")
    p.add_argument("--set", nargs="*", default=[], help="more overrides: key=value")
    args = p.parse_args(argv)
    from benchmarks.common import record
    rows = []
    for mode in args.modes:
        for seed in args.seeds:
            r = run(args.task, seed, mode, args.eval_episodes, args.steps, args.preset, args.keep,
                    dict(kv.split("=", 1) for kv in args.set))
            rows.append(r)
            print(f"{args.task} shield {mode} seed {seed}: train violations {r['train_executed_violations']} "
                  f"(vetoes {r['train_vetoes']}), veto rate first/last 10% {r['veto_rate_first10']:.4f}/"
                  f"{r['veto_rate_last10']:.4f}, proposal risk (the agent's own proposal) first/last "
                  f"{r['proposal_risk_first10'] if r['proposal_risk_first10'] is None else round(r['proposal_risk_first10'], 4)}/"
                  f"{r['proposal_risk_last10'] if r['proposal_risk_last10'] is None else round(r['proposal_risk_last10'], 4)}; eval shield on: return {r['eval_shield_on']['return']:.2f}, "
                  f"success {r['eval_shield_on']['success']:.2f}, violations {r['eval_shield_on']['executed_violations']}; "
                  f"eval shield off: return {r['eval_shield_off']['return']:.2f}, success "
                  f"{r['eval_shield_off']['success']:.2f}, violations {r['eval_shield_off']['executed_violations']}; "
                  + ("" if r["eval_shield_learned"] is None else
                     f"eval learned verdicts (no veto): return {r['eval_shield_learned']['return']:.2f}, success "
                     f"{r['eval_shield_learned']['success']:.2f}, violations {r['eval_shield_learned']['executed_violations']}; ")
                  + f"{r['wall_s'] / 60:.1f} min", flush=True)
    record("shield", {"task": args.task, "overrides": dict(kv.split("=", 1) for kv in args.set), "runs": rows}, command)
    print(f"\nreproduce: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
