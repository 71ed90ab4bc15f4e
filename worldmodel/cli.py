"""`worldmodel` command line: parsing and dispatch only.

  worldmodel train [--preset a b] [--env ID] [--steps N] [--logdir DIR] [--section.key VALUE ...]
  worldmodel eval --run DIR [--episodes N] [--shield on|off]
  worldmodel dream --run DIR [--out dream.mp4] [--context N] [--horizon N] [--mode open-loop|policy] [--spread]
  worldmodel plot --run DIR [DIR ...] [--out curves.png]
  worldmodel envs | check-env TARGET | rules check FILE [--env ID]

Every error a user can cause ends in one line on stderr and exit code 2;
`--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from worldmodel.config import ConfigError, key_docs, preset_names

# Short flags and the config keys they set.
ALIASES = {"env": "env.id", "steps": "run.steps", "logdir": "run.logdir", "seed": "run.seed",
           "device": "run.device", "obs": "env.obs", "env-kwargs": "env.kwargs",
           "env-import": "env.imports", "rules": "shield.rules", "planner": "planner.kind",
           "workers": "env.workers", "threads": "run.threads"}
DEFAULT_PRESETS = ["small"]


def _overrides(rest: list[str]) -> dict[str, Any]:
    """['--model.deter', '128', '--env', 'X'] -> {'model.deter': '128', 'env.id': 'X'}."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(rest):
        token = rest[i]
        if not token.startswith("--"):
            raise ConfigError(f"unexpected argument '{token}'; settings look like --section.key value")
        key, _, value = token[2:].partition("=")
        if not value:
            if i + 1 >= len(rest) or (rest[i + 1].startswith("--") and not _is_number(rest[i + 1])):
                raise ConfigError(f"option '--{key}' needs a value")
            value = rest[i + 1]
            i += 1
        out[ALIASES.get(key, key)] = value
        i += 1
    return out


def _command() -> str:
    """The command line that started this process, to rerun it (e.g. to resume)."""
    import shlex
    argv = list(sys.argv)
    if argv and Path(argv[0]).name == "__main__.py":  # python -m worldmodel
        argv[:1] = [Path(sys.executable).name, "-m", Path(argv[0]).parent.name]
    elif argv:
        argv[0] = Path(argv[0]).name
    return shlex.join(argv)


def _one_line(exc: BaseException) -> str:
    """A user error as one line: rule errors drop their source excerpt and caret."""
    message = getattr(exc, "message", None)
    if message is not None and hasattr(exc, "expected"):  # symbolic.RuleError
        where = f"{exc.path}:{exc.line}:{exc.column}" if exc.line else exc.path
        expected = f" (expected: {exc.expected})" if exc.expected else ""
        return f"{where}: {message}{expected}"
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _config_help() -> str:
    flat, docs = key_docs()
    lines = ["presets: " + ", ".join(preset_names()) + f" (default: {' '.join(DEFAULT_PRESETS)})",
             "", "shortcuts: " + ", ".join(f"--{a} = --{k}" for a, k in ALIASES.items()), "",
             "settings (--section.key VALUE; default, meaning):"]
    for key, value in flat.items():
        lines.append(f"  --{key:<28} {json.dumps(value):<12} {docs.get(key, '')}")
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace, rest: list[str]) -> int:
    from worldmodel.api import train
    overrides = _overrides(rest)
    result = train(presets=args.preset, overrides=overrides, resume=args.resume)
    if result.get("interrupted"):
        print(f"interrupted at step {result['step']}; checkpoint saved; resume with: {_command()}")
        return 0
    print(f"run directory: {result['logdir']}")
    if result.get("return") is not None:
        print(f"final return (mean of last 10 episodes): {result['return']:.2f}")
    return 0


def cmd_eval(args: argparse.Namespace, rest: list[str]) -> int:
    from worldmodel.api import evaluate_run
    overrides = _overrides(rest)
    result = evaluate_run(args.run, episodes=args.episodes, shield=args.shield, seed=args.seed,
                          overrides=overrides)
    print(f"return over {result['episodes']} episodes: mean {result['return_mean']:.2f}, "
          f"std {result['return_std']:.2f} (mean length {result['length_mean']:.1f})")
    if "vetoes" in result and result.get("veto", True):
        print(f"shield: {result['vetoes']} vetoes, {result['executed_violations']} executed violations")
    elif "vetoes" in result:
        print(f"shield judging only (no veto): {result['executed_violations']} executed violations")
    if "risk_counts" in result:
        fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
        tp, fp, fn = result["risk_counts"]
        print(f"planner calibration (predicted risk > 0.5 vs vetoed proposals): precision "
              f"{fmt(result['risk_precision'])}, recall {fmt(result['risk_recall'])} "
              f"({tp} hits, {fp} false alarms, {fn} misses)")
    return 0


def cmd_dream(args: argparse.Namespace, rest: list[str]) -> int:
    if rest:
        raise ConfigError(f"unexpected argument '{rest[0]}' for dream; see worldmodel dream --help")
    from worldmodel.video import dream
    result = dream(args.run, args.out, context=args.context, horizon=args.horizon,
                   episodes=args.episodes, mode=args.mode, fps=args.fps, planner_spread=args.spread,
                   seed=args.seed)
    w, h = result["size"]
    print(f"wrote {result['path']}: {result['frames']} frames, {w}x{h}, drawn as {result['method']}")
    for i, ep in enumerate(result["episodes"]):
        err = "n/a" if ep["obs_error"] is None else f"{ep['obs_error']:.3f}"
        print(f"  episode {i + 1}: {ep['context']} observed + {ep['imagined']} imagined steps, "
              f"mean |obs error| while imagining {err}")
    return 0


def cmd_plot(args: argparse.Namespace, rest: list[str]) -> int:
    if rest:
        raise ConfigError(f"unexpected argument '{rest[0]}' for plot; see worldmodel plot --help")
    from worldmodel.plot import plot_runs
    out = args.out or str(Path(args.run[0]) / "curves.png")
    print(f"wrote {plot_runs(args.run, out)}")
    return 0


def cmd_envs(args: argparse.Namespace, rest: list[str]) -> int:
    import envs
    lister = getattr(envs, "list_envs", None)
    if lister is not None:
        for env_id, description in lister():
            print(f"{env_id:<40} {description}")
        return 0
    import gymnasium as gym
    for env_id in sorted(gym.registry):
        print(env_id)
    return 0


def cmd_check_env(args: argparse.Namespace, rest: list[str]) -> int:
    from envs import check
    from worldmodel.config import load_config
    cfg = load_config(DEFAULT_PRESETS, _overrides(rest))
    from envs import parse_env_kwargs
    kwargs = parse_env_kwargs(args.env_kwargs)
    text, code = check.check_env_report(args.target, kwargs, tuple(args.env_import or ()),
                                        obs=args.obs, replay_capacity=cfg.replay.capacity)
    print(text)
    return code


def cmd_rules(args: argparse.Namespace, rest: list[str]) -> int:
    from symbolic.verify import check_file
    obs_space = act_space = None
    if args.env:
        from envs import make_factory
        env = make_factory(args.env)()
        obs_space, act_space = env.observation_space, env.action_space
        env.close()
    text, code = check_file(args.file, obs_space, act_space)
    print(text)
    return code


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is a one-line ConfigError like any other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{message}; see {self.prog} --help")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="worldmodel", description="Train world-model agents that "
                     "imagine before they act and never break the rules.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train an agent", formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=_config_help())
    p.add_argument("--preset", nargs="+", default=DEFAULT_PRESETS, help="presets, applied left to right")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=None,
                   help="resume the run in --logdir (default: resume when it has a checkpoint)")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("eval", help="evaluate a trained run", formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="Any --section.key value overrides the run's saved config for this evaluation,\n"
                              "e.g. plan harder at decision time only:\n"
                              "  worldmodel eval --run RUN --planner mppi --planner.samples 256 --planner.iterations 3")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--shield", choices=["on", "off", "learned"], default=None,
                   help="evaluate with the run's shield on, off (the bare policy; rules only judge), "
                        "or learned (no veto; the agent acts under its learned verdicts); default: as trained")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("dream", help="video: the real episode next to what the model imagines")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--out", default="dream.mp4", help="MP4 to write")
    p.add_argument("--context", type=int, default=5, help="real steps the model observes first")
    p.add_argument("--horizon", type=int, default=50, help="steps it then imagines")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--mode", choices=["open-loop", "policy"], default="open-loop",
                   help="imagine under the real agent's actions, or let its policy act in the dream")
    p.add_argument("--spread", action="store_true", help="add a panel: spread over 16 sampled futures")
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_dream)
    p = sub.add_parser("plot", help="learning curves of one or more runs as a PNG")
    p.add_argument("--run", required=True, nargs="+", help="run directories (overlaid)")
    p.add_argument("--out", default=None, help="PNG to write (default: <first run>/curves.png)")
    p.set_defaults(func=cmd_plot)
    p = sub.add_parser("envs", help="list built-in and registered envs")
    p.set_defaults(func=cmd_envs)
    p = sub.add_parser("check-env", help="preflight: is an env usable, and why not")
    p.add_argument("target", help="env id or module:Class")
    p.add_argument("--env-kwargs", default="", help="JSON keyword arguments")
    p.add_argument("--env-import", nargs="*", help="modules to import first")
    p.add_argument("--obs", default="state", choices=["state", "pixels"])
    p.set_defaults(func=cmd_check_env)
    p = sub.add_parser("rules", help="rule files")
    rsub = p.add_subparsers(dest="rules_command", required=True)
    r = rsub.add_parser("check", help="statically verify a rules file")
    r.add_argument("file")
    r.add_argument("--env", default="", help="check the rules' bindings against this env's spaces")
    r.set_defaults(func=cmd_rules)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad input, reported in one line."""
    from envs import EnvError, SpaceError
    from worldmodel.checkpoint import CheckpointError
    from worldmodel.faults import RunStopped
    errors: list[type[BaseException]] = [ConfigError, EnvError, SpaceError, CheckpointError, RunStopped,
                                         FileNotFoundError, PermissionError, NotADirectoryError]
    try:
        from symbolic import RuleError
        errors.append(RuleError)
    except ImportError:
        pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        args, rest = build_parser().parse_known_args(argv)
        code = args.func(args, rest)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug or not isinstance(exc, user_errors()):
            if debug:
                raise
            print(f"error: {type(exc).__name__}: {_one_line(exc)} (run with --debug for the traceback)", file=sys.stderr)
            return 1
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
