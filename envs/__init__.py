"""Gymnasium adapters: spaces -> agent tensors, vector stepping, env resolution, checks.

Importing this package registers the built-in `worldmodel/...` envs with Gymnasium
(string entry points only; nothing heavy is imported).
"""
from envs.builtin import register_builtins
from envs.check import check_env_report
from envs.driver import Driver, EnvError, Step
from envs.resolve import EnvFactory, list_envs, make_factory, parse_env_kwargs
from envs.spaces import ActionSpec, ObsKey, ObsSpec, SpaceError, action_spec, obs_spec

register_builtins()


__all__ = ["ActionSpec", "Driver", "EnvError", "EnvFactory", "ObsKey", "ObsSpec", "SpaceError",
           "Step", "action_spec", "check_env_report", "list_envs", "make_factory", "obs_spec",
           "parse_env_kwargs", "register_builtins"]
