"""Init strategies (SPEC I1-I5): random, imagenet, meanvar, transfusion and gabor.

Each strategy is a function of an `InitContext` that sets every variable of the model exactly
once through the context's actions (copy, sample from N(mu, sigma^2), BN identity, Gabor,
seeded random), which also write the init report row. Source tensors are matched to the model
by layer name and weight order; any shape mismatch is an error naming the layer and both shapes.

Paper references (Raghu et al. 2019): "Mean Var" init draws every weight tensor iid from
N(mu, sigma^2) of the pretrained tensor with BatchNorm set to identity (Fig. 6); weight
transfusion copies pretrained weights up to a block and initialises the rest randomly.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import keras
import numpy as np

from transfusion_tf import config as config_lib
from transfusion_tf.init import gabor as gabor_lib
from transfusion_tf.init import sources
from transfusion_tf.init.report import InitReport
from transfusion_tf.models.units import HEAD_LAYERS, Unit, resolve_unit_index

BN_POLICIES = ("identity", "meanvar", "transfer")
GRAY_POLICIES = ("repeat", "sum")
UPPER_INITS = ("random", "meanvar")
# Sampled BatchNorm moving variances (bn_policy="meanvar") are kept at least this large.
MIN_MOVING_VARIANCE = 1e-3

_INITIALIZER_ATTRS = {
    "kernel": "kernel_initializer",
    "bias": "bias_initializer",
    "gamma": "gamma_initializer",
    "beta": "beta_initializer",
    "moving_mean": "moving_mean_initializer",
    "moving_variance": "moving_variance_initializer",
    "depthwise_kernel": "depthwise_initializer",
    "pointwise_kernel": "pointwise_initializer",
}


class InitError(ValueError):
    """An init setting or source does not fit the model (names the layer, unit or setting)."""


def variable_seed(seed: int, path: str) -> int:
    """A per-variable seed derived from the run seed and the variable path."""
    return zlib.crc32(f"{seed}/{path}".encode()) & 0x7FFFFFFF


def _seeded(initializer: Any, seed: int) -> Any:
    config = initializer.get_config()
    if "seed" in config:
        config["seed"] = seed
    return initializer.__class__.from_config(config)


def _model_settings(model: keras.Model, model_name: str) -> dict[str, Any]:
    """Channels, CBR widths and slim width multiplier, read back from a built model."""
    settings: dict[str, Any] = {"channels": int(model.input.shape[-1])}
    if model_name.startswith("cbr_"):
        settings["widths"] = tuple(
            int(layer.filters) for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
        )
    if model_name == "resnet50_slim":
        settings["width_multiplier"] = model.get_layer("conv4_block1_1_conv").filters / 256.0
    return settings


@dataclasses.dataclass
class InitContext:
    """A model being initialised, its unit map, the init config, sources and the report."""

    model: keras.Model
    model_name: str
    init: config_lib.InitConfig
    units: list[Unit]
    report: InitReport
    transferable_units: int
    _tensors: sources.SourceTensors | None = None
    _stats: sources.SourceStats | None = None

    def __post_init__(self) -> None:
        self.unit_of = {layer: unit.name for unit in self.units for layer in unit.layers}
        self.first_conv = next(
            (
                name
                for name in self.units[0].layers
                if isinstance(self.model.get_layer(name), keras.layers.Conv2D)
            ),
            None,
        )
        self.settings = _model_settings(self.model, self.model_name)
        self.random_kernel = None
        if self.init.random_initializer:
            try:
                self.random_kernel = keras.initializers.get(self.init.random_initializer)
            except ValueError as err:
                raise InitError(
                    f"random_initializer={self.init.random_initializer!r} is not a Keras "
                    f"initializer: {err}"
                ) from None

    # ----- layers -----------------------------------------------------------------------------
    def weighted_layers(self) -> list[keras.layers.Layer]:
        return [layer for layer in self.model.layers if layer.weights]

    def is_head(self, layer: keras.layers.Layer) -> bool:
        return layer.name in HEAD_LAYERS

    def transferable_layers(self) -> set[str]:
        return {name for unit in self.units[: self.transferable_units] for name in unit.layers}

    def units_upto(self, index: int) -> set[str]:
        return {name for unit in self.units[: index + 1] for name in unit.layers}

    # ----- sources ----------------------------------------------------------------------------
    def tensors(self) -> sources.SourceTensors:
        """Source weights (`init.source_weights`, default "imagenet"), read once."""
        if self._tensors is None:
            self._tensors = sources.load_source_weights(
                self.init.source_weights or "imagenet",
                model_name=self.model_name,
                channels=self.settings["channels"],
                widths=self.settings.get("widths"),
                width_multiplier=self.settings.get("width_multiplier", 0.5),
            )
            self._set_report_source(self._tensors.file, self._tensors.sha256, self._tensors)
        return self._tensors

    def stats(self) -> sources.SourceStats:
        """Per-tensor statistics: the stats file if given, else those of the source weights."""
        if self._stats is None:
            if self.init.stats_file:
                self._stats = sources.load_stats_file(self.init.stats_file)
                if self._tensors is None:
                    self._set_report_source(self._stats.file, self._stats.sha256, self._stats)
            else:
                self._stats = self.tensors().stats()
        return self._stats

    def has_source(self) -> bool:
        return bool(self.init.stats_file or self.init.source_weights)

    def _set_report_source(self, path, sha, source) -> None:
        self.report.source_file = path
        self.report.source_sha256 = sha
        self.report.source_description = source.description

    def _source_items(self, layer_name: str, items: dict[str, list], what: str) -> list:
        if layer_name not in items:
            raise InitError(
                f"layer {layer_name!r} (unit {self.unit_of.get(layer_name)}) of {self.model_name} "
                f"has no counterpart in the source {what}"
            )
        return items[layer_name]

    def _gray_adjust(self, layer_name: str, target_shape: tuple, source_shape: tuple) -> int:
        """1 if shapes match; the channel count to sum over for a gray conv1 under 'sum'."""
        if tuple(target_shape) == tuple(source_shape):
            return 1
        gray = (
            layer_name == self.first_conv
            and len(target_shape) == 4
            and len(source_shape) == 4
            and target_shape[2] == 1
            and source_shape[2] > 1
            and tuple(target_shape[:2]) + tuple(target_shape[3:])
            == tuple(source_shape[:2]) + tuple(source_shape[3:])
        )
        if gray and self.init.gray_policy == "sum":
            return int(source_shape[2])
        hint = ""
        if gray:
            hint = (
                " (gray_policy='repeat' keeps 3 input channels: build the model with channels=3"
                " so the input pipeline repeats gray to RGB, or use gray_policy='sum')"
            )
        raise InitError(
            f"shape mismatch in layer {layer_name!r}: the model has {tuple(target_shape)} but "
            f"the source has {tuple(source_shape)}{hint}"
        )

    # ----- actions ----------------------------------------------------------------------------
    def _row(self, layer, var, how, source_tensor=None, source=None) -> None:
        self.report.add(
            variable=var.path,
            layer=layer.name,
            unit=self.unit_of.get(layer.name),
            how=how,
            source_tensor=source_tensor,
            source_file=source.file if source is not None else None,
            source_sha256=source.sha256 if source is not None else None,
        )

    def random(self, layer: keras.layers.Layer) -> None:
        """Keras' default initializer of each variable (seeded), or `random_initializer`."""
        how = "new_head" if self.is_head(layer) else "random"
        for var in layer.weights:
            attr = _INITIALIZER_ATTRS.get(var.name)
            initializer = getattr(layer, attr, None) if attr else None
            if initializer is None:
                raise InitError(f"no initializer known for variable {var.path}")
            if self.random_kernel is not None and var.name == "kernel":
                initializer = self.random_kernel
            seeded = _seeded(initializer, variable_seed(self.init.seed, var.path))
            var.assign(seeded(tuple(var.shape), dtype=var.dtype))
            self._row(layer, var, how)

    def copy(self, layer: keras.layers.Layer) -> None:
        """Copies the source tensors of the layer with the same name (weight order)."""
        src = self.tensors()
        items = self._source_items(layer.name, src.tensors, f"weights ({src.description})")
        self._check_count(layer, len(items))
        for var, (name, value) in zip(layer.weights, items, strict=True):
            channels = self._gray_adjust(layer.name, tuple(var.shape), value.shape)
            how = "copied"
            if channels > 1:
                value = value.sum(axis=2, keepdims=True)
                how = "copied_gray_sum"
            var.assign(value.astype(np.float32))
            self._row(layer, var, how, name, src)

    def meanvar(self, layer: keras.layers.Layer) -> None:
        """Mean Var init of one layer; BatchNorm layers follow `bn_policy`."""
        if isinstance(layer, keras.layers.BatchNormalization):
            if self.init.bn_policy == "identity":
                for var in layer.weights:
                    value = 1.0 if var.name in ("gamma", "moving_variance") else 0.0
                    var.assign(np.full(tuple(var.shape), value, np.float32))
                    self._row(layer, var, "bn_identity")
                return
            if self.init.bn_policy == "transfer":
                if self.init.source_weights is None and self.init.stats_file:
                    raise InitError(
                        "bn_policy='transfer' copies BatchNorm tensors and needs "
                        "--source_weights; a stats file holds only their mean and variance"
                    )
                self.copy(layer)
                return
        stats = self.stats()
        items = self._source_items(layer.name, stats.layers, f"statistics ({stats.description})")
        self._check_count(layer, len(items))
        for var, stat in zip(layer.weights, items, strict=True):
            channels = self._gray_adjust(layer.name, tuple(var.shape), stat.shape)
            mean, variance = stat.mean, stat.var
            if channels > 1:
                if self._tensors is not None and not self.init.stats_file:
                    summed = dict(self._tensors.tensors[layer.name])[stat.name].sum(axis=2)
                    mean, variance = float(summed.mean()), float(summed.var())
                else:  # a sum of `channels` independent draws
                    mean, variance = mean * channels, variance * channels
            rng = np.random.default_rng(variable_seed(self.init.seed, var.path))
            value = rng.normal(mean, np.sqrt(variance), size=tuple(var.shape))
            if var.name == "moving_variance":
                value = np.maximum(np.abs(value), MIN_MOVING_VARIANCE)
            var.assign(value.astype(np.float32))
            self._row(layer, var, "meanvar", stat.name, stats)

    def gabor(self, layer: keras.layers.Layer) -> None:
        """A Gabor bank in the conv kernel (scaled to the source's conv1 or He); bias random."""
        kernel_shape = tuple(layer.kernel.shape)
        bank, _ = gabor_lib.gabor_bank(
            kernel_size=kernel_shape[0],
            in_channels=kernel_shape[2],
            out_channels=kernel_shape[3],
        )
        if kernel_shape[0] != kernel_shape[1]:
            raise InitError(
                f"gabor init needs a square conv1 kernel, {layer.name} has {kernel_shape}"
            )
        source, stat_name = None, None
        if self.has_source():
            stats = self.stats()
            items = self._source_items(
                layer.name, stats.layers, f"statistics ({stats.description})"
            )
            stat = next(s for s in items if s.name.endswith("/kernel"))
            mean, std = stat.mean, float(np.sqrt(stat.var))
            source, stat_name = stats, stat.name
        else:
            mean, std = 0.0, gabor_lib.he_std(kernel_shape)
        layer.kernel.assign(gabor_lib.scale_bank(bank, mean=mean, std=std))
        self._row(layer, layer.kernel, "gabor", stat_name, source)
        for var in layer.weights:
            if var is not layer.kernel:
                seeded = _seeded(layer.bias_initializer, variable_seed(self.init.seed, var.path))
                var.assign(seeded(tuple(var.shape), dtype=var.dtype))
                self._row(layer, var, "random")

    def _check_count(self, layer, count: int) -> None:
        if count != len(layer.weights):
            raise InitError(
                f"layer {layer.name!r}: the model has {len(layer.weights)} tensors "
                f"({[v.name for v in layer.weights]}) but the source has {count}"
            )


def init_random(ctx: InitContext) -> None:
    """I1: every variable from Keras' default initializer of its layer, seeded per variable.

    Keras defaults: Conv2D/Dense kernels glorot_uniform, biases zeros, BatchNorm gamma ones,
    beta zeros, moving mean zeros, moving variance ones. `random_initializer` replaces the
    kernel initializer (e.g. "he_normal").
    """
    for layer in ctx.weighted_layers():
        ctx.random(layer)


def init_imagenet(ctx: InitContext) -> None:
    """I2: copy every transferable backbone tensor from the source weights; the head is new."""
    transferable = ctx.transferable_layers()
    for layer in ctx.weighted_layers():
        if layer.name in transferable and not ctx.is_head(layer):
            ctx.copy(layer)
        else:
            ctx.random(layer)


def init_meanvar(ctx: InitContext) -> None:
    """I3: each transferable tensor iid from N(mu, sigma^2) of its source tensor; BN by policy."""
    transferable = ctx.transferable_layers()
    for layer in ctx.weighted_layers():
        if layer.name in transferable and not ctx.is_head(layer):
            ctx.meanvar(layer)
        else:
            ctx.random(layer)


def init_transfusion(ctx: InitContext) -> None:
    """I4: copy units up to and including `transfuse_upto`; above it random (or meanvar)."""
    if ctx.init.transfuse_upto is None:
        raise InitError("init 'transfusion' needs transfuse_upto (a unit name or a count)")
    try:
        cut = resolve_unit_index(ctx.units, ctx.init.transfuse_upto, model_name=ctx.model_name)
    except ValueError as err:
        raise InitError(str(err)) from None
    if cut >= ctx.transferable_units:
        last = ctx.units[ctx.transferable_units - 1].name
        raise InitError(
            f"transfuse_upto={ctx.init.transfuse_upto}: {ctx.model_name} takes source weights "
            f"up to unit {last} only"
        )
    copied = ctx.units_upto(cut)
    transferable = ctx.transferable_layers()
    for layer in ctx.weighted_layers():
        if layer.name in copied:
            ctx.copy(layer)
        elif (
            ctx.init.upper_init == "meanvar"
            and layer.name in transferable
            and not ctx.is_head(layer)
        ):
            ctx.meanvar(layer)
        else:
            ctx.random(layer)


def init_gabor(ctx: InitContext) -> None:
    """I5: conv1 from a Gabor bank (source conv1 mean/var if a source is given, else He scale)."""
    if ctx.first_conv is None:
        raise InitError(f"{ctx.model_name} has no conv layer in unit {ctx.units[0].name}")
    for layer in ctx.weighted_layers():
        if layer.name == ctx.first_conv:
            ctx.gabor(layer)
        else:
            ctx.random(layer)
