"""Crashes and resume (issue 7): kill -9 at random points loses and duplicates nothing,
Ctrl-C checkpoints, corrupt checkpoints fall back, NaN is skipped then stops the run.
Bad input (one line, exit 2) is in test_bad_input.py."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from worldmodel import checkpoint, resume
from worldmodel.config import load_config
from worldmodel.logger import read_jsonl, rewind_jsonl
from worldmodel.replay import Replay

from tests.worldmodel.cli_helpers import assert_one_line_error, run_cli

ROOT = Path(__file__).resolve().parents[2]
# small and quick: 2 lanes, a checkpoint every 20 env steps, 16-step chunks
FAST = ["--preset", "debug", "--train.ratio", "16", "--run.checkpoint_every", "20", "--run.log_every", "20",
        "--replay.chunk", "16", "--env.workers", "2"]


# -- replay on disk --------------------------------------------------------------------------
FIELDS = {"step": ((), np.int64), "is_first": ((), bool), "is_last": ((), bool)}


def fill(replay: Replay, n: int, rng: np.random.Generator, remaining: np.ndarray) -> None:
    """n steps per lane; `step` holds each step's absolute position in its lane."""
    for _ in range(n):
        first = remaining == 0
        remaining[first] = rng.integers(1, 9, first.sum())
        remaining -= 1
        replay.add({"step": replay.count.copy(), "is_first": first, "is_last": remaining == 0})


def lane_steps(replay: Replay, lane: int) -> np.ndarray:
    lo, hi = int(replay._oldest()[lane]), int(replay.count[lane])
    return replay.data["step"][lane, np.arange(lo, hi) % replay.size]


def test_replay_chunks_resume_exactly_and_bound_disk(tmp_path):
    rng, remaining = np.random.default_rng(0), np.zeros(2, int)
    a = Replay(80, 2, FIELDS, directory=tmp_path, chunk=8, keep_saved=1)
    fill(a, 61, rng, remaining)  # 61 = 7 full chunks + 5 steps in flight per lane
    state = a.state_dict()
    reference = {k: getattr(a, k).copy() for k in ("ep_start", "ep_end", "cur_start", "open", "count")}
    fill(a, 30, rng, remaining)  # progress after the checkpoint, then "crash"
    b = Replay(80, 2, FIELDS, directory=tmp_path, chunk=8)
    b.load_state_dict(state)
    for lane in range(2):
        steps = lane_steps(b, lane)  # exactly the newest 40 steps up to the checkpoint, once each
        np.testing.assert_array_equal(steps, np.arange(61 - 40, 61))
        assert not list(tmp_path.glob(f"lane{lane}_0000000000[6-9]*.npz")), "chunks newer than the checkpoint"
    valid = [(lane, t % b.size) for lane in range(2) for t in range(21, 61)]
    for k in ("ep_start", "ep_end"):
        if k == "ep_end":  # ongoing episodes read their end from count; compare closed ones only
            valid = [(lane, i) for lane, i in valid if b.ep_start[lane, i] != b.cur_start[lane] or not b.open[lane]]
        assert [getattr(b, k)[v] for v in valid] == [reference[k][v] for v in valid], k
    np.testing.assert_array_equal(b.cur_start, reference["cur_start"])
    np.testing.assert_array_equal(b.open, reference["open"])
    # the restarted envs begin new episodes: the cut one gets an end, sampling stays inside episodes
    fill(b, 200, rng, np.zeros(2, int))
    batch = b.sample(64, 6)
    for seq, mask, first in zip(batch["step"], batch["mask"], batch["is_first"]):
        assert mask[0] and np.all(np.diff(seq[mask]) == 1) and not first[1:][mask[1:]].any()
    # bounded disk: the ring's 5 chunks per lane as seen from the last checkpoint (so it
    # can be resumed), plus the 16 steps since, plus one partly evicted
    b.state_dict()
    fill(b, 16, rng, np.zeros(2, int))
    for lane in range(2):
        assert len(list(tmp_path.glob(f"lane{lane}_*.npz"))) <= (b.size + 16) // b.chunk + 1


def test_lost_chunk_resumes_with_what_is_left(tmp_path, capsys):
    rng, remaining = np.random.default_rng(1), np.zeros(1, int)
    a = Replay(64, 1, FIELDS, directory=tmp_path, chunk=8)
    fill(a, 50, rng, remaining)
    state = a.state_dict()
    (tmp_path / "lane0_000000000024.npz").write_bytes(b"garbage")  # damaged: steps 24..31
    b = Replay(64, 1, FIELDS, directory=tmp_path, chunk=8)
    b.load_state_dict(state)
    np.testing.assert_array_equal(lane_steps(b, 0), np.arange(32, 50))
    assert "unreadable" in capsys.readouterr().err
    b.sample(8, 4)


def test_replay_context_is_not_persisted_and_a_resume_starts_without_it(tmp_path):
    """Chunks and checkpoints hold no ctx_* fields (runs from before the context have none
    either): resumed steps keep ctx_ok False, so their sequences start fresh, and the
    files are as small as without a context."""
    fields = {**FIELDS, "action": ((1,), np.float32)}
    old = Replay(64, 1, fields, directory=tmp_path, chunk=8)
    for t in range(30):
        old.add({"step": np.array([t]), "action": np.ones((1, 1), np.float32), "is_first": np.array([t == 0]),
                 "is_last": np.array([False])})
    state = old.state_dict()
    ctx = {"ctx_deter": ((3,), np.float16), "ctx_index": ((2,), np.int16), "ctx_ok": ((), bool)}
    with_ctx = Replay(64, 1, {**fields, **ctx}, directory=tmp_path / "ctx", chunk=8)
    for t in range(8):
        with_ctx.add({"step": np.array([t]), "action": np.ones((1, 1), np.float32), "is_first": np.array([t == 0]),
                      "is_last": np.array([False]), "ctx_deter": np.ones((1, 3), np.float16),
                      "ctx_index": np.ones((1, 2), np.int16), "ctx_ok": np.array([True])})
    with np.load(tmp_path / "ctx" / "lane0_000000000000.npz") as z:
        assert sorted(z.files) == sorted(fields)
    assert not any(k.startswith("ctx_") for k in with_ctx.state_dict()["partial"][0])
    new = Replay(64, 1, {**fields, **ctx}, directory=tmp_path, chunk=8)
    new.load_state_dict(state)
    np.testing.assert_array_equal(lane_steps(new, 0), np.arange(30))
    assert not new.data["ctx_ok"].any()
    batch = new.sample(16, 4)
    assert batch["is_first"][:, 0].all()


# -- kill -9, Ctrl-C, corrupt checkpoints --------------------------------------------------------
def completed_episodes(run: Path) -> tuple[list[tuple[float, int]], np.ndarray]:
    """Sorted (return, length) of the episodes stored whole in the replay a resume would
    rebuild, and its per-lane counts."""
    replay = resume.load_replay(run)
    assert (replay.floor == 0).all(), "the whole run fits in replay"
    done, _ = resume.episodes_in(replay)
    return sorted((round(ret, 3), length) for ret, length in done), replay.count.copy()


def test_kill9_at_random_points_then_resume_loses_and_repeats_nothing(tmp_path):
    steps = 200
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "worldmodel", "train", *FAST, "--logdir", str(run), "--steps", str(steps)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    rng, kills, outputs = random.Random(7), 0, []
    for _ in range(8):
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if kills < 3:
            seen = set(checkpoint.list_checkpoints(run / "checkpoints"))
            deadline = time.time() + 60
            while proc.poll() is None and time.time() < deadline:  # wait for progress, then kill at random
                if set(checkpoint.list_checkpoints(run / "checkpoints")) - seen:
                    break
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.4))
            if proc.poll() is None:
                proc.kill()
                kills += 1
        outputs.append(proc.communicate(timeout=120)[0])
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, outputs[-1]
    assert proc.returncode == 0 and kills >= 2, outputs
    assert "Traceback" not in "".join(outputs)
    assert checkpoint.list_checkpoints(run / "checkpoints")[-1].name == f"step_{steps:09d}.pt"
    # curves: no step twice, none going back
    metrics = [r["step"] for r in read_jsonl(run / "metrics.jsonl")]
    assert metrics == sorted(set(metrics)) and metrics[-1] == steps
    logged = read_jsonl(run / "episodes.jsonl")
    assert [e["episode"] for e in logged] == list(range(1, len(logged) + 1))
    # replay: every env step exactly once, and each logged episode complete in replay
    episodes, counts = completed_episodes(run)
    assert counts.sum() >= steps and counts.sum() - steps <= len(counts)  # + pending terminal obs only
    assert episodes == sorted((round(e["return"], 3), e["length"]) for e in logged)
    # an uninterrupted run with the same seed ends at the same step with as much replay
    ref = tmp_path / "uninterrupted"
    code, _, err = run_cli(["train", *FAST, "--logdir", str(ref), "--steps", str(steps)])
    assert code == 0, err
    ref_episodes, ref_counts = completed_episodes(ref)
    np.testing.assert_array_equal(np.minimum(counts, steps // 2), np.minimum(ref_counts, steps // 2))
    assert checkpoint.list_checkpoints(ref / "checkpoints")[-1].name == f"step_{steps:09d}.pt"


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> Path:
    """A finished debug run with checkpoints at 20, 40 and 60."""
    run = tmp_path_factory.mktemp("short") / "run"
    code, _, err = run_cli(["train", *FAST, "--logdir", str(run), "--steps", "60"])
    assert code == 0, err
    return run


def test_sigint_finishes_the_step_checkpoints_and_exits_0(tmp_path):
    run = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)

    def interrupt() -> None:  # once training is under way (a checkpoint exists), press Ctrl-C
        deadline = time.time() + 60
        while not checkpoint.list_checkpoints(run / "checkpoints") and time.time() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    code, out, err = run_cli(["train", *FAST, "--logdir", str(run), "--steps", "100000"])
    assert code == 0, err
    line = [ln for ln in out.splitlines() if ln.startswith("interrupted at step")]
    assert line and "checkpoint saved; resume with: " in line[0], out
    step = int(line[0].split()[3].rstrip(";"))
    assert 0 < step < 100000 and checkpoint.list_checkpoints(run / "checkpoints")[-1].name == f"step_{step:09d}.pt"
    assert signal.getsignal(signal.SIGINT) is before, "the previous handler is restored"


def test_truncated_newest_checkpoint_falls_back_to_the_previous(short_run, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    newest = checkpoint.list_checkpoints(run / "checkpoints")[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    code, out, err = run_cli(["train", *FAST, "--logdir", str(run), "--steps", "80"])
    assert code == 0, err
    assert f"skipped unreadable checkpoint(s) {newest.name} (truncated" in err
    assert "resumed from" in out and "step_000000040.pt" in out
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [20, 40, 60, 80]


def test_bit_flip_is_caught_by_the_checksum(tmp_path):
    path = checkpoint.save(tmp_path, 1, {"agent": {"w": torch.ones(100)}, "counters": {}})
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointError, match="checksum mismatch"):
        checkpoint.read(path)


def test_checkpoint_from_another_model_size_is_one_line(short_run, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    cfg = (run / "config.yaml").read_text().replace("deter: 32", "deter: 16")
    (run / "config.yaml").write_text(cfg)
    code, _, err = run_cli(["train", *FAST, "--logdir", str(run), "--steps", "80", "--model.deter", "16"])
    assert_one_line_error(code, err, "does not match this model", "use a new --logdir")


def test_new_config_keys_are_not_changes_on_resume(tmp_path):
    from worldmodel.api import _diff
    saved = load_config(["debug"]).to_dict()
    del saved["replay"]["chunk"], saved["train"]["max_skipped"]  # a run saved before these keys
    assert _diff(saved, load_config(["debug"]).to_dict()) == {}
    assert "replay.chunk" in _diff(saved, load_config(["debug"], {"replay.chunk": 7}).to_dict())


def test_rewind_jsonl_drops_later_and_torn_lines(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 10}\n{"step": 20}\n{"step": 30}\n{"ste')
    assert rewind_jsonl(tmp_path, 20) == {"metrics.jsonl": 2}
    assert read_jsonl(tmp_path / "metrics.jsonl") == [{"step": 10}, {"step": 20}]


# -- numerical faults ------------------------------------------------------------------------
def nan_after(monkeypatch, calls: int, every: int = 1) -> None:
    """Make the world model's 'rec' loss NaN from update `calls` on (each `every`-th one)."""
    from worldmodel.agent import Agent
    original, seen = Agent._loss, [0]

    def loss(self, batch):
        total, losses, post = original(self, batch)
        seen[0] += 1
        if seen[0] > calls and seen[0] % every == 0:
            losses = {**losses, "rec": losses["rec"] * float("nan")}
            total = total * float("nan")
        return total, losses, post
    monkeypatch.setattr(Agent, "_loss", loss)


def test_nan_losses_are_skipped_and_counted(monkeypatch, tmp_path):
    nan_after(monkeypatch, 0, every=3)
    code, _, err = run_cli(["train", *FAST, "--logdir", str(tmp_path / "r"), "--steps", "100"])
    assert code == 0, err
    last = read_jsonl(tmp_path / "r" / "metrics.jsonl")[-1]
    assert last["skipped_updates"] > 0 and np.isfinite(last["loss/rec"])


def test_repeated_nan_stops_with_the_last_good_checkpoint(monkeypatch, tmp_path):
    nan_after(monkeypatch, 30)  # debug + FAST: updates start at step 64, 1 per 2 env steps
    run = tmp_path / "r"
    code, _, err = run_cli(["train", *FAST, "--logdir", str(run), "--steps", "400", "--train.max_skipped", "5"])
    good = checkpoint.list_checkpoints(run / "checkpoints")[-1]
    assert_one_line_error(code, err, "non-finite loss 'rec' in 5 consecutive updates",
                          f"last good checkpoint: {good}", "try a lower --train.model_lr")


def test_nan_in_the_actor_critic_is_skipped_without_corrupting_it(monkeypatch, tmp_path):
    from worldmodel.model import WorldModel
    monkeypatch.setattr(WorldModel, "reward", lambda self, feat, index=None: torch.full(feat.shape[:-1], float("nan")))
    run = tmp_path / "r"
    code, _, err = run_cli(["train", *FAST, "--logdir", str(run), "--steps", "100", "--train.max_skipped", "4"])
    assert_one_line_error(code, err, "non-finite loss 'actor_loss' in 4 consecutive", "--actor.lr")
    _, state = checkpoint.load_latest(run / "checkpoints")
    assert all(torch.isfinite(v).all() for v in state["agent"]["planner"].values() if torch.is_tensor(v))


# -- resources ------------------------------------------------------------------------------
def test_memory_preflight_stops_before_the_first_step(monkeypatch, tmp_path):
    import worldmodel.faults as faults
    monkeypatch.setattr(faults, "available_memory_bytes", lambda: 200_000)
    run = tmp_path / "r"
    code, out, err = run_cli(["train", "--preset", "debug", "--logdir", str(run), "--replay.capacity", "50000"])
    assert_one_line_error(code, err, "replay of 50,000 steps", "RAM", "try --replay.capacity ")
    assert not checkpoint.list_checkpoints(run / "checkpoints") and not (run / "metrics.jsonl").exists()
    monkeypatch.undo()
    code, out, err = run_cli(["train", "--preset", "debug", "--logdir", str(tmp_path / "ok"), "--steps", "8"])
    assert code == 0 and [ln for ln in out.splitlines() if ln.startswith("memory: replay 5,000 steps")]
