"""python -m benchmarks <command>

  run --suite cpu-quick|cpu-full [--dry-run] [--from N]
                             a suite: the commands below in order (benchmarks/suites.py);
                             cpu-quick takes minutes, cpu-full hours; --dry-run lists them
  learn --task cartpole|pendulum|cartpole-pixels|dmc-cartpole-swingup|dmc-pendulum-swingup|dmc-reacher-easy|cue-8|cue-24
        [--seeds 0 1 2] [--preset small] [--eval-every 1000]
        [--steps N] [--target R] [--check] [--set key=value ...]
                             learning curves; --check exits 1 unless every seed reached the target
  speed [--presets debug small medium] [--threads 1] [--repeats 10] [--set run.compile=true]
                             time and FLOPs per update of each preset (benchmarks/speed.py)
  gather-ab [--presets small medium xs-matched] [--rounds 6] [--planner] [--compiled]
                             the heads' latent gather on against off, interleaved (benchmarks/speed.py)
  compile-ab [--presets small] [--env CartPole-v1 Pendulum-v1] [--threads 1] [--rounds 20]
                             run.compile on against off, interleaved (benchmarks/speed.py)
  speed-grid [--preset small] [--batches 8 16 32] [--lengths 16 32 64] [--presets debug small medium]
                             time and peak memory per update against batch, length and model size
  plan-speed [--preset small] [--planner mppi cem] [--samples 256 --horizon 5 --iterations 3]
             [--env Pendulum-v1 CartPole-v1] [--threads 1] [--decisions 50]
                             ms per MPC decision for one env (benchmarks/plan_speed.py)
  compare --against sheeprl [ARGS ...]
                             side by side with SheepRL: benchmarks/sheeprl/compare.py with ARGS
                             (needs `bash benchmarks/sheeprl/install.sh` once)
  report                     markdown tables of every suite in benchmarks/results/*.jsonl, and
                             PNG learning curves written next to them

Every command prints its figures and the command line that reproduces them, and appends
the raw results (with commit, machine and versions) to benchmarks/results/<suite>.jsonl.
The other benchmarks run as modules: python -m benchmarks.shield | scaling | kill_resume |
backbones | planning_scaling | noise_reach (see each file's docstring).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    from benchmarks.suites import SUITES
    p = sub.add_parser("run", help="run a suite of benchmarks in order")
    p.add_argument("--suite", choices=list(SUITES), required=True)
    p.add_argument("--dry-run", action="store_true", help="list the commands, run nothing")
    p.add_argument("--from", dest="start", type=int, default=1, help="start at the N-th command (1-based)")
    p = sub.add_parser("learn")
    p.add_argument("--task", default="cartpole")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--preset", nargs="+", default=["small"])
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=None, help="env-step budget (default: the task's); "
                   "recorded as the override run.steps")
    p.add_argument("--target", type=float, default=None, help="evaluation return that counts as solved "
                   "(default: the task's)")
    p.add_argument("--check", action="store_true", help="exit 1 unless every seed reached the target")
    p.add_argument("--set", nargs="*", default=[], help="dotted overrides key=value")
    p.add_argument("--keep", default=None, help="leave each run directory in KEEP/<task>-seed<N>")
    p = sub.add_parser("speed")
    p.add_argument("--presets", nargs="+", default=["debug", "small", "medium"])
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--set", nargs="*", default=[], help="dotted overrides key=value (run.compile=true: "
                   "time the compiled update; FLOPs are counted on the eager one)")
    p = sub.add_parser("compile-ab", help="run.compile on against off, interleaved in one process")
    p.add_argument("--presets", nargs="+", default=["small"])
    p.add_argument("--env", nargs="+", default=["CartPole-v1", "Pendulum-v1"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=20)
    p = sub.add_parser("gather-ab", help="the heads' latent gather on against off, interleaved")
    p.add_argument("--presets", nargs="+", default=["small", "medium", "xs-matched"])
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--planner", action="store_true", help="time MPPI 256 x 5 x 3 decisions instead of updates")
    p.add_argument("--compiled", action="store_true", help="of a compiled agent (what run.compile does)")
    p = sub.add_parser("speed-grid", help="time and memory per update against batch, length and preset")
    p.add_argument("--preset", default="small", help="the preset of the batch x length grid")
    p.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--presets", nargs="*", default=["debug", "small", "medium"],
                   help="also these presets at their default batch x length")
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p = sub.add_parser("plan-speed", help="ms per MPC decision for one env")
    p.add_argument("--preset", nargs="+", default=["small"])
    p.add_argument("--planner", nargs="+", choices=["mppi", "cem", "actor"], default=["mppi"])
    p.add_argument("--env", nargs="+", default=["Pendulum-v1", "CartPole-v1"])
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--horizon", type=int, default=5)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--decisions", type=int, default=50, help="timed decisions (after --warmup)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--run", nargs="*", default=[],
                   help="--with-rules: trained runs to measure on (the one whose env matches), not untrained weights")
    p.add_argument("--with-rules", action="store_true",
                   help="also time each planner with the env's shipped rules in imagination, and print the overhead")
    p.add_argument("--prior", type=float, default=None,
                   help="also time each planner with planner.prior at this weight against 0, interleaved")
    p.add_argument("--compile", action="store_true",
                   help="also time each MPC planner compiled (run.compile) against eager, interleaved")
    # add_help=False: -h goes through to compare.py, which lists its own options
    p = sub.add_parser("compare", add_help=False, allow_abbrev=False,
                       help="side by side with SheepRL (benchmarks/sheeprl/compare.py)")
    p.add_argument("--against", choices=["sheeprl"], required=True)
    sub.add_parser("report")
    return parser


def compare(rest: list[str]) -> int:
    """`compare --against sheeprl ARGS`: benchmarks/sheeprl/compare.py with ARGS, in this process."""
    from benchmarks.sheeprl import children, compare as sheeprl_compare
    if not (children.VENV / "bin" / "python").exists() and not {"-h", "--help"} & set(rest):
        print(f"error: SheepRL's venv {children.VENV} is missing; run: bash benchmarks/sheeprl/install.sh",
              file=sys.stderr)
        return 2
    return sheeprl_compare.main(rest)


def _run_env(run: str) -> str:
    from worldmodel.api import _run_config
    return str(_run_config(run).env.id)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = "python -m benchmarks " + " ".join(shlex.quote(a) for a in argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.cmd == "compare":
        return compare(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    from benchmarks.common import record
    status = 0
    if args.cmd == "run":
        from benchmarks.suites import run_suite
        status = run_suite(args.suite, args.dry_run, args.start)
    elif args.cmd == "learn":
        from benchmarks.learning import run_seed, summarize
        overrides = dict(kv.split("=", 1) for kv in args.set)
        if args.steps is not None:
            overrides["run.steps"] = args.steps
        from benchmarks.common import RunInterrupted
        rows, stopped = [], None
        for seed in args.seeds:
            try:
                row = run_seed(args.task, seed, args.preset, overrides, args.eval_every, args.threads, args.keep,
                               args.target)
            except RunInterrupted as exc:  # keep the seeds that finished
                stopped = exc
                break
            rows.append(row)
            to_target = "" if row["wall_to_target_s"] is None else f" ({row['wall_to_target_s'] / 60:.1f} min)"
            if row["frames_per_step"] > 1 and row["steps_to_target"] is not None:  # DMC: the issue counts frames
                to_target = f" = {row['steps_to_target'] * row['frames_per_step']} frames{to_target}"
            print(f"{args.task} seed {seed}: final eval return {row['final_return']:.1f}, "
                  f"target {row['target']} reached at {row['steps_to_target']} env steps{to_target}, "
                  f"wall {row['wall_s'] / 60:.1f} min, {row['updates']} updates")
        if stopped is not None and not rows:
            raise stopped
        summary = summarize(rows)
        record("learning", {"task": args.task, "presets": args.preset, "overrides": overrides,
                            "summary": summary, "runs": rows}, command)
        print(f"{args.task}: median final return {summary['median_final_return']:.1f}, median steps to "
              f"target {summary['median_steps_to_target']}, median wall {summary['median_wall_s'] / 60:.1f} min "
              f"({summary['seeds_reaching_target']}/{summary['seeds']} seeds reached the target)")
        if stopped is not None:
            print(f"{stopped.code} (seed {args.seeds[len(rows)]}); the {len(rows)} seed(s) before it are "
                  f"recorded", file=sys.stderr)
            status = 1
        elif args.check and summary["seeds_reaching_target"] < summary["seeds"]:
            print(f"check failed: {summary['seeds'] - summary['seeds_reaching_target']} seed(s) never reached "
                  f"{rows[0]['target']}")
            status = 1
    elif args.cmd == "speed":
        from benchmarks.speed import matmul_peak, time_updates
        peak = matmul_peak(args.threads)
        print(f"matmul peak, {args.threads} thread(s): {peak:.1f} GFLOP/s")
        print(f"{'preset':<8} {'params':>10} {'B x T':>8} {'ms/update':>10} {'updates/s':>10} "
              f"{'GFLOP/upd':>10} {'GFLOP/s':>8} {'% peak':>7}")
        for preset in args.presets:
            r = time_updates(preset, args.env, args.threads, args.repeats, dict(kv.split("=", 1) for kv in args.set))
            r["matmul_peak_gflops"] = peak
            record("speed", r, command)
            print(f"{preset:<8} {r['params']:>10,} {r['batch']:>3} x {r['length']:<3} {r['ms_per_update']:>10.1f} "
                  f"{r['updates_per_s']:>10.2f} {r['gflop_per_update']:>10.2f} {r['gflops_achieved']:>8.1f} "
                  f"{100 * r['gflops_achieved'] / peak:>6.0f}%")
    elif args.cmd == "compile-ab":
        from benchmarks.speed import compile_ab
        for preset in args.presets:
            for env_id in args.env:
                r = compile_ab(preset, env_id, args.threads, args.rounds)
                record("compile_ab", r, command)
                print(f"{preset:<7} {env_id:<12} eager {r['cpu_ms_eager']:.1f} ms CPU, compiled "
                      f"{r['cpu_ms_compiled']:.1f} ms CPU -> {r['speedup']:.2f}x (median of {r['rounds']}; "
                      f"compiling took {r['compile_s']:.0f} s)")
    elif args.cmd == "gather-ab":
        from benchmarks.speed import gather_ab
        for preset in args.presets:
            r = gather_ab(preset, args.env, args.threads, args.rounds, args.planner, args.compiled)
            record("gather_ab", r, command)
            print(f"{preset:<11} {r['work']}{', compiled' if r['compiled'] else ''}: gather {r['cpu_ms_gather']:.1f} ms CPU, one-hot matmul "
                  f"{r['cpu_ms_dense']:.1f} ms CPU -> {r['speedup']:.2f}x (median of {r['rounds']})")
    elif args.cmd == "speed-grid":
        from benchmarks.speed import grid_point, grid_points
        print(f"{'preset':<8} {'params':>10} {'batch':>5} {'length':>6} {'ms/update':>10} {'updates/s':>10} "
              f"{'update MB':>10} {'peak RSS MB':>11}")
        for preset, batch, length in grid_points(args.preset, tuple(args.batches), tuple(args.lengths),
                                                 tuple(args.presets)):
            r = grid_point(preset, batch, length, args.env, args.threads, args.repeats)
            record("speed_grid", r, command)
            if "error" in r:
                print(f"{preset:<8} {'':>10} {batch:>5} {length:>6}  failed: {r['error']}")
                status = 1
                continue
            print(f"{preset:<8} {r['params']:>10,} {batch:>5} {length:>6} {r['ms_per_update']:>10.1f} "
                  f"{r['updates_per_s']:>10.2f} {r['update_mb']:>10.0f} {r['peak_rss_mb']:>11.0f}", flush=True)
        print("memory: ru_maxrss of a fresh process per point; update MB = its growth over the first two updates")
    elif args.cmd == "plan-speed":
        from benchmarks.plan_speed import TARGET_MS, print_header, print_row, time_decisions
        print_header()
        from benchmarks.plan_speed import SHIPPED_RULES
        for env_id in args.env:
            for planner in args.planner:
                r = time_decisions(env_id, args.preset, planner, args.samples, args.horizon, args.iterations,
                                   args.threads, args.decisions, args.warmup)
                record("plan_speed", r, command)
                print_row(r)
                if args.with_rules and planner != "actor" and env_id in SHIPPED_RULES:
                    from benchmarks.plan_speed import rules_overhead
                    trained = [r for r in args.run if _run_env(r) == env_id]
                    o = rules_overhead(env_id, SHIPPED_RULES[env_id], args.preset, planner, args.samples,
                                       args.horizon, args.iterations, args.threads,
                                       rounds=max(1, args.decisions // 5), warmup=args.warmup,
                                       run=trained[0] if trained else None)
                    record("plan_speed", o, command)
                    print(f"  {o['rules']} (interleaved, {o['rounds']} x 5 decisions each): no rules "
                          f"{o['ms_none']:.1f} ms, with the cost penalty {o['ms_objective']:.1f} ms, with the shield "
                          f"in imagination {o['ms_shield']:.1f} ms: the shield adds {100 * o['shield_overhead']:+.1f}%, "
                          f"all rule work {100 * o['rules_overhead']:+.1f}%", flush=True)
                if args.prior and planner != "actor":
                    from benchmarks.plan_speed import prior_overhead
                    o = prior_overhead(env_id, args.prior, args.preset, planner, args.samples, args.horizon,
                                       args.iterations, args.threads, rounds=max(1, args.decisions // 5),
                                       warmup=args.warmup)
                    record("plan_speed", o, command)
                    print(f"  planner.prior {o['prior']:g} (interleaved, {o['rounds']} x 5 decisions each): "
                          f"off {o['ms_prior_off']:.1f} ms, on {o['ms_prior_on']:.1f} ms: "
                          f"{100 * o['prior_overhead']:+.1f}%", flush=True)
                if args.compile and planner != "actor":
                    from benchmarks.plan_speed import compile_speedup
                    o = compile_speedup(env_id, args.preset, planner, args.samples, args.horizon, args.iterations,
                                        args.threads, rounds=max(1, args.decisions // 5), warmup=args.warmup)
                    record("plan_speed", o, command)
                    print(f"  run.compile (interleaved, {o['rounds']} x 5 decisions each): eager {o['ms_eager']:.1f} ms, "
                          f"compiled {o['ms_compiled']:.1f} ms ({o['compile_speedup']:.2f}x; compiled with one-hot "
                          f"products {o['ms_compiled_onehot']:.1f} ms); compiling took {o['compile_s']:.0f} s",
                          flush=True)
        print(f"(target: MPPI 256 x 5 x 3 within {TARGET_MS:g} ms per decision; preset {' '.join(args.preset)}, "
              f"{args.threads} thread(s), median of {args.decisions} decisions)")
    elif args.cmd == "report":
        from benchmarks.curves import learning_plots
        from benchmarks.report import report
        print(report())
        for path in learning_plots():
            print(f"wrote {path}")
    print(f"\nreproduce: {command}")
    return status


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
