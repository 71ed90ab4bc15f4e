"""Resolving --env targets, --env-kwargs and --env-import into env factories."""
from __future__ import annotations

import pickle

import gymnasium as gym
import pytest

import envs
from envs import EnvError
from envs.checked import CheckedEnv
from tests.envs.fake_envs import GoodEnv


def _one_line_error(match: str, fn, *args, **kwargs) -> str:
    with pytest.raises(EnvError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert match in msg, msg
    return msg


def test_registered_id_is_wrapped_in_checked_env() -> None:
    env = envs.make_factory("CartPole-v1")()
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(type(env))
        env = env.env
    # TimeLimit stays outside the checks; gymnasium's passive checker is replaced by them.
    assert chain[:2] == [gym.wrappers.TimeLimit, CheckedEnv]
    assert gym.wrappers.PassiveEnvChecker not in chain
    assert env.spec.id == "CartPole-v1"


def test_unknown_id_names_the_closest() -> None:
    _one_line_error("did you mean 'CartPole-v1'?", envs.make_factory, "CartPol-v1")
    _one_line_error("did you mean 'worldmodel/SafeCorridor-v0'?", envs.make_factory,
                    "worldmodel/SafeCoridor-v0")


def test_module_class_entry_point_with_kwargs() -> None:
    env = envs.make_factory("tests.envs.fake_envs:GoodEnv", {"length": 2})()
    env.reset(seed=0)
    env.step(0)
    assert env.step(0)[2] is True  # terminated after length=2 steps


def test_module_factory_function_entry_point() -> None:
    env = envs.make_factory("tests.envs.fake_envs:make_good")()
    assert isinstance(env.unwrapped, GoodEnv) and env.unwrapped.length == 3


def test_callable_from_python_and_factory_pickles() -> None:
    factory = envs.make_factory(GoodEnv, {"length": 7})
    assert factory().unwrapped.length == 7
    clone = pickle.loads(pickle.dumps(factory))  # AsyncVectorEnv ships factories to workers
    assert clone().unwrapped.length == 7


@pytest.mark.parametrize("target, match", [
    ("tests.envs.no_such_module:Env", "module 'tests.envs.no_such_module' not found"),
    ("tests.envs.fake_envs:GoddEnv", "has no attribute 'GoddEnv'; did you mean 'tests.envs.fake_envs:GoodEnv'?"),
    ("tests.envs.fake_envs:NotAnEnv", "class NotAnEnv is not a gymnasium.Env"),
    ("tests.envs.fake_envs:NOT_CALLABLE", "int object is not callable"),
])
def test_bad_entry_points_are_one_line(target: str, match: str) -> None:
    _one_line_error(match, envs.make_factory, target)


def test_factory_returning_non_env_is_one_line() -> None:
    factory = envs.make_factory("tests.envs.fake_envs:returns_not_an_env")
    _one_line_error("returned a object, not a gymnasium.Env", factory)


def test_constructor_errors_are_one_line() -> None:
    _one_line_error("RuntimeError: simulator license not found",
                    envs.make_factory("tests.envs.fake_envs:CrashOnInitEnv"))
    msg = _one_line_error("unexpected keyword argument 'sise'",
                          envs.make_factory("tests.envs.fake_envs:GoodEnv", {"sise": 3}))
    assert "check --env-kwargs" in msg


def test_constructor_errors_pass_through_the_driver_as_one_line() -> None:
    factory = envs.make_factory("tests.envs.fake_envs:CrashOnInitEnv")
    _one_line_error("simulator license not found", envs.Driver, factory)


def test_env_kwargs_json() -> None:
    assert envs.parse_env_kwargs('{"size": 8, "hard": true}') == {"size": 8, "hard": True}
    assert envs.parse_env_kwargs("") == {} and envs.parse_env_kwargs(None) == {}
    _one_line_error("--env-kwargs is not valid JSON", envs.parse_env_kwargs, "{size: 8}")
    _one_line_error("must be a JSON object", envs.parse_env_kwargs, "[1, 2]")


def test_env_import_runs_registration_and_reports_failures() -> None:
    if "FakeRegistered-v0" not in gym.registry:
        with pytest.raises(EnvError):
            envs.make_factory("FakeRegistered-v0")
    factory = envs.make_factory("FakeRegistered-v0", imports=("tests.envs.fake_register",))
    assert isinstance(factory().unwrapped, GoodEnv)
    _one_line_error("--env-import: module 'tests.envs.nope' not found", envs.make_factory,
                    "CartPole-v1", imports=("tests.envs.nope",))


def test_gymnasium_module_colon_id_form() -> None:
    env = envs.make_factory("tests.envs.fake_register:FakeRegistered-v0")()
    assert isinstance(env.unwrapped, GoodEnv)


def test_bad_obs_mode() -> None:
    _one_line_error("--obs must be one of state, pixels", envs.make_factory, "CartPole-v1", obs="rgb")


def test_minigrid_needs_extra_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    real_import_module = importlib.import_module

    def import_module(name: str, package: str | None = None):
        if name == "minigrid" or name.startswith("minigrid."):
            raise ModuleNotFoundError("No module named 'minigrid'", name="minigrid")
        return real_import_module(name, package)

    monkeypatch.setattr(importlib, "import_module", import_module)
    for env_id in [i for i in list(gym.registry) if i.startswith(("MiniGrid-", "BabyAI-"))]:
        monkeypatch.delitem(gym.registry, env_id)  # as if minigrid had never been imported
    msg = _one_line_error("needs the minigrid extra", envs.make_factory, "MiniGrid-LavaGapS5-v0")
    assert msg == 'MiniGrid-LavaGapS5-v0 needs the minigrid extra: pip install -e ".[minigrid]"'


def test_list_envs_groups_gymnasium_ids() -> None:
    rows = envs.list_envs()
    ids = [i for i, _ in rows]
    assert ids[:2] == ["worldmodel/SafeCorridor-v0", "worldmodel/CueMemory-v0"]
    assert dict(rows)["CartPole-v1"].startswith("gymnasium: ")
    assert len(ids) == len(set(ids))


def test_example_custom_env_resolves_without_cwd_on_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A console script's sys.path lacks the working directory; resolution adds it back."""
    import os
    import sys

    cwd = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", cwd)])
    for name in [m for m in sys.modules if m == "examples" or m.startswith("examples.")]:
        monkeypatch.delitem(sys.modules, name)
    env = envs.make_factory("examples.custom_env:TargetEnv", envs.parse_env_kwargs('{"size": 8}'))()
    assert env.unwrapped.size == 8
    text, code = envs.check_env_report("examples.custom_env:TargetEnv", {"size": 8}, steps=100)
    assert code == 0, text


def test_parallel_workers_rerun_env_imports() -> None:
    """Spawned workers start with an empty registry; the factory re-imports --env-import."""
    import numpy as np

    factory = envs.make_factory("FakeRegistered-v0", imports=("tests.envs.fake_register",))
    driver = envs.Driver(factory, num_envs=2, parallel=True)
    driver.reset()
    step = driver.step(np.zeros(2, np.int64))
    assert step.reward.tolist() == [1.0, 1.0]
    driver.close()
