"""`benchmarks.update_profile` on the CPU: one profiled update counts its ops, and a CPU update
launches no kernels and keeps no device busy."""
import json

from benchmarks import update_profile


def test_cpu_profile_counts_ops_and_no_kernels(results, capsys):
    assert update_profile.main(["--preset", "debug", "--device", "cpu", "--repeats", "1"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["aten_ops"] > 500  # a debug update dispatches thousands of ops
    assert row["kernel_launches"] == 0 and row["device_busy"] == 0.0 and row["us_per_launch"] is None
    assert row["ms_per_update"] > 0 and row["compile"] == "none" and row["threads"] == 1
    stored = [json.loads(line) for line in (results / "update_profile.jsonl").read_text().splitlines()]
    assert stored[-1]["aten_ops"] == row["aten_ops"] and stored[-1]["command"].startswith(
        "python -m benchmarks.update_profile --preset debug")


def test_no_record_prints_without_storing(results, capsys):
    update_profile.main(["--preset", "debug", "--device", "cpu", "--repeats", "1", "--no-record"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["preset"] == "debug"
    assert not (results / "update_profile.jsonl").exists()
