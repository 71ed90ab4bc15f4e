"""Gymnasium adapters: spaces -> agent tensors, vector stepping, env resolution."""
from envs.driver import Driver, EnvError, Step
from envs.resolve import make_factory
from envs.spaces import ActionSpec, ObsKey, ObsSpec, SpaceError, action_spec, obs_spec

__all__ = ["ActionSpec", "Driver", "EnvError", "ObsKey", "ObsSpec", "SpaceError", "Step",
           "action_spec", "make_factory", "obs_spec"]
