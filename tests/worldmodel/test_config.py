import pytest

from worldmodel.config import ConfigError, load_config, preset_names


def test_presets_apply_left_to_right_then_overrides():
    cfg = load_config(["small"])
    assert cfg.model.deter == load_config(["small"]).model.deter
    debug_then_small = load_config(["debug", "small"])
    assert debug_then_small.model.units == load_config(["small"]).model.units  # later wins
    assert debug_then_small.run.steps == load_config(["debug"]).run.steps  # small leaves it
    cfg = load_config(["debug"], {"model.deter": "128", "train.ratio": 256})
    assert cfg.model.deter == 128 and cfg.train.ratio == 256
    assert {"debug", "small", "medium", "large"} <= set(preset_names())


def test_a_preset_that_sets_one_nested_key_keeps_its_siblings():
    # `memory` sets model.loss_scales.rep alone: the other loss scales and the size preset
    # before it must stay as they were, not be replaced by the preset's partial dict
    small, cfg = load_config(["small"]), load_config(["small", "memory"])
    assert cfg.model.loss_scales.rep == 0.0 and cfg.model.reward_outscale == 1.0
    assert cfg.model.loss_scales.dyn == small.model.loss_scales.dyn == 1.0
    assert cfg.model.loss_scales.rec == small.model.loss_scales.rec
    assert cfg.model.deter == small.model.deter and cfg.replay.batch == small.replay.batch
    assert load_config(["memory"], {"model.loss_scales.rep": 0.1}).model.loss_scales.rep == 0.1


@pytest.mark.parametrize("presets,overrides,message", [
    (["smal"], {}, "did you mean 'small'"),
    ([], {"model.detr": 1}, "did you mean 'model.deter'"),
    ([], {"model.deter": "abc"}, "must be an integer"),
    ([], {"model.deter": 1.5}, "must be an integer"),
    ([], {"run.progress": "maybe"}, "must be true or false"),
    ([], {"env.obs": "voxels"}, "must be one of state, pixels"),
    ([], {"env.kwargs": "{bad json"}, "must be a JSON object"),
    ([], {"replay.batch": 0}, "must be positive"),
    ([], {"critic.replay_loss": -0.3}, "'critic.replay_loss' must be 0 or more"),
    ([], {"run.compile": True, "run.cuda_graphs": True}, "'run.compile' and 'run.cuda_graphs' cannot both be true"),
    ([], {"replay.context": "sometimes"}, "must be true or false"),
])
def test_bad_config_is_one_clear_line(presets, overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(presets, overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_config_is_frozen_and_serialisable():
    cfg = load_config(["debug"])
    with pytest.raises(AttributeError):
        cfg.model = 3
    assert "model:" in cfg.to_yaml()
    assert load_config((), {}, base=cfg.to_dict()).to_dict() == cfg.to_dict()
