"""Runs SheepRL's own CLI inside SheepRL's venv, with instruments around it.

    benchmarks/.venv-sheeprl/bin/python benchmarks/sheeprl/_shim.py EVENTS.jsonl [hydra overrides ...]

This file is executed by SheepRL's interpreter (benchmarks/.venv-sheeprl), never imported
by the project. It pins torch's threads before anything runs (SheepRL's `num_threads` only
sets OMP_NUM_THREADS after torch is imported), then wraps three public names of SheepRL's
DreamerV3 module and Gymnasium's vector envs, and appends one JSON line per event to
EVENTS.jsonl (line-buffered, so a run stopped at its wall-clock budget keeps them):

  {"event": "params", "world_model": N, "actor": N, "critic": N, "target_critic": N}
  {"event": "update", "dt": s, "cpu": s, "t": unix time, "env_steps": N}   one per gradient step
  {"event": "episode", "return": R, "length": N, "env_steps": N, "t": unix time}   one per finished episode
  {"event": "stop", "env_steps": N, "t": unix time}      on SIGTERM (the budget), then it exits
  {"event": "end", "env_steps": N, "t": unix time}       at a normal exit

`dt` is the wall time of one call of `sheeprl.algos.dreamer_v3.dreamer_v3.train`: the world
model update plus the actor and critic updates in imagination, i.e. one gradient step; `cpu`
the CPU time of the calling thread meanwhile (with one torch thread, all of it), which other
jobs on a shared machine disturb much less than the wall time.
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import time

events_path = sys.argv[1]
sys.argv = ["sheeprl"] + sys.argv[2:]

import torch  # noqa: E402

threads = int(os.environ.get("SHEEPRL_THREADS", "1"))
torch.set_num_threads(threads)
torch.set_num_interop_threads(threads)

import gymnasium as gym  # noqa: E402
import sheeprl.algos.dreamer_v3.dreamer_v3 as dv3  # noqa: E402
from sheeprl.cli import run  # noqa: E402
from sheeprl.utils.env import get_episode_stats  # noqa: E402

log = open(events_path, "a", buffering=1)
counters = {"env_steps": 0}


def emit(**record) -> None:
    log.write(json.dumps(record) + "\n")


def _wrap_step(cls):
    original = cls.step

    def step(self, actions):
        out = original(self, actions)
        counters["env_steps"] += self.num_envs
        for _i, ret, length in get_episode_stats(out[4]):
            emit(event="episode", **{"return": ret}, length=length, env_steps=counters["env_steps"], t=time.time())
        return out

    cls.step = step


for _cls in (gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv):
    _wrap_step(_cls)


def _count(module) -> int:
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


_build_agent = dv3.build_agent


def build_agent(*args, **kwargs):
    built = _build_agent(*args, **kwargs)
    world_model, actor, critic, target_critic, _player = built
    emit(event="params", world_model=_count(world_model), actor=_count(actor), critic=_count(critic),
         target_critic=_count(target_critic), threads=torch.get_num_threads())
    return built


_train = dv3.train


def train(*args, **kwargs):
    t, c = time.perf_counter(), time.thread_time()
    result = _train(*args, **kwargs)
    emit(event="update", dt=time.perf_counter() - t, cpu=time.thread_time() - c, t=time.time(),
         env_steps=counters["env_steps"])
    return result


def stop(signum, frame):
    """Stopped at the comparison's wall-clock budget: record where the run got to, then exit."""
    emit(event="stop", t=time.time(), env_steps=counters["env_steps"], signal=signum)
    log.flush()
    os._exit(0)


dv3.build_agent = build_agent
dv3.train = train
signal.signal(signal.SIGTERM, stop)

if __name__ == "__main__":
    emit(event="start", t=time.time(), argv=sys.argv[1:], threads=torch.get_num_threads())
    atexit.register(lambda: emit(event="end", t=time.time(), env_steps=counters["env_steps"]))
    run()
