"""benchmarks/noise_reach.py: the noise sequences and one measurement."""
import numpy as np
import pytest

from benchmarks.noise_reach import measure, noise


def _lag1(x: np.ndarray) -> float:
    return float(np.corrcoef(x[:-1], x[1:])[0, 1])


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "ar0.9"])
def test_noise_has_unit_variance(kind):
    x = np.concatenate([noise(kind, 4000, np.random.default_rng(s)) for s in range(5)])
    assert x.std() == pytest.approx(1.0, abs=0.15)


def test_noise_correlation_grows_with_its_colour():
    rng = np.random.default_rng(0)
    white, pink, brown = (np.mean([_lag1(noise(k, 2000, rng)) for _ in range(5)]) for k in ("white", "pink", "brown"))
    assert abs(white) < 0.1 < pink < brown
    assert np.mean([_lag1(noise("ar0.9", 2000, rng)) for _ in range(5)]) == pytest.approx(0.9, abs=0.05)


def test_measure_reports_each_kind():
    rows = measure("Pendulum-v1", ["white", "brown"], episodes=2, std=1.0)
    assert [r["kind"] for r in rows] == ["white", "brown"]
    for r in rows:  # Pendulum-v1 pays only penalties: no episode earns a positive reward
        assert r["episodes"] == 2 and r["share_rewarded"] == 0.0 and r["mean_return"] < 0
