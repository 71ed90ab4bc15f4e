"""Replay: whole trajectories in, fixed-length sequences out, bounded capacity.

Each env writes into its own lane, a ring buffer of capacity // num_envs steps, so an
episode is contiguous inside its lane. Sampled sequences never cross episodes: a sequence
starts inside one episode and is cut at its end; steps past the end are padding with
mask 0 (losses ignore them). Episodes shorter than the sequence length are still used
whole, which matters early in CartPole, where episodes last 10-20 steps.

Replay context (fields `ctx_deter`, `ctx_index`, `ctx_ok`, when given; RAM only): each step
also keeps a latent state of the agent after that step's observation -- the acting posterior
when it was collected, then the newest training posterior (`write_context`). A sequence that starts
inside an episode then starts from the latent of the step before it, not from zeros. Without
it the model only ever learns from states at most `length` steps old, while acting runs one
posterior over the whole episode: measured on CartPole, the continue head predicted 0.04
(termination) where a 32-step window gave 0.97, once episodes lasted 150+ steps.

On disk (when given a directory): every `chunk` steps of a lane are also written to
`<directory>/lane{L}_{first:012d}.npz`, atomically, so a run killed at any moment can
rebuild its replay from the chunks plus the partial chunk stored in the checkpoint
(`state_dict` / `load_state_dict`). Chunks whose steps have all left the ring are deleted,
so disk use is bounded by the capacity (plus one chunk per lane).

Legend: L lanes (= envs), N steps per lane, B batch, T sequence length.
"""
from __future__ import annotations

import re
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

import numpy as np
import torch

from worldmodel.checkpoint import atomic_write_bytes

CHUNK_NAME = re.compile(r"^lane(\d+)_(\d{12})\.npz$")
CONTEXT = ("ctx_deter", "ctx_index", "ctx_ok")  # optional fields: the replay context (see above)


class Replay:
    def __init__(self, capacity: int, lanes: int, fields: dict[str, tuple[tuple[int, ...], Any]],
                 seed: int = 0, directory: str | Path | None = None, chunk: int = 1024,
                 keep_saved: int = 1) -> None:
        """`fields`: name -> (shape of one step, dtype). is_first / is_last / is_terminal,
        reward and action are fields like any other. `directory`: where chunks go (None:
        RAM only). `keep_saved`: how many of the newest `state_dict`s (checkpoints) must
        stay restorable, which keeps the chunks they need on disk."""
        self.lanes = lanes
        self.size = max(1, capacity // lanes)  # steps per lane
        self.data = {k: np.zeros((lanes, self.size, *shape), dtype) for k, (shape, dtype) in fields.items()}
        self.count = np.zeros(lanes, np.int64)  # steps ever written per lane (absolute positions)
        # oldest valid absolute position per lane: count - size once full, later after a
        # resume that found fewer chunks on disk than the ring can hold
        self.floor = np.zeros(lanes, np.int64)
        self.ep_start = np.zeros((lanes, self.size), np.int64)  # absolute start of each step's episode
        self.ep_end = np.zeros((lanes, self.size), np.int64)  # absolute end (exclusive) once known
        self.cur_start = np.zeros(lanes, np.int64)
        self.open = np.zeros(lanes, bool)  # lane's newest episode has not ended yet
        self.rng = np.random.default_rng(seed)
        self.directory = Path(directory) if directory is not None else None
        self.chunk = max(1, min(chunk, self.size))  # a chunk must still be in the ring when full
        self.saved: deque[np.ndarray] = deque(maxlen=max(1, keep_saved))  # counts of recent state_dicts
        self.context = all(k in self.data for k in CONTEXT)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def _oldest(self) -> np.ndarray:
        return np.maximum(self.count - self.size, self.floor)

    def __len__(self) -> int:
        return int((self.count - self._oldest()).sum())

    def add(self, step: dict[str, np.ndarray], lanes: np.ndarray | None = None) -> None:
        """One step for every lane: each field (L, ...). Needs `is_first` and `is_last`.
        `lanes`: add to these lanes only (fields then have their length)."""
        lanes = np.arange(self.lanes) if lanes is None else np.asarray(lanes, np.int64)
        pos = self.count[lanes] % self.size
        for k, arr in self.data.items():
            if k in step:
                arr[lanes, pos] = step[k]
            elif k in CONTEXT:  # no latent for this step (e.g. a terminal obs kept by a checkpoint)
                arr[lanes, pos] = 0
            else:
                raise KeyError(f"replay step lacks field {k!r}")
        first = np.asarray(step["is_first"], bool)
        last = np.asarray(step["is_last"], bool)
        # An episode cut short without is_last (its env was restarted after a crash) ends
        # where the next one begins, so its steps still read a valid end.
        for lane in lanes[first & self.open[lanes]]:
            self._close(lane, self.count[lane])
        self.cur_start[lanes] = np.where(first, self.count[lanes], self.cur_start[lanes])
        self.ep_start[lanes, pos] = self.cur_start[lanes]
        self.count[lanes] += 1
        # A finished episode learns its end once: write it over the episode's stored steps
        # (amortised O(1) per step). Ongoing episodes read their end from `count`.
        for lane in lanes[last]:
            self._close(lane, self.count[lane])
        self.open[lanes] = ~last
        if self.directory is not None:
            for lane in lanes[self.count[lanes] % self.chunk == 0]:
                self._write_chunk(int(lane), int(self.count[lane]) - self.chunk)

    def _close(self, lane: int, end: int) -> None:
        begin = max(self.cur_start[lane], end - self.size, self.floor[lane])
        self.ep_end[lane, np.arange(begin, end) % self.size] = end

    def _ends(self, lane: np.ndarray, abs_pos: np.ndarray) -> np.ndarray:
        """Absolute end (exclusive) of the episode holding each step."""
        start = self.ep_start[lane, abs_pos % self.size]
        ongoing = (start == self.cur_start[lane]) & self.open[lane]
        return np.where(ongoing, self.count[lane], self.ep_end[lane, abs_pos % self.size])

    def sample(self, batch: int, length: int) -> dict[str, np.ndarray]:
        """B sequences of T steps, each inside one episode, plus `mask` (B, T)."""
        oldest_all = self._oldest()
        filled = self.count - oldest_all
        lanes_ok = np.flatnonzero(filled > 0)
        if len(lanes_ok) == 0:
            raise ValueError("replay is empty")
        # choose lanes in proportion to how much they hold, then a uniform step in the lane
        weights = filled[lanes_ok] / filled[lanes_ok].sum()
        lane = lanes_ok[self.rng.choice(len(lanes_ok), batch, p=weights)]
        oldest = oldest_all[lane]
        pos = oldest + (self.rng.random(batch) * filled[lane]).astype(np.int64)
        start = np.maximum(self.ep_start[lane, pos % self.size], oldest)
        end = self._ends(lane, pos)
        # slide the window back so it fits inside the episode when the episode is long enough
        begin = np.minimum(pos, np.maximum(start, end - length))
        steps = begin[:, None] + np.arange(length)[None]  # (B, T) absolute positions
        mask = steps < end[:, None]
        steps = np.where(mask, steps, begin[:, None])  # padding repeats a valid step
        idx = (lane[:, None], steps % self.size)
        out = {k: arr[idx] for k, arr in self.data.items() if k not in CONTEXT}
        out["mask"] = mask
        out["is_first"] = out["is_first"].copy()
        if not self.context:  # every sampled sequence starts a fresh latent state
            out["is_first"][:, 0] = True
            return out
        # ...or, with replay context, from the stored latent of the step before, when that
        # step is in the same episode and still held: ctx_* (B, ...) and its action (B, A)
        prev = (begin - 1) % self.size
        ok = (begin > start) & self.data["ctx_ok"][lane, prev]
        out["is_first"][:, 0] = ~ok
        out["ctx_deter"] = self.data["ctx_deter"][lane, prev]
        out["ctx_index"] = self.data["ctx_index"][lane, prev]
        out["ctx_action"] = np.where(ok[:, None], self.data["action"][lane, prev], 0.0)
        out["ctx_slot"] = lane[:, None] * self.size + steps % self.size  # (B, T): for write_context
        return out

    def write_context(self, slot: np.ndarray, mask: np.ndarray, deter: np.ndarray, index: np.ndarray) -> None:
        """Store fresher latents at the steps of a sampled batch: slot, mask (B, T) from
        `sample`, deter (B, T, D), index (B, T, S). Padding (mask 0) is skipped."""
        lane, pos = np.divmod(slot[mask], self.size)
        self.data["ctx_deter"][lane, pos] = deter[mask]
        self.data["ctx_index"][lane, pos] = index[mask]
        self.data["ctx_ok"][lane, pos] = True

    # -- chunks on disk ---------------------------------------------------------------------
    def _chunk_path(self, lane: int, first: int) -> Path:
        assert self.directory is not None
        return self.directory / f"lane{lane}_{first:012d}.npz"

    def _steps(self, lane: int, begin: int, end: int) -> dict[str, np.ndarray]:
        """The fields that persist (chunks, checkpoints) of steps [begin, end). Not the
        context: a resumed run refreshes a step's latent the first time it is trained on."""
        idx = np.arange(begin, end) % self.size
        return {k: arr[lane, idx] for k, arr in self.data.items() if k not in CONTEXT}

    def _write_chunk(self, lane: int, first: int) -> None:
        if first >= self.floor[lane]:  # else part of it was lost before a resume: never write a hole
            arrays = self._steps(lane, first, first + self.chunk)
            atomic_write_bytes(self._chunk_path(lane, first), lambda f: np.savez(f, **arrays))
        # Bounded disk: drop chunks whose steps have left the ring -- as seen from the oldest
        # checkpoint still kept, so a resume from any of them finds all its steps.
        protected = min([int(c[lane]) for c in self.saved] + [int(self.count[lane])])
        evicted = protected - self.size  # chunks ending at or before this are not needed
        if evicted > 0:
            for path in self._chunks(lane):
                if int(CHUNK_NAME.match(path.name).group(2)) + self.chunk <= evicted:
                    path.unlink(missing_ok=True)

    def _chunks(self, lane: int) -> list[Path]:
        if self.directory is None or not self.directory.is_dir():
            return []
        found = [(int(m.group(2)), p) for p in self.directory.iterdir()
                 if (m := CHUNK_NAME.match(p.name)) and int(m.group(1)) == lane]
        return [p for _, p in sorted(found)]

    def clear_disk(self) -> None:
        """Delete every chunk (a fresh start in a directory a crashed run left behind)."""
        if self.directory is not None and self.directory.is_dir():
            for path in self.directory.iterdir():
                if CHUNK_NAME.match(path.name):
                    path.unlink(missing_ok=True)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to rebuild the replay from the chunks: per-lane counts
        and the steps since each lane's last full chunk (as tensors: weights_only loads).
        Without a directory, every stored step."""
        partial, partial_from = [], []
        for lane in range(self.lanes):
            c, oldest = int(self.count[lane]), int(self._oldest()[lane])
            begin = max(c - c % self.chunk, oldest) if self.directory is not None else oldest
            partial_from.append(begin)
            partial.append({k: torch.from_numpy(np.ascontiguousarray(v))
                            for k, v in self._steps(lane, begin, c).items()})
        self.saved.append(self.count.copy())
        return {"count": torch.from_numpy(self.count.copy()), "chunk": self.chunk, "partial": partial,
                "partial_from": partial_from, "on_disk": self.directory is not None}

    def load_state_dict(self, state: dict[str, Any], prune: bool = True) -> None:
        """Rebuild the ring from chunks on disk plus the checkpoint's partial chunks. Keeps
        exactly `count[lane]` steps per lane (the newest that fit); chunk files newer than
        the checkpoint are deleted, since their env steps will run again (prune=False:
        left alone, for tools that only read a run, which may still be training)."""
        counts = np.asarray(state["count"], np.int64)
        if len(counts) != self.lanes or int(state["chunk"]) != self.chunk:
            raise ValueError(f"replay layout changed: {len(counts)} lanes x chunk {int(state['chunk'])} "
                             f"saved, {self.lanes} x {self.chunk} now")
        for lane in range(self.lanes):
            self._load_lane(lane, int(counts[lane]), int(state["partial_from"][lane]),
                            state["partial"][lane], bool(state["on_disk"]), prune)
        self.saved.clear()
        self.saved.append(counts.copy())

    def _load_lane(self, lane: int, count: int, partial_from: int, partial: dict[str, Any],
                   on_disk: bool, prune: bool = True) -> None:
        split = count - count % self.chunk  # full chunks cover [.., split), partial [split, count)
        want_from = max(0, count - self.size)
        # newest first: pieces must join up with no gap, back to want_from
        pieces = [(partial_from, {k: np.asarray(v) for k, v in partial.items()})]
        begin = partial_from
        files = {int(CHUNK_NAME.match(p.name).group(2)): p for p in self._chunks(lane)}
        for first, path in files.items():
            if first >= split and prune:
                path.unlink(missing_ok=True)  # written after the checkpoint: replayed anyway
        for first in sorted((f for f in files if f < split), reverse=True):
            if begin <= want_from or first + self.chunk != begin:
                break
            try:
                with np.load(files[first], allow_pickle=False) as z:  # plain arrays, never code
                    # the context is not on disk: a resumed step keeps ctx_ok False, and its
                    # sequences start from zeros until training writes its latent back
                    arrays = {k: z[k] for k in self.data if k not in CONTEXT}
                if any(len(a) != self.chunk for a in arrays.values()):
                    raise ValueError("wrong length")
            except Exception as exc:  # noqa: BLE001 - a damaged chunk ends the usable history
                print(f"warning: replay chunk {files[first].name} unreadable ({type(exc).__name__}); "
                      f"older steps of lane {lane} are dropped", file=sys.stderr)
                break
            keep = max(first, want_from)
            pieces.append((keep, {k: a[keep - first:] for k, a in arrays.items()}))
            begin = keep
        if begin > want_from and on_disk and count > 0:
            print(f"warning: replay lane {lane}: steps {want_from}..{begin} missing on disk; "
                  f"resuming with {count - begin} of them", file=sys.stderr)
        self.count[lane], self.floor[lane] = count, begin
        for first, arrays in pieces:
            n = len(next(iter(arrays.values()))) if arrays else 0
            idx = np.arange(first, first + n) % self.size
            for k, arr in self.data.items():
                if k in arrays:
                    arr[lane, idx] = arrays[k]
        self._rebuild_episodes(lane)

    def _rebuild_episodes(self, lane: int) -> None:
        """ep_start / ep_end / cur_start / open of one lane from its is_first / is_last."""
        lo, hi = int(self.floor[lane]), int(self.count[lane])
        if hi <= lo:
            self.cur_start[lane], self.open[lane] = hi, False
            return
        t = np.arange(lo, hi)
        idx = t % self.size
        first = self.data["is_first"][lane, idx].astype(bool)
        last = self.data["is_last"][lane, idx].astype(bool)
        start = np.maximum.accumulate(np.where(first, t, lo))
        # an episode ends after its is_last, or where the next is_first cuts it short
        cut = np.zeros_like(last)
        cut[:-1] = first[1:]
        marker = np.where(last | cut, t + 1, np.iinfo(np.int64).max)
        end = np.minimum.accumulate(marker[::-1])[::-1]
        self.ep_start[lane, idx] = start
        self.ep_end[lane, idx] = np.where(end == np.iinfo(np.int64).max, hi, end)
        self.cur_start[lane] = start[-1]
        self.open[lane] = not last[-1]


Batch = TypeVar("Batch")


class Prefetch(Generic[Batch]):
    """Draws the next batch in a background thread while the current update trains, so an
    accelerator does not wait for the replay's gather, the pinning and the host-to-device
    copy (`replay.prefetch`; on by default on CUDA).

      batch = prefetch.take()    # the batch drawn during the previous update (or one now),
                                 # and the next draw starts, from the replay as it is now
      ... train on batch ...
      prefetch.settle()          # wait for that draw: call before anything writes to the
                                 # replay (new env steps, the replay context's write-back)

    `draw` reads the replay and nothing else touches it while a draw runs, so the batches
    depend only on the seed: the same run twice gives the same batches. What changes against
    drawing on demand: a batch is drawn one update earlier, so it lacks the env steps of the
    last update interval (with the defaults, train.ratio 512 and 16 x 64 sequences, an update
    comes every 2 env steps) and reads the replay context from before the last update's
    write-back."""

    def __init__(self, draw: Callable[[], Batch]) -> None:
        self.draw = draw
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-prefetch")
        self.pending: Future[Batch] | None = None

    def take(self) -> Batch:
        batch = self.pending.result() if self.pending is not None else self.draw()
        self.pending = self.pool.submit(self.draw)
        return batch

    def settle(self) -> None:
        if self.pending is not None:
            self.pending.result()  # re-raises what the draw raised

    def close(self) -> None:
        """Wait for a draw in flight and drop its batch (the run is over)."""
        self.pool.shutdown(wait=True)
        self.pending = None
