"""Round trips of the run configuration."""

import dataclasses
import math

import pytest

from transfusion_tf import config
from transfusion_tf.registry import Registry


def test_run_config_json_round_trip():
    cfg = config.RunConfig(
        model=config.ModelConfig(name="cbr_tiny", widths=(8, 16), num_tasks=2),
        train=config.TrainConfig(
            auc_thresholds=(0.8, 0.9),
            train_steps=7,
            threshold_rule="first",
            threshold_tasks=("Consolidation",),
        ),
        init=config.InitConfig(name="transfusion", transfuse_upto="block2"),
    )
    again = config.RunConfig.from_json(cfg.to_json())
    assert again == cfg
    assert again.model.widths == (8, 16)
    assert again.train.threshold_tasks == ("Consolidation",)


def test_config_written_before_the_threshold_settings_reads_with_defaults():
    old = config.TrainConfig().to_dict()
    del old["threshold_rule"], old["threshold_tasks"]
    again = config.TrainConfig.from_dict(old)
    assert (again.threshold_rule, again.threshold_tasks) == ("sustained", ())


def test_unknown_key_is_an_error():
    with pytest.raises(ValueError, match="unknown config keys"):
        config.TrainConfig.from_dict({"learning_rte": 0.1})


def test_registry_unknown_name_lists_choices():
    reg = Registry("model")
    reg.add("a", 1)
    with pytest.raises(KeyError, match="choose one of: a"):
        reg.get("b")
    with pytest.raises(ValueError):
        reg.add("a", 2)


def _valid(**sections):
    """A RunConfig that passes `validate`, with some sections' fields changed."""
    cfg = config.RunConfig(
        data=config.DataConfig(dataset_dir="data"), train=config.TrainConfig(workdir="w")
    )
    return cfg.replace(
        **{name: getattr(cfg, name).replace(**fields) for name, fields in sections.items()}
    )


def test_image_size_has_one_owner():
    assert "image_size" in {f.name for f in dataclasses.fields(config.ModelConfig)}
    assert "image_size" not in {f.name for f in dataclasses.fields(config.DataConfig)}


def test_every_field_has_help():
    for cls in (config.DataConfig, config.ModelConfig, config.InitConfig, config.TrainConfig):
        for f in dataclasses.fields(cls):
            assert config.field_help(cls, f.name), f"{cls.__name__}.{f.name}"


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"data": {"dataset_dir": ""}}, "DataConfig.dataset_dir is required"),
        ({"train": {"workdir": ""}}, "TrainConfig.workdir is required"),
        ({"data": {"batch_size": 0}}, "DataConfig.batch_size must be >= 1; got 0"),
        ({"data": {"subset_seed": -1}}, "DataConfig.subset_seed must be >= 0; got -1"),
        ({"data": {"channels": 2}}, "DataConfig.channels must be 1 or 3; got 2"),
        ({"model": {"image_size": 0}}, "ModelConfig.image_size must be >= 1; got 0"),
        ({"train": {"learning_rate": 0.0}}, "TrainConfig.learning_rate must be a positive"),
        ({"train": {"learning_rate": math.inf}}, "TrainConfig.learning_rate must be a positive"),
        ({"train": {"train_steps": 0}}, "TrainConfig.train_steps must be >= 1; got 0"),
        ({"train": {"warmup_steps": -1}}, "TrainConfig.warmup_steps must be >= 0; got -1"),
        ({"train": {"weight_decay": -0.1}}, "TrainConfig.weight_decay must be >= 0; got -0.1"),
        ({"train": {"steps_per_loop": 0}}, "TrainConfig.steps_per_loop must be >= 1; got 0"),
        ({"train": {"eval_every_steps": 0}}, "TrainConfig.eval_every_steps must be >= 1"),
        ({"train": {"checkpoint_every_steps": 0}}, "TrainConfig.checkpoint_every_steps must"),
        ({"train": {"auc_thresholds": (0.5, 1.5)}}, r"TrainConfig.auc_thresholds must be in"),
        ({"train": {"threshold_tasks": ("a", "a")}}, r"threshold_tasks names \['a'\] more than"),
        (
            {"train": {"class_weights": (1.0, 2.0)}},
            r"TrainConfig.class_weights has 2 values but the dataset has 1 tasks",
        ),
    ],
)
def test_validate_names_the_config_field(sections, message):
    with pytest.raises(config.ConfigError, match=message):
        _valid(**sections).validate()


def test_defaults_validate_once_the_paths_are_given():
    _valid().validate()
    with pytest.raises(config.ConfigError, match="dataset_dir is required"):
        config.RunConfig().validate()
