"""`transfusion-train`: trains one run of the study (SPEC T1). Flags -> RunConfig -> trainer.

Example:
  transfusion-train --dataset_dir=data/fundus --model=resnet50 --init=imagenet \
      --workdir=runs/resnet50_imagenet_s0 --train_steps=20000 --eval_every_steps=500
Flags can come from a file: `--flagfile=flags/table1_resnet50_imagenet.flags`.

Every flag is derived from a field of `config.RunConfig` (its default, help and type);
`FLAG_TABLE` names the field(s) each flag sets and, for an enum, the registry of its values.
Errors of the library name the config field (`TrainConfig.learning_rate`); this CLI reports
them under the flag (`--learning_rate`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Sequence
from typing import Any

from absl import app, flags

from transfusion_tf import config
from transfusion_tf.cli import common
from transfusion_tf.data import augment
from transfusion_tf.init import strategies as init_strategies
from transfusion_tf.training import losses, metrics, optim
from transfusion_tf.training import strategy as strategy_lib

_SECTION_TYPES = typing.get_type_hints(config.RunConfig)
SECTIONS: dict[str, type[config.ConfigBase]] = {
    f.name: _SECTION_TYPES[f.name] for f in dataclasses.fields(config.RunConfig)
}
# Fields no flag sets: the task count comes from the dataset, the model's channels from
# --channels and the init (SPEC I2).
DERIVED = ("model.num_tasks", "model.channels")


@dataclasses.dataclass(frozen=True)
class Flag:
    """A flag and the config fields ("section.field") it sets; the first one defines it."""

    name: str
    fields: tuple[str, ...]  # a single field may be given as a str
    choices: Sequence[str] | None = None  # an enum flag's values (owned by a registry)

    def __post_init__(self) -> None:
        if isinstance(self.fields, str):
            object.__setattr__(self, "fields", (self.fields,))


FLAG_TABLE = (
    # Data
    Flag("dataset_dir", "data.dataset_dir"),
    Flag("batch_size", "data.batch_size"),
    Flag("image_size", "model.image_size"),
    Flag("channels", "data.channels"),
    Flag("augment", "data.augment", choices=augment.AUGMENT_POLICIES),
    Flag("train_examples", "data.train_examples"),
    Flag("subset_seed", "data.subset_seed"),
    Flag("balanced", "data.balanced"),
    Flag("cache", "data.cache"),
    Flag("shuffle_buffer", "data.shuffle_buffer"),
    # Model
    Flag("model", "model.name"),
    Flag("widths", "model.widths"),
    Flag("width_multiplier", "model.width_multiplier"),
    # Init
    Flag("init", "init.name"),
    Flag("source_weights", "init.source_weights"),
    Flag("stats_file", "init.stats_file"),
    Flag("transfuse_upto", "init.transfuse_upto"),
    Flag("upper_init", "init.upper_init", choices=init_strategies.UPPER_INITS),
    Flag("bn_policy", "init.bn_policy", choices=init_strategies.BN_POLICIES),
    Flag("gray_policy", "init.gray_policy", choices=init_strategies.GRAY_POLICIES),
    Flag("random_initializer", "init.random_initializer"),
    # Training
    Flag("workdir", "train.workdir"),
    Flag("seed", ("train.seed", "data.seed", "init.seed")),
    Flag("optimizer", "train.optimizer", choices=optim.OPTIMIZERS),
    Flag("learning_rate", "train.learning_rate"),
    Flag("momentum", "train.momentum"),
    Flag("lr_schedule", "train.lr_schedule", choices=optim.SCHEDULES),
    Flag("warmup_steps", "train.warmup_steps"),
    Flag("weight_decay", "train.weight_decay"),
    Flag("train_steps", "train.train_steps"),
    Flag("eval_every_steps", "train.eval_every_steps"),
    Flag("steps_per_loop", "train.steps_per_loop"),
    Flag("checkpoint_every_steps", "train.checkpoint_every_steps"),
    Flag("auc_thresholds", "train.auc_thresholds"),
    Flag("class_weights", "train.class_weights"),
    Flag("loss", "train.loss", choices=losses.LOSSES),
    Flag("threshold_rule", "train.threshold_rule", choices=metrics.THRESHOLD_RULES),
    Flag("threshold_tasks", "train.threshold_tasks"),
    Flag("strategy", "train.strategy", choices=strategy_lib.STRATEGIES),
    Flag("precision", "train.precision", choices=optim.PRECISIONS),
    Flag("deterministic", ("train.deterministic", "data.deterministic")),
)


def field_spec(path: str) -> tuple[type[config.ConfigBase], str, Any, Any]:
    """(config class, field name, annotated type, default) of a "section.field" path."""
    section, name = path.split(".")
    cls = SECTIONS[section]
    return cls, name, typing.get_type_hints(cls)[name], getattr(cls(), name)


def _unoptional(tp: Any) -> Any:
    """`X` of `X | None`; other types as they are."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        (tp,) = (a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _define(flag: Flag) -> None:
    """Defines `flag` from its first field: integer, float, bool, enum, string or list."""
    cls, name, tp, default = field_spec(flag.fields[0])
    help_text = config.field_help(cls, name)
    tp = _unoptional(tp)
    if default == "":
        default = None  # a required path: no default to show
    if typing.get_origin(tp) is tuple:
        listed = None if default is None else [str(v) for v in default]
        flags.DEFINE_list(flag.name, listed, help_text)
    elif flag.choices is not None:
        flags.DEFINE_enum(flag.name, default, list(flag.choices), help_text)
    else:
        define = {
            bool: flags.DEFINE_bool,
            int: flags.DEFINE_integer,
            float: flags.DEFINE_float,
            str: flags.DEFINE_string,
        }[tp]
        define(flag.name, default, help_text)


for _flag in FLAG_TABLE:
    _define(_flag)
FLAGS = flags.FLAGS


def _field_value(flag: Flag, tp: Any, value: Any) -> Any:
    """A flag's parsed value as its field holds it (list flags become tuples)."""
    tp = _unoptional(tp)
    if typing.get_origin(tp) is not tuple or value is None:
        return value
    inner = typing.get_args(tp)[0]
    if inner is int:
        return common.parse_ints(flag.name, value)
    if inner is float:
        return common.parse_floats(flag.name, value)
    return tuple(value)


def flag_settings(flag_values: flags.FlagValues = FLAGS) -> dict[str, dict[str, Any]]:
    """{section: {field: value}} of every field the flags set."""
    settings: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for flag in FLAG_TABLE:
        for path in flag.fields:
            _, name, tp, _ = field_spec(path)
            settings[path.split(".")[0]][name] = _field_value(
                flag, tp, flag_values[flag.name].value
            )
    return settings


FLAG_OF_FIELD = {
    f"{field_spec(path)[0].__name__}.{field_spec(path)[1]}": f"--{flag.name}"
    for flag in FLAG_TABLE
    for path in flag.fields
} | {"ModelConfig.channels": "--channels"}
_FIELD_NAME = re.compile(r"\b[A-Z][A-Za-z]*Config\.[a-z_]+\b")


def in_flag_terms(message: str) -> str:
    """`message` with every config field that a flag sets named by that flag."""
    return _FIELD_NAME.sub(lambda m: FLAG_OF_FIELD.get(m.group(0), m.group(0)), message)


def config_from_flags() -> config.RunConfig:
    """The RunConfig the flags describe; `num_tasks` comes from the dataset's task list."""
    from transfusion_tf.data import info as info_lib
    from transfusion_tf.init import registry as init_registry

    settings = flag_settings()
    data, train = config.DataConfig(**settings["data"]), config.TrainConfig(**settings["train"])
    data.validate()
    train.validate()
    try:
        info = info_lib.load_dataset_info(data.dataset_dir)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"--dataset_dir: {err}") from None
    init = config.InitConfig(**settings["init"])
    # Gray data with an RGB source is fed as RGB unless --gray_policy=sum (SPEC I2).
    channels = init_registry.input_channels(data_channels=data.channels, init=init)
    model = config.ModelConfig(**settings["model"], num_tasks=len(info["tasks"]), channels=channels)
    return config.RunConfig(data=data, model=model, init=init, train=train)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from transfusion_tf.training import loop, trainer

    with common.usage_errors(rename=in_flag_terms):
        cfg = config_from_flags()
        trainer.validate_config(cfg)
    try:
        with common.usage_errors(rename=in_flag_terms):
            results = trainer.train_and_evaluate(cfg)
    except loop.NonFiniteLossError as err:
        common.fail(in_flag_terms(str(err)))
    summary = {k: results.get(k) for k in ("final_auc_mean", "best_auc_mean", "best_step")}
    summary["steps_to_threshold"] = results.get("steps_to_threshold")
    summary["auc_curve_area"] = results.get("auc_curve_area")
    summary["train_steps"] = results.get("train_steps")
    print(json.dumps(summary, sort_keys=True))


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
