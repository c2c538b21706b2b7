"""Round trips of the run configuration."""

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
