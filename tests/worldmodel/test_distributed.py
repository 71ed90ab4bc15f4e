"""Data-parallel training under torchrun: 2 CPU processes (gloo) on the debug preset."""
import json
import os
import subprocess
import sys


from worldmodel.cli import main


def test_two_process_gloo_training_keeps_ranks_identical(tmp_path, capsys):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "worldmodel", "train", "--preset", "debug", "--logdir", str(run), "--steps", "200",
           "--run.checkpoint_every", "1000"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "effective batch 4 x 8 (2 sequences per rank)" in out.stdout
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["param_divergence"] == 0.0  # every rank applied the same updates
    assert max(m.get("updates", 0) for m in metrics) > 0
    # one model checkpoint (rank 0's); rank 1 keeps only its own envs' state
    main_ckpts = sorted((run / "checkpoints").glob("step_*.pt"))
    assert [p.name for p in main_ckpts] == ["step_000000200.pt"]
    from worldmodel import checkpoint
    state1 = checkpoint.read(run / "checkpoints" / "rank1" / "step_000000200.pt")
    state0 = checkpoint.read(main_ckpts[0])
    assert state1["agent"] == {} and state0["agent"]["model"] and state0["world_size"] == 2
    # resuming with another number of processes is refused in one line
    assert main(["train", "--preset", "debug", "--logdir", str(run), "--steps", "300"]) == 2
    err = capsys.readouterr().err
    assert "written by 2 process(es)" in err and "--nproc_per_node 2" in err
