"""PNG learning curves from benchmarks/results/learning.jsonl: one figure per task, presets
and overrides, one line per seed, the target dashed (`python -m benchmarks report` writes them
next to the results; the tables are benchmarks/report.py)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from benchmarks import common
from benchmarks.report import Row, _overrides, frames_per_step, learning_runs


def plot_name(row: Row) -> str:
    """learning-<task>-<presets>[-<8 hex of the overrides>].png"""
    name = f"learning-{row['task']}-{'+'.join(row['presets'])}"
    if row.get("overrides"):
        name += "-" + hashlib.sha1(json.dumps(row["overrides"], sort_keys=True).encode()).hexdigest()[:8]
    return name + ".png"


def learning_plots(root: Path | None = None, out: Path | None = None) -> list[Path]:
    """One PNG per (task, presets, overrides) of learning.jsonl (`learning_runs`): evaluation
    return against env steps (frames for DMC), a line per seed, the target dashed. Returns the
    paths written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    root = root or common.RESULTS
    out = out or root
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for row, runs, _ in learning_runs(root).values():
        runs = [r for r in runs if r.get("curve")]
        if not runs:
            continue
        fig = Figure(figsize=(6, 4))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        frames = max(frames_per_step(row, r) for r in runs) > 1  # DMC: the x axis counts frames
        for r in runs:
            steps, returns = zip(*r["curve"])
            if frames:
                steps = [s * frames_per_step(row, r) for s in steps]
            ax.plot(steps, returns, marker="o", markersize=3, label=f"seed {r['seed']}")
        if runs[0].get("target") is not None:
            ax.axhline(runs[0]["target"], color="gray", linestyle="--", label="target")
        extra = _overrides(row)
        ax.set_title(f"{row['task']}, preset {' '.join(row['presets'])}" + (f"\n+ {extra}" if extra else "")
                     + f" (commit {row['commit']})", fontsize=8)
        ax.set_xlabel("simulator frames" if frames else "env steps")
        ax.set_ylabel("evaluation return (greedy, mean of the episodes)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / plot_name(row)
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths
