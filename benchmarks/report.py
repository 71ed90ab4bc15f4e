"""Markdown tables from the stored benchmark results (the newest row per key)."""
from __future__ import annotations

from benchmarks.common import load


def report() -> str:
    lines = ["### Learning", "", "| task | preset (+ overrides) | seeds | median final eval return | median env steps to target "
             "| seeds at target | median wall (min) | commit |", "|---|---|---|---|---|---|---|---|"]
    latest = {}
    for row in load("learning"):
        latest[(row["task"], tuple(row["presets"]), str(row.get("overrides")))] = row
    for (task, presets, _), row in sorted(latest.items()):
        s = row["summary"]
        extra = " ".join(f"{k}={v}" for k, v in (row.get("overrides") or {}).items())
        lines.append(f"| {task} | {' '.join(presets)}{(' + ' + extra) if extra else ''} | {s['seeds']} | {s['median_final_return']:.1f} | "
                     f"{s['median_steps_to_target']} | {s['seeds_reaching_target']}/{s['seeds']} | "
                     f"{s['median_wall_s'] / 60:.1f} | {row['commit']} |")
    lines += ["", "### Speed (synthetic batch, one update = world model + actor-critic)", "",
              "| preset | threads | params | ms/update | updates/s | GFLOP/update | GFLOP/s | % of matmul peak |",
              "|---|---|---|---|---|---|---|---|"]
    speed = {}
    for row in load("speed"):
        speed[(row["preset"], row["threads"])] = row
    for (preset, threads), r in speed.items():
        lines.append(f"| {preset} | {threads} | {r['params']:,} | {r['ms_per_update']:.1f} | {r['updates_per_s']:.2f} | "
                     f"{r['gflop_per_update']:.2f} | {r['gflops_achieved']:.1f} | "
                     f"{100 * r['gflops_achieved'] / r['matmul_peak_gflops']:.0f}% |")
    return "\n".join(lines)
