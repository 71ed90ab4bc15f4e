"""python -m benchmarks <command>

  learn --task cartpole|pendulum|cartpole-pixels [--seeds 0 1 2] [--preset small] [--eval-every 1000]
  speed [--presets debug small medium] [--threads 1] [--repeats 10]
  report                     markdown tables from benchmarks/results/*.jsonl

Every command prints its figures and the command line that reproduces them, and appends
the raw results (with commit, machine and versions) to benchmarks/results/<suite>.jsonl.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = "python -m benchmarks " + " ".join(shlex.quote(a) for a in argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("learn")
    p.add_argument("--task", default="cartpole")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--preset", nargs="+", default=["small"])
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", nargs="*", default=[], help="dotted overrides key=value")
    p.add_argument("--keep", default=None, help="leave each run directory in KEEP/<task>-seed<N>")
    p = sub.add_parser("speed")
    p.add_argument("--presets", nargs="+", default=["debug", "small", "medium"])
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    sub.add_parser("report")
    args = parser.parse_args(argv)
    from benchmarks.common import record
    if args.cmd == "learn":
        from benchmarks.learning import run_seed, summarize
        overrides = dict(kv.split("=", 1) for kv in args.set)
        rows = []
        for seed in args.seeds:
            row = run_seed(args.task, seed, args.preset, overrides, args.eval_every, args.threads, args.keep)
            rows.append(row)
            print(f"{args.task} seed {seed}: final eval return {row['final_return']:.1f}, "
                  f"target {row['target']} reached at {row['steps_to_target']} env steps, "
                  f"wall {row['wall_s'] / 60:.1f} min, {row['updates']} updates")
        summary = summarize(rows)
        record("learning", {"task": args.task, "presets": args.preset, "overrides": overrides,
                            "summary": summary, "runs": rows}, command)
        print(f"{args.task}: median final return {summary['median_final_return']:.1f}, median steps to "
              f"target {summary['median_steps_to_target']}, median wall {summary['median_wall_s'] / 60:.1f} min "
              f"({summary['seeds_reaching_target']}/{summary['seeds']} seeds reached the target)")
    elif args.cmd == "speed":
        from benchmarks.speed import matmul_peak, time_updates
        peak = matmul_peak(args.threads)
        print(f"matmul peak, {args.threads} thread(s): {peak:.1f} GFLOP/s")
        print(f"{'preset':<8} {'params':>10} {'B x T':>8} {'ms/update':>10} {'updates/s':>10} "
              f"{'GFLOP/upd':>10} {'GFLOP/s':>8} {'% peak':>7}")
        for preset in args.presets:
            r = time_updates(preset, args.env, args.threads, args.repeats)
            r["matmul_peak_gflops"] = peak
            record("speed", r, command)
            print(f"{preset:<8} {r['params']:>10,} {r['batch']:>3} x {r['length']:<3} {r['ms_per_update']:>10.1f} "
                  f"{r['updates_per_s']:>10.2f} {r['gflop_per_update']:>10.2f} {r['gflops_achieved']:>8.1f} "
                  f"{100 * r['gflops_achieved'] / peak:>6.0f}%")
    elif args.cmd == "report":
        from benchmarks.report import report
        print(report())
    print(f"\nreproduce: {command}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
