"""Side-by-side comparison with SheepRL's DreamerV3 (installed in its own venv, never vendored)."""
