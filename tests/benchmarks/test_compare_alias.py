"""`python -m benchmarks compare --against sheeprl ARGS`: exit 2 with one line when SheepRL's
venv is missing; otherwise ARGS reach benchmarks/sheeprl/compare.py unchanged."""
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.__main__ import main
from benchmarks.sheeprl import children, compare

ROOT = Path(__file__).resolve().parents[2]


def test_missing_venv_exits_2_with_one_line(tmp_path):
    env = {**os.environ, "SHEEPRL_VENV": str(tmp_path / "no-venv")}
    out = subprocess.run([sys.executable, "-m", "benchmarks", "compare", "--against", "sheeprl", "--updates", "1"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "bash benchmarks/sheeprl/install.sh" in lines[0] and "no-venv" in lines[0]


def test_arguments_pass_through(tmp_path, monkeypatch):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").write_text("")
    monkeypatch.setattr(children, "VENV", tmp_path)
    seen = []
    monkeypatch.setattr(compare, "main", lambda argv: seen.append(argv) or 0)
    rest = ["--task", "CartPole-v1", "Pendulum-v1", "--skip-e2e", "--rounds", "3"]
    assert main(["compare", "--against", "sheeprl", *rest]) == 0
    assert seen == [rest]


def test_against_must_be_sheeprl(capsys):
    try:
        main(["compare", "--against", "dreamerv3"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("an unknown --against was accepted")
    assert "invalid choice" in capsys.readouterr().err
