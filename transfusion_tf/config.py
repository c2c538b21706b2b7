"""Frozen dataclasses for every configuration of a run, with JSON round trips.

A run's resolved configuration (data, model, init, train) is written to its workdir as
`config.json`; library functions take these objects (or plain keyword arguments), never absl
FLAGS. Each subpackage owns the meaning of its fields; this module only holds their shape.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T", bound="ConfigBase")


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
    """Mixin: `to_dict`/`from_dict`/`to_json`/`from_json`/`replace` for frozen configs."""

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


@dataclasses.dataclass(frozen=True)
class DataConfig(ConfigBase):
    """Input pipeline settings (SPEC D3). `batch_size` is the global batch."""

    dataset_dir: str = ""
    image_size: int = 224
    channels: int = 3
    batch_size: int = 32
    augment: str = "default"  # a name of data.augment.AUGMENT_POLICIES
    train_examples: int | None = None
    subset_seed: int = 0  # draws the train_examples subset; independent of `seed`
    balanced: bool = False
    cache: bool = False
    shuffle_buffer: int = 2048
    deterministic: bool = False
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class ModelConfig(ConfigBase):
    """Architecture settings (SPEC M1-M3)."""

    name: str = "cbr_small"
    num_tasks: int = 1
    image_size: int = 224
    channels: int = 3
    widths: tuple[int, ...] | None = None
    width_multiplier: float = 0.5


@dataclasses.dataclass(frozen=True)
class InitConfig(ConfigBase):
    """Initialisation settings (SPEC I1-I5)."""

    name: str = "random"
    source_weights: str | None = None  # "imagenet", a weights/.keras file, or a workdir
    stats_file: str | None = None
    transfuse_upto: str | None = None  # a unit name or a count
    upper_init: str = "random"  # "random" | "meanvar" (for transfusion)
    bn_policy: str = "identity"  # "identity" | "meanvar" | "transfer" (for meanvar)
    gray_policy: str = "repeat"  # "repeat" | "sum" (1-channel input, 3-channel source)
    random_initializer: str | None = None
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class TrainConfig(ConfigBase):
    """Training loop settings (SPEC T1-T4)."""

    workdir: str = ""
    optimizer: str = "sgd"  # "sgd" | "adam" | "adamw"
    learning_rate: float = 0.1
    momentum: float = 0.9
    lr_schedule: str = "cosine"  # "constant" | "cosine" | "step"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    train_steps: int = 1000
    eval_every_steps: int = 100
    steps_per_loop: int = 10
    checkpoint_every_steps: int = 100
    auc_thresholds: tuple[float, ...] = (0.91,)
    # A crossing must hold at the next eval too ("sustained") or may be one eval ("first").
    threshold_rule: str = "sustained"
    threshold_tasks: tuple[str, ...] = ()  # tasks whose mean AUC is thresholded; () = all
    strategy: str = "auto"
    precision: str = "float32"
    class_weights: tuple[float, ...] | None = None
    loss: str = "auto"  # "auto" | "sigmoid" | "softmax"; config.json holds the resolved one
    deterministic: bool = False
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class RunConfig(ConfigBase):
    """Everything a `transfusion-train` run is defined by; written as `config.json`."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    init: InitConfig = dataclasses.field(default_factory=InitConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
