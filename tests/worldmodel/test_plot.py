"""Learning-curve PNGs: from a real tiny run, overlaid runs, the CLI's default path, and the
panels that hand-written logs call for (veto rate, resumed runs)."""
import json

import numpy as np
import pytest
from PIL import Image

import worldmodel
from worldmodel.cli import main
from worldmodel.plot import load_logs, panel_names, plot_runs, smooth

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("plot_runs") / "cartpole"
    worldmodel.train(env="CartPole-v1", presets=["debug"],
                     overrides={"run.logdir": str(logdir), "run.steps": 120, "run.log_every": 20,
                                "run.eval_every": 60, "run.eval_episodes": 1})
    return logdir


def _fake_run(path, vetoes=True):
    """A run directory with hand-written logs, including a resume that re-logs step 200."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("{}\n")
    metrics = [{"step": s, "fps": 100.0 + s / 10, "ups": 5.0, "loss/rec": 10.0 / (1 + s / 100),
                **({"shield/vetoes": s // 10} if vetoes else {})} for s in (100, 200, 300)]
    metrics.append({"step": 200, "fps": 90.0, "ups": 4.0, "loss/rec": 7.0,
                    **({"shield/vetoes": 20} if vetoes else {})})
    (path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics) + '{"torn')
    episodes = [{"step": 10 * i, "return": float(i)} for i in range(1, 40)]
    (path / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))
    return path


def _check_png(path, min_width=400):
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 10_000
    with Image.open(path) as img:
        assert img.size[0] >= min_width and img.size[1] >= 200


def test_plot_real_run(run, tmp_path):
    out = plot_runs([run], tmp_path / "curves.png")
    assert out == tmp_path / "curves.png"
    _check_png(out, min_width=1000)  # three panel columns
    names = panel_names([load_logs(run)])
    assert names[0] == "return" and names[-1] == "speed"
    assert {"loss/rec", "loss/dyn", "loss/reward"} <= set(names)
    assert not list(tmp_path.glob("*.part.png"))  # written atomically


def test_cli_overlays_runs_with_default_out(run, tmp_path, capsys):
    other = _fake_run(tmp_path / "other")
    assert main(["plot", "--run", str(run), str(other)]) == 0
    assert str(run / "curves.png") in capsys.readouterr().out
    _check_png(run / "curves.png")


def test_veto_rate_panel_only_with_shield_data(tmp_path):
    shielded = load_logs(_fake_run(tmp_path / "a"))
    plain = load_logs(_fake_run(tmp_path / "b", vetoes=False))
    assert "veto rate" in panel_names([shielded]) and "veto rate" not in panel_names([plain])
    _check_png(plot_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "both.png"))


def test_empty_run_still_plots(tmp_path):
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "config.yaml").write_text("{}\n")
    assert plot_runs([tmp_path / "fresh"], tmp_path / "fresh.png").read_bytes()[:8] == PNG


def test_missing_run_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        plot_runs([tmp_path / "nope"], tmp_path / "x.png")


def test_smooth_is_a_trailing_mean():
    x = np.arange(10, dtype=float)
    assert np.allclose(smooth(x, 3), [0, 0.5, 1, 2, 3, 4, 5, 6, 7, 8])
    assert len(smooth(np.array([]))) == 0
