"""Learning curves of one or more run directories as one PNG.

  plot_runs(["runs/a", "runs/b"], "curves.png")

Panels, all against env steps: episode return (raw, faint, and smoothed; eval returns as
markers with error bars when eval.jsonl exists), one panel per loss term (metrics keys
"loss/..."), the shield's veto rate (vetoes per env step, from the differences of the
cumulative "shield/vetoes" counter) when any run has rules, and speed (env steps/s, updates/s).
Each run keeps one colour in every panel; the legend names runs by their directory.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from worldmodel.logger import read_jsonl


def smooth(values: np.ndarray, window: int | None = None) -> np.ndarray:
    """Trailing mean over `window` points (default ~1/10 of the curve), same length as `values`."""
    values = np.asarray(values, np.float64)
    if len(values) == 0:
        return values
    window = window or int(np.clip(len(values) // 10, 1, 50))
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (sums[idx] - sums[lo]) / (idx - lo)


def _series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of `key`, sorted by step; a resumed run's re-logged steps keep the last."""
    by_step: dict[int, float] = {}
    for r in records:
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and "step" in r and math.isfinite(v):
            by_step[int(r["step"])] = float(v)
    steps = np.array(sorted(by_step), np.int64)
    return steps, np.array([by_step[s] for s in steps], np.float64)


def load_logs(run: Path) -> dict[str, list[dict]]:
    if not run.is_dir():
        raise FileNotFoundError(f"{run} is not a run directory; pass the --logdir of a training run")
    logs = {name: read_jsonl(run / f"{name}.jsonl") for name in ("episodes", "eval", "metrics")}
    if not (run / "config.yaml").exists() and not any(logs.values()):
        raise FileNotFoundError(f"{run} has no config.yaml and no logs; pass the --logdir of a training run")
    return logs


def panel_names(logs: list[dict[str, list[dict]]]) -> list[str]:
    """The subplots the runs' logs call for, in drawing order."""
    loss_keys = sorted({k for log in logs for rec in log["metrics"] for k in rec if k.startswith("loss/")})
    has_shield = any("shield/vetoes" in rec for log in logs for rec in log["metrics"])
    return ["return", *loss_keys, *(["veto rate"] if has_shield else []), "speed"]


def plot_runs(runs: list[str | Path], out: str | Path) -> Path:
    """Draw every run's curves into one PNG at `out` (written atomically); returns its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    if not runs:
        raise FileNotFoundError("no run directories given")
    runs = [Path(r) for r in runs]
    logs = [load_logs(r) for r in runs]
    names = [r.resolve().name for r in runs]
    panels = panel_names(logs)
    loss_keys = [p for p in panels if p.startswith("loss/")]
    has_shield = "veto rate" in panels
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.2 * cols, 2.9 * rows), dpi=100)
    FigureCanvasAgg(fig)  # Agg: no display and no pyplot state, safe inside a training loop
    axes = {name: fig.add_subplot(rows, cols, i + 1) for i, name in enumerate(panels)}
    colors = [f"C{i % 10}" for i in range(len(runs))]
    for name, log, color in zip(names, logs, colors):
        steps, ret = _series(log["episodes"], "return")
        ax = axes["return"]
        if len(steps):
            ax.plot(steps, ret, color=color, alpha=0.25, lw=0.8)
            ax.plot(steps, smooth(ret), color=color, lw=1.6, label=name)
        else:
            ax.plot([], [], color=color, label=name)  # keep the run in the legend
        esteps, emean = _series(log["eval"], "return_mean")
        if len(esteps):
            _, estd = _series(log["eval"], "return_std")
            ax.errorbar(esteps, emean, yerr=estd if len(estd) == len(emean) else None, color=color,
                        fmt="o", ms=4, capsize=2, label=f"{name} (eval)")
        for key in loss_keys:
            s, v = _series(log["metrics"], key)
            if len(s):
                axes[key].plot(s, v, color=color, lw=1.2)
        if has_shield:
            s, v = _series(log["metrics"], "shield/vetoes")
            ds, dv = np.diff(s), np.diff(v)
            keep = ds > 0  # counters are cumulative; a restart may repeat a step
            if keep.any():
                axes["veto rate"].plot(s[1:][keep], dv[keep] / ds[keep], color=color, lw=1.2)
        for key, style in (("fps", "-"), ("ups", "--")):
            s, v = _series(log["metrics"], key)
            s, v = s[v > 0], v[v > 0]  # log axis: no updates during prefill is not a point
            if len(s):
                axes["speed"].plot(s, v, color=color, ls=style, lw=1.2)
    titles = {"return": "episode return (smoothed)", "veto rate": "shield vetoes per env step",
              "speed": "speed: env steps/s (solid), updates/s (dashed)"}
    for name, ax in axes.items():
        ax.set_title(titles.get(name, name), fontsize=10)
        ax.set_xlabel("env steps", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if name == "speed" and ax.lines:
            ax.set_yscale("log")  # env steps/s and updates/s differ by orders of magnitude
        if not ax.lines and not ax.collections:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes, color="gray")
    axes["return"].legend(fontsize=7, loc="best")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".part.png")
    fig.savefig(tmp, format="png")
    tmp.replace(out)
    return out
