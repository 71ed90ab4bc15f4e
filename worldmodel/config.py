"""Configuration: one YAML of defaults and presets, dotted overrides, type checks.

  cfg = load_config(presets=["small"], overrides={"model.deter": "128"})
  cfg.model.deter            -> 128 (attribute access, read-only)
  cfg.to_dict()              -> plain nested dict (what is saved to the run directory)

Only factories read the config; modules take plain keyword arguments.
"""
from __future__ import annotations

import difflib
import functools
import io
import json
from pathlib import Path
from typing import Any, Iterable

from ruamel.yaml import YAML

CONFIG_FILE = Path(__file__).with_name("configs.yaml")


class ConfigError(ValueError):
    """A bad preset, key or value; str is one line naming what and how to fix it."""


class Config:
    """A frozen nested mapping with attribute access."""

    def __init__(self, data: dict[str, Any]) -> None:
        object.__setattr__(self, "_data", data)

    def __getattr__(self, name: str) -> Any:
        try:
            value = self._data[name]
        except KeyError:
            raise AttributeError(name) from None
        return Config(value) if isinstance(value, dict) and not _is_free_dict(name) else value

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("the config is frozen; pass overrides to load_config")

    def get(self, dotted: str) -> Any:
        node: Any = self._data
        for part in dotted.split("."):
            node = node[part]
        return node

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._data))

    def to_yaml(self) -> str:
        yaml = YAML()
        yaml.default_flow_style = False
        buf = io.StringIO()
        yaml.dump(self.to_dict(), buf)
        return buf.getvalue()

    def __repr__(self) -> str:
        return f"Config({self._data!r})"


# Keys whose value is a free-form dict (no fixed schema), e.g. env constructor kwargs.
FREE_DICTS = {"kwargs"}


def _is_free_dict(name: str) -> bool:
    return name in FREE_DICTS


@functools.lru_cache(maxsize=1)  # parsed once per process (the CLI asks several times); read-only
def _read_yaml() -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    yaml = YAML()  # round-trip: keeps the comments, which are the keys' help text
    with open(CONFIG_FILE) as f:
        raw = yaml.load(f)
    docs: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        for key in node:
            dotted = f"{prefix}{key}"
            comment = node.ca.items.get(key)
            if comment and comment[2] is not None:
                docs[dotted] = comment[2].value.strip().lstrip("#").strip().split("\n")[0]
            if isinstance(node[key], dict) and key not in FREE_DICTS:
                walk(node[key], dotted + ".")

    walk(raw["defaults"], "")
    plain = json.loads(json.dumps(raw))
    return plain["defaults"], plain.get("presets", {}), docs


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key not in FREE_DICTS:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree[p]
    tree[leaf] = value


def _closest(key: str, options: Iterable[str]) -> str:
    options = list(options)
    match = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
    if not match:  # compare the last part only, e.g. "deterr" -> "model.deter"
        tails = {o.split(".")[-1]: o for o in options}
        last = difflib.get_close_matches(key.split(".")[-1], list(tails), n=1, cutoff=0.6)
        match = [tails[last[0]]] if last else []
    return f"; did you mean '{match[0]}'?" if match else ""


def parse_value(text: str) -> Any:
    """A command-line value as YAML scalar / flow collection ('3', '1e-4', 'true', '[a, b]')."""
    try:
        return YAML(typ="safe").load(text) if text.strip() else ""
    except Exception:
        return text


def coerce(dotted: str, value: Any, default: Any) -> Any:
    """Check `value` against the type of `default`; convert where that is lossless."""
    where = f"config key '{dotted}'"
    if isinstance(value, str) and isinstance(default, (bool, int, float)):
        value = parse_value(value)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return "" if value is None else (str(value) if not isinstance(value, bool) else ("on" if value else "off"))
    if isinstance(default, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return value
    if isinstance(default, dict):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{where} must be a JSON object, got {value!r} ({exc.msg})") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return value
    return value


CHOICES = {
    "env.obs": ("state", "pixels"),
    "run.precision": ("float32", "bf16"),
    "model.dynamics": ("gru", "ssm", "hybrid"),
    "actor.grad": ("auto", "reinforce", "dynamics"),
    "planner.kind": ("actor", "cem", "mppi"),
    "planner.latent": ("sample", "mode"),
    "shield.mode": ("on", "off", "learned"),
    "replay.prefetch": ("auto", "on", "off"),
}


def _fill_missing(tree: dict[str, Any], defaults: dict[str, Any]) -> None:
    for key, value in defaults.items():
        if key not in tree:
            tree[key] = json.loads(json.dumps(value))
        elif isinstance(value, dict) and isinstance(tree[key], dict) and key not in FREE_DICTS:
            _fill_missing(tree[key], value)


def fill_defaults(tree: dict[str, Any]) -> dict[str, Any]:
    """A copy of a saved config with keys added since it was saved set to their defaults."""
    out = json.loads(json.dumps(tree))
    _fill_missing(out, _read_yaml()[0])
    return out


def preset_names() -> list[str]:
    return list(_read_yaml()[1])


def key_docs() -> tuple[dict[str, Any], dict[str, str]]:
    """(flattened defaults, help text per dotted key) for --help."""
    defaults, _, docs = _read_yaml()
    return flatten(defaults), docs


def load_config(presets: Iterable[str] = (), overrides: dict[str, Any] | None = None,
                base: dict[str, Any] | None = None) -> Config:
    """Defaults (or `base`, e.g. a run's saved config), then presets left to right, then
    dotted overrides. Raises ConfigError with a one-line message on any mistake."""
    defaults, all_presets, _ = _read_yaml()
    tree = json.loads(json.dumps(base if base is not None else defaults))
    _fill_missing(tree, defaults)  # a run saved before a key existed gets its default
    schema = flatten(defaults)
    for name in presets:
        if name not in all_presets:
            raise ConfigError(f"unknown preset '{name}'{_closest(name, all_presets)} "
                              f"(presets: {', '.join(all_presets)})")
        for dotted, value in flatten(all_presets[name]).items():
            _set(tree, dotted, coerce(dotted, value, schema[dotted]))
    for dotted, value in (overrides or {}).items():
        if dotted not in schema:
            raise ConfigError(f"unknown config key '{dotted}'{_closest(dotted, schema)}")
        _set(tree, dotted, coerce(dotted, value, schema[dotted]))
    flat = flatten(tree)
    for dotted, choices in CHOICES.items():
        if flat[dotted] not in choices:
            raise ConfigError(f"config key '{dotted}' must be one of {', '.join(choices)}, got {flat[dotted]!r}")
    for dotted in ("run.steps", "replay.batch", "replay.length", "replay.capacity", "replay.chunk", "model.deter",
                   "model.stoch", "model.classes", "model.units", "model.bins", "model.ssm_layers",
                   "model.ssm_state", "model.window", "behavior.horizon",
                   "env.workers", "planner.samples", "planner.horizon", "planner.iterations",
                   "planner.elites", "planner.temperature"):
        if flat[dotted] <= 0:
            raise ConfigError(f"config key '{dotted}' must be positive, got {flat[dotted]}")
    if not 0.0 <= flat["planner.policy_fraction"] <= 1.0:
        raise ConfigError(f"config key 'planner.policy_fraction' must be in [0, 1], got {flat['planner.policy_fraction']}")
    if flat["run.checkpoint_every"] <= 0:
        raise ConfigError(f"config key 'run.checkpoint_every' must be positive, got {flat['run.checkpoint_every']}")
    for dotted in ("train.max_skipped", "run.keep_checkpoints", "run.log_every", "run.eval_every", "run.video_every",
                   "planner.prior", "critic.replay_loss", "model.cont_outscale", "model.reward_outscale",
                   "behavior.explore"):
        if flat[dotted] < 0:
            raise ConfigError(f"config key '{dotted}' must be 0 or more, got {flat[dotted]}")
    if flat["behavior.explore"] > 0 and flat["behavior.explore_heads"] < 2:
        raise ConfigError("config key 'behavior.explore_heads' must be at least 2 (the bonus is the heads' "
                          f"disagreement), got {flat['behavior.explore_heads']}")
    if flat["train.ratio"] <= 0:
        raise ConfigError(f"config key 'train.ratio' must be positive, got {flat['train.ratio']}")
    if flat["run.compile"] and flat["run.cuda_graphs"]:
        raise ConfigError("config keys 'run.compile' and 'run.cuda_graphs' cannot both be true: the compiled "
                          "kernels' random numbers could not be captured in a CUDA graph (torch 2.11, H200); "
                          "keep run.cuda_graphs, the faster of the two")
    return Config(tree)
