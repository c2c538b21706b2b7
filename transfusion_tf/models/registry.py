"""The model registry (SPEC M1-M4): every architecture of the study, built by name.

`build_model(name, ...)` returns a `keras.Model` mapping float32 images
[batch, image_size, image_size, channels] to float32 logits [batch, num_tasks]: a backbone
followed by the head, `GlobalAveragePooling2D` named "head_pool" and `Dense` named "head", both
float32 so that mixed precision keeps float32 logits. Layer names are deterministic and equal to
keras.applications' for its backbones. `get_units(name)` gives the unit map (SPEC M4).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import keras

from transfusion_tf.models import applications, cbr, slim
from transfusion_tf.models.units import HEAD_LAYERS, Unit, split_into_units
from transfusion_tf.registry import Registry

__all__ = [
    "HEAD_LAYERS",
    "MODELS",
    "ModelSpec",
    "Unit",
    "build_backbone",
    "build_model",
    "default_preprocess_mode",
    "get_spec",
    "get_units",
    "min_image_size",
    "model_units",
    "paper_param_count",
]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to build one registered architecture and where its units and weights come from.

    Attributes:
      name: registry name.
      backbone: `fn(*, image_size, channels, widths, width_multiplier) -> keras.Model` without head.
      boundaries: `fn(model) -> [(unit name, output layer name), ...]` in order.
      preprocess_mode: the `preprocess_input` mode that matches its ImageNet weights.
      min_image_size: the smallest input side the architecture accepts.
      source_arch: the keras.applications architecture whose weights it takes (None for CBR).
      paper_count: whether Table 1 of the paper gives its parameter count.
      transferable_units: how many leading units have counterparts in `source_arch` weights
        (None: all units); resnet50_slim shares only conv1, block1 and block2 with ResNet50.
    """

    name: str
    backbone: Callable[..., keras.Model]
    boundaries: Callable[[keras.Model], list[tuple[str, str]]]
    preprocess_mode: str
    min_image_size: int
    source_arch: str | None = None
    paper_count: bool = False
    transferable_units: int | None = None


MODELS: Registry[ModelSpec] = Registry("model")

_RESNET_UNITS = [
    ("conv1", "conv1_relu"),
    ("block1", "conv2_block3_out"),
    ("block2", "conv3_block4_out"),
    ("block3", "conv4_block6_out"),
    ("block4", "conv5_block3_out"),
]
_DENSENET_UNITS = [
    ("conv1", "conv1_relu"),
    ("block1", "pool2_pool"),
    ("block2", "pool3_pool"),
    ("block3", "pool4_pool"),
    ("block4", "relu"),
]
# Inception-v3's stem ends at its second max pool; blocks are mixed0-2, mixed3-7, mixed8-10.
_INCEPTION_UNITS = [
    ("stem", "max_pooling2d_1"),
    ("block1", "mixed2"),
    ("block2", "mixed7"),
    ("block3", "mixed10"),
]


def _application(arch: str) -> Callable[..., keras.Model]:
    def backbone(*, image_size, channels, widths=None, width_multiplier=0.5):
        del widths, width_multiplier  # fixed architectures
        return applications.application_backbone(arch, image_size=image_size, channels=channels)

    return backbone


def _cbr(name: str) -> Callable[..., keras.Model]:
    def backbone(*, image_size, channels, widths=None, width_multiplier=0.5):
        del width_multiplier
        return cbr.cbr_backbone(name, image_size=image_size, channels=channels, widths=widths)

    return backbone


def _slim_backbone(*, image_size, channels, widths=None, width_multiplier=0.5):
    del widths
    return slim.resnet50_slim_backbone(
        image_size=image_size, channels=channels, width_multiplier=width_multiplier
    )


def _cbr_boundaries(model: keras.Model) -> list[tuple[str, str]]:
    names = {layer.name for layer in model.layers}
    count = sum(1 for n in names if n.startswith("conv") and n.endswith("_conv"))
    return [
        (f"conv{i}", f"conv{i}_pool" if f"conv{i}_pool" in names else f"conv{i}_relu")
        for i in range(1, count + 1)
    ]


def _fixed(boundaries: list[tuple[str, str]]) -> Callable[[keras.Model], list[tuple[str, str]]]:
    return lambda model: list(boundaries)


MODELS.add(
    "resnet50",
    ModelSpec("resnet50", _application("resnet50"), _fixed(_RESNET_UNITS), "caffe", 32, "resnet50"),
)
MODELS.add(
    "inception_v3",
    ModelSpec(
        "inception_v3",
        _application("inception_v3"),
        _fixed(_INCEPTION_UNITS),
        "tf",
        75,
        "inception_v3",
    ),
)
MODELS.add(
    "densenet121",
    ModelSpec(
        "densenet121",
        _application("densenet121"),
        _fixed(_DENSENET_UNITS),
        "torch",
        32,
        "densenet121",
    ),
)
MODELS.add(
    "resnet50_slim",
    ModelSpec(
        "resnet50_slim",
        _slim_backbone,
        _fixed(_RESNET_UNITS),
        "caffe",
        32,
        "resnet50",
        transferable_units=3,
    ),
)
for _name in cbr.CBR_SPECS:
    MODELS.add(
        _name, ModelSpec(_name, _cbr(_name), _cbr_boundaries, "unit", 8, None, paper_count=True)
    )


def get_spec(name: str) -> ModelSpec:
    """The `ModelSpec` of registered model `name` (ValueError naming the choices otherwise)."""
    try:
        return MODELS.get(name)
    except KeyError as err:
        raise ValueError(str(err.args[0])) from None


def build_backbone(
    name: str,
    *,
    image_size: int,
    channels: int = 3,
    widths: Sequence[int] | None = None,
    width_multiplier: float = 0.5,
) -> keras.Model:
    """The registered model `name` without its head: [B, S, S, C] -> [B, S', S', F]."""
    spec = get_spec(name)
    if widths is not None and name not in cbr.CBR_SPECS:
        raise ValueError(f"widths={list(widths)}: only the CBR models take widths, not {name!r}")
    if channels < 1:
        raise ValueError(f"channels={channels} must be positive")
    if image_size < spec.min_image_size:
        raise ValueError(
            f"image_size={image_size} is too small for {name}; "
            f"the smallest it accepts is {spec.min_image_size}"
        )
    return spec.backbone(
        image_size=image_size,
        channels=channels,
        widths=widths,
        width_multiplier=width_multiplier,
    )


def build_model(
    name: str,
    *,
    num_tasks: int,
    image_size: int,
    channels: int = 3,
    widths: Sequence[int] | None = None,
    width_multiplier: float = 0.5,
) -> keras.Model:
    """Builds registered model `name` with a new head.

    Args:
      name: a name in `MODELS`.
      num_tasks: number of logits (one per binary task).
      image_size: input side S; images are [batch, S, S, channels] float32.
      channels: 1 or 3 for the keras.applications models; any positive number for CBR.
      widths: per-conv widths overriding a CBR model's (CBR only).
      width_multiplier: width factor of resnet50_slim's block3 and block4.

    Returns:
      A `keras.Model` named `name`: [B, S, S, C] float32 -> [B, num_tasks] float32 logits.
    """
    if num_tasks < 1:
        raise ValueError(f"num_tasks={num_tasks} must be at least 1")
    backbone = build_backbone(
        name,
        image_size=image_size,
        channels=channels,
        widths=widths,
        width_multiplier=width_multiplier,
    )
    features = keras.layers.GlobalAveragePooling2D(name="head_pool", dtype="float32")(
        backbone.output
    )
    logits = keras.layers.Dense(num_tasks, name="head", dtype="float32")(features)
    return keras.Model(backbone.input, logits, name=name)


def min_image_size(name: str) -> int:
    """The smallest input side model `name` accepts."""
    return get_spec(name).min_image_size


def probe_image_size(name: str) -> int:
    """The input side a model `name` is built at when only its layers and weights matter
    (unit maps, parameter counts, reading weights files): its smallest, and at least 32."""
    return max(32, min_image_size(name))


def default_preprocess_mode(name: str) -> str:
    """The `preprocess_input` mode matching model `name`'s ImageNet weights ("unit" for CBR)."""
    return get_spec(name).preprocess_mode


def model_units(model: keras.Model, name: str) -> list[Unit]:
    """The unit map (SPEC M4) of a built model of registered architecture `name`."""
    return split_into_units(model, get_spec(name).boundaries(model), model_name=name)


@functools.lru_cache(maxsize=32)
def _units_cached(name: str, widths: tuple[int, ...] | None) -> tuple[Unit, ...]:
    model = build_backbone(name, image_size=probe_image_size(name), widths=widths)
    return tuple(model_units(model, name))


def get_units(name: str, *, widths: Sequence[int] | None = None) -> list[Unit]:
    """Ordered units of model `name` (with CBR `widths` if overridden): name, layers, output."""
    return list(_units_cached(name, tuple(widths) if widths is not None else None))


def paper_param_count(name: str) -> int | None:
    """Table 1's parameter count for a CBR model computed from our build; None for others."""
    if not get_spec(name).paper_count:
        return None
    return cbr.paper_param_count(name)
