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
