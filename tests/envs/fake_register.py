"""A module whose import registers an env, like a third-party package would (--env-import)."""
import gymnasium as gym

if "FakeRegistered-v0" not in gym.registry:
    gym.register(id="FakeRegistered-v0", entry_point="tests.envs.fake_envs:GoodEnv",
                 max_episode_steps=50)

if "FakeFourTuple-v0" not in gym.registry:
    gym.register(id="FakeFourTuple-v0", entry_point="tests.envs.fake_envs:FourTupleEnv",
                 max_episode_steps=50)
