import numpy as np
import pytest

from worldmodel.replay import Replay


def fill(replay, steps, lanes, rng, max_len=12):
    remaining = np.zeros(lanes, int)
    episode = np.full(lanes, -1)
    next_id = 0
    for _ in range(steps):
        first = remaining == 0
        for i in np.flatnonzero(first):
            remaining[i] = rng.integers(1, max_len)
            episode[i] = next_id
            next_id += 1
        remaining -= 1
        last = remaining == 0
        replay.add({"episode": episode.astype(np.float32), "is_first": first, "is_last": last,
                    "reward": rng.normal(size=lanes).astype(np.float32)})


@pytest.mark.parametrize("lanes", [1, 3])
def test_sequences_never_cross_episodes_and_respect_capacity(lanes):
    rng = np.random.default_rng(0)
    fields = {"episode": ((), np.float32), "is_first": ((), bool), "is_last": ((), bool), "reward": ((), np.float32)}
    replay = Replay(capacity=300, lanes=lanes, fields=fields, seed=1)
    fill(replay, 500, lanes, rng)
    assert len(replay) <= 300
    batch = replay.sample(64, 10)
    assert batch["mask"].shape == (64, 10) and batch["mask"][:, 0].all()
    assert batch["is_first"][:, 0].all()
    for seq, mask, first in zip(batch["episode"], batch["mask"], batch["is_first"]):
        valid = seq[mask]
        assert (valid == valid[0]).all(), "a sequence crossed an episode boundary"
        assert not first[1:][mask[1:]].any(), "is_first inside a sequence"
        assert mask[: mask.sum()].all(), "padding only at the end"


def test_long_episodes_fill_the_window_and_ongoing_episodes_are_sampled():
    fields = {"episode": ((), np.float32), "is_first": ((), bool), "is_last": ((), bool)}
    replay = Replay(capacity=100, lanes=1, fields=fields)
    for t in range(40):  # one ongoing episode of 40 steps
        replay.add({"episode": np.zeros(1, np.float32), "is_first": np.array([t == 0]), "is_last": np.array([False])})
    batch = replay.sample(32, 8)
    assert batch["mask"].all()  # the window slides back so it fits inside the episode


def test_state_dict_round_trip():
    fields = {"x": ((2,), np.float32), "is_first": ((), bool), "is_last": ((), bool)}
    a = Replay(50, 2, fields, seed=3)
    for t in range(30):
        a.add({"x": np.full((2, 2), t, np.float32), "is_first": np.array([t == 0, t % 7 == 0]),
               "is_last": np.array([False, t % 7 == 6])})
    b = Replay(50, 2, fields, seed=3)
    b.load_state_dict(a.state_dict())
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.sample(8, 4)["x"], b.sample(8, 4)["x"])


# -- replay context ---------------------------------------------------------------------------
CTX_FIELDS = {"step": ((), np.int64), "action": ((2,), np.float32), "is_first": ((), bool), "is_last": ((), bool),
              "ctx_deter": ((3,), np.float16), "ctx_index": ((2,), np.int16), "ctx_ok": ((), bool)}


def ctx_replay(steps=60, episode=25, capacity=200):
    """One lane of episodes of `episode` steps; step t stores latent deter = (t, t, t),
    index = (t, t) and action = (t, -t), so any lookup can be read back."""
    replay = Replay(capacity, 1, CTX_FIELDS, seed=0)
    for t in range(steps):
        replay.add({"step": np.array([t]), "action": np.array([[t, -t]], np.float32),
                    "is_first": np.array([t % episode == 0]), "is_last": np.array([t % episode == episode - 1]),
                    "ctx_deter": np.full((1, 3), t, np.float16), "ctx_index": np.full((1, 2), t, np.int16),
                    "ctx_ok": np.array([True])})
    return replay


def test_context_starts_a_sequence_from_the_latent_of_the_step_before():
    replay = ctx_replay()
    batch = replay.sample(256, 6)
    assert "ctx_ok" not in batch and batch["ctx_slot"].shape == (256, 6)
    begin = batch["step"][:, 0]
    inside = begin % 25 != 0  # starts inside an episode: continue from the step before
    assert inside.any() and (~inside).any()
    np.testing.assert_array_equal(batch["is_first"][:, 0], ~inside)
    np.testing.assert_array_equal(batch["ctx_deter"][inside, 0], begin[inside] - 1)
    np.testing.assert_array_equal(batch["ctx_index"][inside, 1], begin[inside] - 1)
    np.testing.assert_array_equal(batch["ctx_action"][inside, 0], begin[inside] - 1)
    assert (batch["ctx_action"][~inside] == 0).all()  # an episode start has no previous action


def test_context_is_not_used_without_a_latent_or_across_evicted_steps():
    replay = ctx_replay(steps=40, episode=1000, capacity=30)  # one episode; steps 0-9 evicted
    replay.data["ctx_ok"][0, 20 % 30] = False  # step 20 has no latent (e.g. an old chunk)
    batch = replay.sample(512, 4)
    begin = batch["step"][:, 0]
    fresh = (begin == 10) | (begin == 21)  # the oldest held step; the step after the hole
    assert fresh.any()
    np.testing.assert_array_equal(batch["is_first"][:, 0], fresh)


def test_write_context_refreshes_the_latents_of_sampled_steps_but_not_padding():
    replay = ctx_replay(steps=30, episode=25)
    batch = replay.sample(64, 8)  # episode 2 has 5 steps: its sequences end in padding
    assert not batch["mask"].all()
    deter = np.full(batch["mask"].shape + (3,), -1.0, np.float16)
    replay.write_context(batch["ctx_slot"], batch["mask"], deter, np.full(batch["mask"].shape + (2,), 7, np.int16))
    written = np.unique(batch["step"][batch["mask"]])
    held = replay.data["ctx_deter"][0, :30, 0]
    assert (held[written] == -1).all() and (replay.data["ctx_index"][0, written] == 7).all()
    untouched = np.setdiff1d(np.arange(30), written)
    np.testing.assert_array_equal(held[untouched], untouched)


def test_steps_added_without_a_latent_have_no_context():
    replay = ctx_replay(steps=5, episode=100)
    replay.add({"step": np.array([5]), "action": np.zeros((1, 2), np.float32), "is_first": np.array([False]),
                "is_last": np.array([True])})  # e.g. a terminal obs restored from a checkpoint
    assert not replay.data["ctx_ok"][0, 5] and replay.data["ctx_ok"][0, 4]
    with pytest.raises(KeyError, match="reward"):
        Replay(10, 1, {**CTX_FIELDS, "reward": ((), np.float32)}).add(
            {"step": np.array([0]), "action": np.zeros((1, 2), np.float32), "is_first": np.array([True]),
             "is_last": np.array([False])})


def _cartpole_agent(overrides=None):
    import gymnasium as gym
    import torch

    from envs.spaces import action_spec, obs_spec
    from worldmodel.agent import Agent
    from worldmodel.config import load_config

    env = gym.make("CartPole-v1")
    torch.manual_seed(0)
    return Agent(load_config(["debug"], overrides or {}), obs_spec(env.observation_space),
                 action_spec(env.action_space))


def test_posterior_from_a_context_continues_the_sequence_it_was_cut_from():
    import torch
    agent = _cartpole_agent()
    B, T = 3, 12
    g = torch.Generator().manual_seed(0)
    batch = {"obs": torch.randn(B, 2 * T, 4, generator=g),
             "action": torch.eye(2)[torch.randint(0, 2, (B, 2 * T), generator=g)],
             "is_first": torch.zeros(B, 2 * T, dtype=torch.bool)}
    batch["is_first"][:, 0] = True
    with torch.no_grad():
        full, _ = agent.model.posterior(batch)
        cut = {k: v[:, T:] for k, v in batch.items()}
        ctx = {"ctx_deter": full["deter"][:, T - 1].half(), "ctx_index": full["index"][:, T - 1].short(),
               "ctx_action": batch["action"][:, T - 1]}
        cont, _ = agent.model.posterior({**cut, **ctx})
        fresh, _ = agent.model.posterior({**cut, "is_first": cut["is_first"] | (torch.arange(T) == 0)})
    # the first step's deter depends only on the previous latent and action: equal up to
    # the float16 storage of deter; a fresh start (zeros, as without context) is far off
    err = (cont["deter"][:, 0] - full["deter"][:, T]).abs().max()
    assert err < 2e-3
    assert (fresh["deter"][:, 0] - full["deter"][:, T]).abs().max() > 50 * err


def test_training_stores_and_refreshes_the_replay_context(tmp_path):
    from worldmodel.config import load_config
    from worldmodel.trainer import Trainer

    cfg = load_config(["debug"], {"run.steps": 150, "train.prefill": 64, "run.logdir": str(tmp_path)})
    trainer = Trainer(cfg, tmp_path)
    trainer.run()
    data, n = trainer.replay.data, int(trainer.replay.count[0])
    assert data["ctx_ok"][0, :n].all()
    acted = data["ctx_deter"][0, :n].astype(np.float32).copy()
    batch = trainer.replay.sample(8, 8)
    continued = ~batch["is_first"][:, 0]
    assert continued.any()
    trainer.agent.train_step(batch)
    deter, index = trainer.agent.last_latent
    assert deter.shape == (8, 8, cfg.model.deter) and index.shape == (8, 8, cfg.model.stoch)
    trainer.replay.write_context(batch["ctx_slot"], batch["mask"], deter, index)
    slot = batch["ctx_slot"][batch["mask"]]
    np.testing.assert_array_equal(data["ctx_deter"][0, slot], deter[batch["mask"]])
    assert not np.allclose(acted[slot], deter[batch["mask"]].astype(np.float32))
    # ssm and hybrid keep no context: their per-layer states are too big to store per step
    off = Trainer(load_config(["debug"], {"model.dynamics": "ssm", "run.logdir": str(tmp_path / "ssm")}),
                  tmp_path / "ssm")
    assert "ctx_ok" not in off.replay.data and not off.replay.context
    off.driver.close()


def test_a_bf16_latent_is_kept_in_float16():
    # under bf16 autocast (CUDA) the posterior can come back in bfloat16, which numpy lacks
    import torch
    from worldmodel.agent import context_arrays
    deter = torch.tensor([[0.5, -0.25, 1.0]], dtype=torch.bfloat16)
    kept, index = context_arrays(deter, torch.tensor([[3, 17]]))
    assert kept.dtype == np.float16 and index.dtype == np.int16
    np.testing.assert_array_equal(kept, [[0.5, -0.25, 1.0]])
    np.testing.assert_array_equal(index, [[3, 17]])


def _replay(seed=1):
    fields = {"episode": ((), np.float32), "is_first": ((), bool), "is_last": ((), bool), "reward": ((), np.float32)}
    replay = Replay(capacity=300, lanes=2, fields=fields, seed=seed)
    fill(replay, 200, 2, np.random.default_rng(0))
    return replay


def test_prefetch_hands_out_the_batches_of_sampling_on_demand_in_order():
    from worldmodel.replay import Prefetch
    ref = _replay()
    want = [ref.sample(4, 6) for _ in range(5)]
    replay = _replay()
    prefetch = Prefetch(lambda: replay.sample(4, 6))
    got = []
    for _ in range(5):
        got.append(prefetch.take())
        prefetch.settle()
    prefetch.close()
    for a, b in zip(got, want):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_prefetch_draws_the_next_batch_while_the_caller_works_and_reraises_its_errors():
    import threading
    from worldmodel.replay import Prefetch
    main = threading.get_ident()
    threads, calls = [], []

    def draw():
        threads.append(threading.get_ident())
        calls.append(len(calls))
        if len(calls) == 3:
            raise ValueError("replay is empty")
        return len(calls)

    prefetch = Prefetch(draw)
    assert prefetch.take() == 1  # drawn on demand; the second draw starts at once
    prefetch.settle()
    assert threads == [main, threads[1]] and threads[1] != main
    assert prefetch.take() == 2  # ready: the one drawn during the "update"
    with pytest.raises(ValueError, match="replay is empty"):
        prefetch.settle()
    prefetch.close()


def test_training_with_prefetch_is_deterministic_and_trains(tmp_path):
    import json
    from worldmodel.config import load_config
    from worldmodel.trainer import Trainer

    losses = []
    for name in ("a", "b"):
        cfg = load_config(["debug"], {"run.steps": 160, "train.prefill": 64, "run.log_every": 32,
                                      "replay.prefetch": "on", "run.logdir": str(tmp_path / name)})
        trainer = Trainer(cfg, tmp_path / name)
        assert trainer.prefetch
        trainer.run()
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        losses.append([(r["step"], r["updates"], r.get("loss/rec")) for r in rows])
        assert trainer.agent.updates > 0 and trainer.replay.data["ctx_ok"][0].any()
    assert losses[0] == losses[1] and any(loss is not None for _, _, loss in losses[0])
