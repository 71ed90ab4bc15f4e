"""How Gymnasium spaces become the agent's tensors, in one place.

The world model sees every observation as a flat dict of named arrays:
  kind "vector": float32 (D,)        -> symlog MLP encoder, symlog MSE decoder
  kind "image":  uint8   (H, W, C)   -> CNN encoder, transposed-CNN decoder
and every action as one float32 vector of size `ActionSpec.dim`:
  discrete       one-hot (n,)
  multidiscrete  concatenated one-hots (sum n_i,)
  continuous     in [-1, 1]^d, scaled to the env's bounds by `to_env`
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np


class SpaceError(ValueError):
    """An observation or action space the agent cannot learn from or act in."""


@dataclass(frozen=True)
class ObsKey:
    name: str
    kind: str  # "vector" | "image"
    shape: tuple[int, ...]
    source: str = ""  # how the env's space became this key, for check-env reports


@dataclass(frozen=True)
class ObsSpec:
    keys: tuple[ObsKey, ...]
    dropped: tuple[str, ...] = ()  # dict keys that cannot be learned from (e.g. text)
    dropped_kinds: tuple[str, ...] = ()  # the space type of each dropped key, same order

    @property
    def notice(self) -> str | None:
        """One line telling the user which dict keys the agent never sees, or None."""
        if not self.dropped:
            return None
        kinds = self.dropped_kinds or ("?",) * len(self.dropped)
        named = ", ".join(f"'{n}' ({k})" for n, k in zip(self.dropped, kinds))
        return (f"observation keys dropped: {named}; the agent cannot learn from text, graph or "
                "sequence spaces (the shield and info still get the raw observation)")

    @property
    def vector_keys(self) -> list[ObsKey]:
        return [k for k in self.keys if k.kind == "vector"]

    @property
    def image_keys(self) -> list[ObsKey]:
        return [k for k in self.keys if k.kind == "image"]

    def bytes_per_step(self) -> int:
        total = 0
        for k in self.keys:
            total += int(np.prod(k.shape)) * (1 if k.kind == "image" else 4)
        return total


# Below this height/width a uint8 HxWxC Box is a grid of ids (MiniGrid's 7x7x3 view:
# object, colour, state), not a picture: a CNN built for 64x64 frames has nothing to
# convolve there. Such grids are flattened into a float vector of the raw ids (not
# one-hot: the id ranges are unknown from the space, and raw ids keep MiniGrid at 147
# inputs instead of ~1000). symlog leaves small ids almost unchanged.
MIN_IMAGE_SIDE = 16


def _is_uint8_hwc(space: gym.Space) -> bool:
    return (isinstance(space, gym.spaces.Box) and space.dtype == np.uint8
            and len(space.shape) == 3 and space.shape[-1] in (1, 3, 4))


def is_image(space: gym.Space) -> bool:
    """Whether the agent sees `space` through its CNN (uint8 HxWx{1,3,4}, sides >= 16)."""
    return _is_uint8_hwc(space) and min(space.shape[0], space.shape[1]) >= MIN_IMAGE_SIDE


_is_image = is_image


def _leaf(name: str, space: gym.Space) -> ObsKey | None:
    if _is_image(space):
        return ObsKey(name, "image", tuple(space.shape), f"Box{space.shape} uint8 -> CNN")
    if _is_uint8_hwc(space):
        size = int(np.prod(space.shape))
        return ObsKey(name, "vector", (size,),
                      f"Box{space.shape} uint8 grid (under {MIN_IMAGE_SIDE}px, not an image) "
                      "-> raw ids as floats, symlog MLP")
    if isinstance(space, gym.spaces.Box):
        size = int(np.prod(space.shape)) if space.shape else 1
        return ObsKey(name, "vector", (size,), f"Box{space.shape} -> symlog MLP")
    if isinstance(space, gym.spaces.Discrete):
        return ObsKey(name, "vector", (int(space.n),), f"Discrete({space.n}) -> one-hot MLP")
    if isinstance(space, gym.spaces.MultiBinary):
        size = int(np.prod(space.shape))
        return ObsKey(name, "vector", (size,), f"MultiBinary{space.shape} -> MLP")
    if isinstance(space, gym.spaces.MultiDiscrete):
        size = int(np.sum(space.nvec))
        return ObsKey(name, "vector", (size,), f"MultiDiscrete{tuple(space.nvec)} -> one-hot MLP")
    return None


def obs_spec(space: gym.Space) -> ObsSpec:
    """The agent's view of an observation space. Dict keys that cannot be learned
    from (text, graphs, sequences) are dropped and listed in `dropped`."""
    if isinstance(space, gym.spaces.Dict):
        keys, dropped, kinds = [], [], []
        for name, sub in space.spaces.items():
            leaf = _leaf(name, sub)
            if leaf is not None:
                keys.append(leaf)
            else:
                dropped.append(name)
                kinds.append(type(sub).__name__)
        if not keys:
            raise SpaceError(f"observation space Dict has no key the agent can learn from "
                             f"(dropped: {', '.join(dropped)}); use Box, Discrete or image keys")
        return ObsSpec(tuple(keys), tuple(dropped), tuple(kinds))
    leaf = _leaf("obs", space)
    if leaf is None:
        raise SpaceError(f"observation space {space} is not supported; use Box, Discrete, "
                         "MultiBinary, MultiDiscrete, uint8 HxWxC images, or a Dict of those")
    return ObsSpec((leaf,))


def _encode_leaf(key: ObsKey, space: gym.Space, value: Any) -> np.ndarray:
    """One env observation leaf, batched along axis 0, -> the agent's array (B, *shape)."""
    value = np.asarray(value)
    if key.kind == "image":
        return value.astype(np.uint8, copy=False)
    if isinstance(space, gym.spaces.Discrete):
        return np.eye(int(space.n), dtype=np.float32)[value.astype(np.int64) - int(space.start)]
    if isinstance(space, gym.spaces.MultiDiscrete):
        nvec = np.asarray(space.nvec).reshape(-1)
        start = np.asarray(space.start).reshape(-1)
        flat = value.reshape(value.shape[0], -1).astype(np.int64) - start
        return np.concatenate([np.eye(n, dtype=np.float32)[flat[:, i]] for i, n in enumerate(nvec)], -1)
    return value.reshape(value.shape[0], -1).astype(np.float32)


def encode_obs(spec: ObsSpec, space: gym.Space, obs: Any) -> dict[str, np.ndarray]:
    """Batched env observations (leading axis = env) -> {key: array (B, *shape)}."""
    if isinstance(space, gym.spaces.Dict):
        return {k.name: _encode_leaf(k, space.spaces[k.name], obs[k.name]) for k in spec.keys}
    (key,) = spec.keys
    return {key.name: _encode_leaf(key, space, obs)}


@dataclass(frozen=True)
class ActionSpec:
    kind: str  # "discrete" | "multidiscrete" | "continuous"
    dim: int  # size of the agent's action vector
    sizes: tuple[int, ...] = ()  # category counts (discrete kinds)
    low: np.ndarray | None = field(default=None, compare=False)
    high: np.ndarray | None = field(default=None, compare=False)
    starts: tuple[int, ...] = ()

    @property
    def discrete(self) -> bool:
        return self.kind != "continuous"

    def to_env(self, action: np.ndarray) -> np.ndarray:
        """Agent actions (B, dim) -> env actions: ints (B,) / (B, k), or floats in bounds (B, d)."""
        action = np.asarray(action, dtype=np.float32)
        if self.kind == "continuous":
            a = np.clip(action, -1.0, 1.0)
            return (self.low + (a + 1.0) * 0.5 * (self.high - self.low)).astype(np.float32)
        parts, i = [], 0
        for n, s in zip(self.sizes, self.starts):
            parts.append(action[:, i:i + n].argmax(-1) + s)
            i += n
        return parts[0].astype(np.int64) if self.kind == "discrete" else np.stack(parts, -1).astype(np.int64)

    def from_env(self, env_action: np.ndarray) -> np.ndarray:
        """Env actions (batched) -> agent actions (B, dim); the inverse of `to_env`."""
        env_action = np.asarray(env_action)
        if self.kind == "continuous":
            a = env_action.reshape(env_action.shape[0], -1).astype(np.float32)
            span = np.where(self.high > self.low, self.high - self.low, 1.0)
            return np.clip(2.0 * (a - self.low) / span - 1.0, -1.0, 1.0).astype(np.float32)
        cols = env_action.reshape(env_action.shape[0], -1).astype(np.int64)
        return np.concatenate([np.eye(n, dtype=np.float32)[cols[:, i] - s]
                               for i, (n, s) in enumerate(zip(self.sizes, self.starts))], -1)


def action_spec(space: gym.Space) -> ActionSpec:
    if isinstance(space, gym.spaces.Discrete):
        return ActionSpec("discrete", int(space.n), (int(space.n),), starts=(int(space.start),))
    if isinstance(space, gym.spaces.MultiDiscrete):
        nvec = tuple(int(n) for n in np.asarray(space.nvec).reshape(-1))
        starts = tuple(int(s) for s in np.asarray(space.start).reshape(-1))
        return ActionSpec("multidiscrete", sum(nvec), nvec, starts=starts)
    if isinstance(space, gym.spaces.Box) and np.issubdtype(space.dtype, np.floating):
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise SpaceError(f"action space {space} has infinite bounds; give the Box finite low/high "
                             "(the agent acts in [-1, 1] and scales to the bounds)")
        d = int(np.prod(space.shape))
        return ActionSpec("continuous", d, low=space.low.reshape(-1).astype(np.float32),
                          high=space.high.reshape(-1).astype(np.float32))
    raise SpaceError(f"action space {space} is not supported; use Discrete, MultiDiscrete or a float Box")
