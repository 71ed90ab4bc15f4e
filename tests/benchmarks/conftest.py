"""Benchmark tests write their results into a temporary folder, never benchmarks/results."""
import pytest


@pytest.fixture
def results(tmp_path, monkeypatch):
    from benchmarks import common
    folder = tmp_path / "results"
    folder.mkdir()
    monkeypatch.setattr(common, "RESULTS", folder)
    return folder
