"""Frozen dataclasses for every configuration of a run, with JSON round trips and checks.

A run's resolved configuration (data, model, init, train) is written to its workdir as
`config.json`; library functions take these objects (or plain keyword arguments), never absl
FLAGS. Every default and every setting's help text is defined here, once: `transfusion-train`
derives its flags from these fields. Each subpackage owns the meaning of its fields (the names
a field may hold live in that subpackage's registry); this module holds their shape and the
checks that need nothing but the values (`validate`), worded in the fields' names
(`TrainConfig.learning_rate`), which the CLI maps to its flags.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T", bound="ConfigBase")


class ConfigError(ValueError):
    """A config field holds a value it may not; the message names it as `Class.field`."""


def setting(default: Any, help: str) -> Any:
    """A config field with its default and the help text its flag shows."""
    return dataclasses.field(default=default, metadata={"help": help})


def field_help(cls: type, name: str) -> str:
    """The help text of field `name` of config class `cls`."""
    return next(f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.name == name)


def _coerce(tp: Any, value: Any) -> Any:
    """Converts a JSON value back to the annotated type (tuples, nested configs, optionals)."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        return _coerce(non_none[0], value) if len(non_none) == 1 else value
    if origin is tuple:
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v) for v in value)
    if isinstance(tp, type) and issubclass(tp, ConfigBase):
        return tp.from_dict(value)
    return value


@dataclasses.dataclass(frozen=True)
class ConfigBase:
    """Mixin: `to_dict`/`from_dict`/`to_json`/`from_json`/`replace`/`validate` for configs."""

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return json.loads(json.dumps(out))  # tuples -> lists, a JSON-clean copy

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown config keys {unknown}")
        return cls(**{k: _coerce(hints[k], v) for k, v in data.items()})

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls: type[T], text: str) -> T:
        return cls.from_dict(json.loads(text))

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """Raises ConfigError naming the first field whose value is not allowed."""

    def _error(self, name: str, problem: str) -> ConfigError:
        """A ConfigError `"<Class>.<name> <problem>"`."""
        return ConfigError(f"{type(self).__name__}.{name} {problem}")

    def _require(self, name: str) -> None:
        if not getattr(self, name):
            raise self._error(name, "is required")

    def _at_least(self, minimum: float, names: Sequence[str]) -> None:
        for name in names:
            value = getattr(self, name)
            if value is not None and value < minimum:
                raise self._error(name, f"must be >= {minimum}; got {value}")


@dataclasses.dataclass(frozen=True)
class DataConfig(ConfigBase):
    """Input pipeline settings (SPEC D3). `batch_size` is the global batch.

    The side images are resized to is not a data setting: it is `ModelConfig.image_size`.
    """

    dataset_dir: str = setting("", "Prepared dataset directory (dataset_info.json + shards).")
    channels: int = setting(3, "Model input channels (1 or 3).")
    batch_size: int = setting(32, "GLOBAL batch size (split over replicas).")
    augment: str = setting("default", "Train-time augmentation policy.")
    train_examples: int | None = setting(
        None, "Train on a subset of N examples, drawn by --subset_seed."
    )
    subset_seed: int = setting(
        0,
        "Seed that alone draws the --train_examples subset: not --seed, nor the resume step, so "
        "every seed, init and resumption trains on the same images by default. Set it per seed "
        "for a different subset per seed.",
    )
    balanced: bool = setting(False, "Class-balanced sampling of the first task.")
    cache: bool = setting(False, "Cache decoded examples in memory.")
    shuffle_buffer: int = setting(2048, "Shuffle buffer size (examples).")
    deterministic: bool = setting(False, "Deterministic input order.")
    seed: int = setting(0, "Seed of the data order and augmentation.")

    def validate(self) -> None:
        self._require("dataset_dir")
        self._at_least(1, ("batch_size",))
        self._at_least(0, ("subset_seed",))
        if self.channels not in (1, 3):
            raise self._error("channels", f"must be 1 or 3; got {self.channels}")


@dataclasses.dataclass(frozen=True)
class ModelConfig(ConfigBase):
    """Architecture settings (SPEC M1-M3).

    `image_size` (S) is the one input side of a run: the model is built for float32
    [batch, S, S, channels] and the input pipeline resizes every image to S. It lives here,
    not in DataConfig, because it is a property of the network (its input shape, what an
    export's signature and an analysis feed it); the stored images may have any size.
    """

    name: str = setting("cbr_small", "Model name (see transfusion-models).")
    num_tasks: int = setting(1, "Outputs of the model: the dataset's tasks (or classes).")
    image_size: int = setting(224, "Square model input side in pixels.")
    channels: int = setting(3, "Input channels the model is built with.")
    widths: tuple[int, ...] | None = setting(None, "CBR widths override, e.g. 8,16,32.")
    width_multiplier: float = setting(0.5, "Upper-unit width multiplier of resnet50_slim.")

    def validate(self) -> None:
        self._at_least(1, ("image_size",))


@dataclasses.dataclass(frozen=True)
class InitConfig(ConfigBase):
    """Initialisation settings (SPEC I1-I5)."""

    name: str = setting("random", "Init strategy: random, imagenet, meanvar, transfusion, gabor.")
    source_weights: str | None = setting(
        None, "'imagenet', a weights file, a .keras model or a workdir."
    )
    stats_file: str | None = setting(
        None, "Per-tensor statistics JSON (transfusion-stats) for meanvar."
    )
    transfuse_upto: str | None = setting(None, "Last unit copied by transfusion (name or count).")
    upper_init: str = setting("random", "Init above --transfuse_upto.")
    bn_policy: str = setting("identity", "BatchNorm policy of meanvar.")
    gray_policy: str = setting("repeat", "1-channel input vs RGB source.")
    random_initializer: str | None = setting(None, "Override of Keras' default kernel initializer.")
    seed: int = setting(0, "Seed of the init.")


@dataclasses.dataclass(frozen=True)
class TrainConfig(ConfigBase):
    """Training loop settings (SPEC T1-T4)."""

    workdir: str = setting("", "Output directory of the run (resumed if it exists).")
    optimizer: str = setting("sgd", "Optimizer.")
    learning_rate: float = setting(0.1, "Peak learning rate.")
    momentum: float = setting(0.9, "SGD momentum.")
    lr_schedule: str = setting("cosine", "Learning-rate schedule.")
    warmup_steps: int = setting(0, "Linear warmup steps.")
    weight_decay: float = setting(0.0, "Decoupled weight decay (not on BN or biases).")
    train_steps: int = setting(1000, "Total optimizer steps.")
    eval_every_steps: int = setting(100, "Validation AUC every N steps (and at the end).")
    steps_per_loop: int = setting(10, "Steps per tf.function call.")
    checkpoint_every_steps: int = setting(100, "Backup for resume every N steps (and at evals).")
    auc_thresholds: tuple[float, ...] = setting(
        (0.91,), "Mean-AUC thresholds for steps_to_threshold."
    )
    threshold_rule: str = setting(
        "sustained",
        "'sustained': a threshold counts as reached when it holds at the next eval too; 'first': "
        "at the first eval that reaches it.",
    )
    threshold_tasks: tuple[str, ...] = setting(
        (), "Tasks whose mean AUC the thresholds apply to (e.g. Consolidation); empty: all tasks."
    )
    strategy: str = setting("auto", "tf.distribute strategy.")
    precision: str = setting("float32", "Compute precision.")
    class_weights: tuple[float, ...] | None = setting(
        None, "Per-task (softmax: per-class) loss weights."
    )
    loss: str = setting(
        "auto",
        "sigmoid: masked binary cross-entropy per task (multi-label); softmax: cross-entropy over "
        "mutually exclusive classes (single-label datasets only); auto: softmax when the "
        "dataset_info.json of --dataset_dir says single_label, else sigmoid (older datasets "
        "without the field: sigmoid). config.json holds the resolved one.",
    )
    deterministic: bool = setting(False, "Op determinism + deterministic input order.")
    seed: int = setting(0, "Seed of init, data order and augmentation.")

    def validate(self) -> None:
        self._require("workdir")
        if not self.learning_rate > 0 or not math.isfinite(self.learning_rate):
            raise self._error(
                "learning_rate", f"must be a positive number; got {self.learning_rate}"
            )
        self._at_least(1, ("train_steps", "eval_every_steps", "steps_per_loop"))
        self._at_least(1, ("checkpoint_every_steps",))
        self._at_least(0, ("warmup_steps", "weight_decay"))
        for t in self.auc_thresholds:
            if not 0.0 < t <= 1.0:
                raise self._error("auc_thresholds", f"must be in (0, 1]; got {t}")
        selected = self.threshold_tasks
        repeated = sorted({t for t in selected if selected.count(t) > 1})
        if repeated:
            raise self._error("threshold_tasks", f"names {repeated} more than once")


@dataclasses.dataclass(frozen=True)
class RunConfig(ConfigBase):
    """Everything a `transfusion-train` run is defined by; written as `config.json`."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    init: InitConfig = dataclasses.field(default_factory=InitConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def validate(self) -> None:
        """Every section's `validate`, then the checks across sections."""
        for section in (self.data, self.model, self.init, self.train):
            section.validate()
        weights = self.train.class_weights
        if weights is not None and len(weights) != self.model.num_tasks:
            raise ConfigError(
                f"TrainConfig.class_weights has {len(weights)} values but the dataset has "
                f"{self.model.num_tasks} tasks (ModelConfig.num_tasks)"
            )
