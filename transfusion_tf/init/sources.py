"""Sources of initial weights (SPEC I2, I3): ImageNet, weights files, `.keras` models, workdirs.

Every weights source is read the same way: the source architecture is built (a keras.applications
backbone, or one of our registered models), Keras' own `load_weights` fills it from the file
(legacy HDF5 such as Keras' ImageNet files is loaded in topological order, Keras 3
`.weights.h5` by its object layout), and its tensors are collected by layer name. ImageNet
weights are the same legacy HDF5 files, fetched by `keras.utils.get_file` into Keras' cache, so
a real ImageNet file and a locally written one take exactly the same path.

A *statistics file* (written by `transfusion-stats`) holds per-tensor mean/var/shape so that
Mean Var init needs no weights at all.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import warnings
from collections.abc import Sequence
from typing import Any

import h5py
import keras
import numpy as np
from absl import logging

from transfusion_tf import workdir as workdir_lib
from transfusion_tf.models import applications, registry

STATS_FORMAT = "transfusion_stats"
STATS_VERSION = 1


class SourceError(ValueError):
    """A source of weights or statistics cannot be used (names the file or setting)."""


@dataclasses.dataclass(frozen=True)
class TensorStat:
    """Mean, variance and shape of one source tensor, e.g. `conv1_conv/kernel`."""

    name: str
    shape: tuple[int, ...]
    mean: float
    var: float


@dataclasses.dataclass(frozen=True)
class SourceTensors:
    """Source weights by layer name: `tensors[layer] = [(tensor name, array), ...]` in order."""

    tensors: dict[str, list[tuple[str, np.ndarray]]]
    file: str | None
    sha256: str | None
    description: str
    architecture: str

    def stats(self) -> SourceStats:
        """Per-tensor mean/var of these weights (float64 moments of float32 values)."""
        layers = {
            layer: [
                TensorStat(name, tuple(int(d) for d in value.shape), *_moments(np.asarray(value)))
                for name, value in items
            ]
            for layer, items in self.tensors.items()
        }
        return SourceStats(layers, self.file, self.sha256, self.description, self.architecture)


@dataclasses.dataclass(frozen=True)
class SourceStats:
    """Per-tensor statistics by layer name: `layers[layer] = [TensorStat, ...]` in order."""

    layers: dict[str, list[TensorStat]]
    file: str | None
    sha256: str | None
    description: str
    architecture: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STATS_FORMAT,
            "version": STATS_VERSION,
            "architecture": self.architecture,
            "source": self.description,
            "source_file": self.file,
            "source_sha256": self.sha256,
            "layers": {
                layer: [
                    {"name": s.name, "shape": list(s.shape), "mean": s.mean, "var": s.var}
                    for s in stats
                ]
                for layer, stats in self.layers.items()
            },
        }


def _moments(value: np.ndarray) -> tuple[float, float]:
    value = value.astype(np.float64)
    return float(value.mean()), float(value.var())


def _harvest(model: keras.Model) -> dict[str, list[tuple[str, np.ndarray]]]:
    return {
        layer.name: [(f"{layer.name}/{w.name}", np.array(w.numpy())) for w in layer.weights]
        for layer in model.layers
        if layer.weights
    }


_KERAS_TOTAL_RE = re.compile(
    r"A total of (\d+) objects could not be loaded\. Example error message for object "
    r"<(\w+) name=([^,>]+)"
)
_KERAS_SHAPES_RE = re.compile(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))")


def load_error_summary(err: BaseException) -> str:
    """One line from a Keras `load_weights` error, which spans pages (variable values and
    the list of every layer that failed): how many layers failed, and the first one's reason
    with the shapes involved."""
    text = str(err).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return repr(err)
    total = _KERAS_TOTAL_RE.search(text)
    if total is None:
        return lines[0][:400]
    count, cls, layer = total.groups()
    shapes = _KERAS_SHAPES_RE.search(text)
    if shapes is not None:
        reason = (
            f"it expects a variable of shape {shapes.group(1)}, the file holds {shapes.group(2)}"
        )
    else:
        detail = lines[1] if len(lines) > 1 else ""
        reason = detail.split(" Target variable:")[0][:300] or "no detail given"
    return f"{count} layer(s) could not be loaded; the first, {cls} {layer!r}: {reason}"


def _load_into(model: keras.Model, path: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.load_weights(path)


def _head_units_in_file(path: str) -> int | None:
    """Output size of the "head" layer stored in a weights file, if there is one."""
    try:
        with h5py.File(path, "r") as f:
            group = f.get("model_weights", f)
            if "head" in group:  # legacy HDF5: one group per layer
                for key in _walk_datasets(group["head"]):
                    if len(group["head"][key].shape) == 2:
                        return int(group["head"][key].shape[1])
            if "layers" in group:  # Keras 3: layers/<class>_<k>/vars/<i>
                dense = sorted(k for k in group["layers"] if k.startswith("dense"))
                for key in dense[-1:]:
                    kernel = group["layers"][key]["vars"]["0"]
                    return int(kernel.shape[1])
    except (OSError, KeyError, IndexError, ValueError):
        return None
    return None


def _walk_datasets(group: h5py.Group) -> list[str]:
    names: list[str] = []
    group.visit(lambda name: names.append(name) if isinstance(group[name], h5py.Dataset) else None)
    return names


def _materialise_file(
    path: str,
    *,
    model_name: str,
    channels: int,
    widths: Sequence[int] | None,
    width_multiplier: float,
) -> tuple[keras.Model, str]:
    """Builds the architecture that `path` fits and loads it; returns (model, architecture)."""
    spec = registry.get_spec(model_name)
    attempts: list[tuple[str, Any]] = []
    if spec.source_arch is not None:
        size = applications.MIN_IMAGE_SIZE[spec.source_arch]

        def app_candidate(arch=spec.source_arch, size=size):
            return applications.application_backbone(arch, image_size=size, channels=3)

        attempts.append((f"keras.applications {spec.source_arch} backbone", app_candidate))
    num_tasks = _head_units_in_file(path) or 1
    for ch in dict.fromkeys([channels, 3]):

        def own_candidate(ch=ch):
            return registry.build_model(
                model_name,
                num_tasks=num_tasks,
                image_size=registry.probe_image_size(model_name),
                channels=ch,
                widths=widths,
                width_multiplier=width_multiplier,
            )

        attempts.append((f"{model_name} with a {num_tasks}-way head, {ch} channels", own_candidate))
    errors = []
    for label, build in attempts:
        model = build()
        try:
            _load_into(model, path)
        except Exception as err:  # every loader failure is reported below
            errors.append(f"{label}: {load_error_summary(err)}")
            continue
        arch = spec.source_arch if label.startswith("keras.applications") else model_name
        return model, arch
    raise SourceError(
        f"source weights {path} do not fit model {model_name!r} (wrong architecture or file); "
        + "; ".join(errors)
    )


def _workdir_source(workdir: str) -> tuple[keras.Model, str, str]:
    """(model holding a source run's final weights, their path, its architecture).

    The model is built at the architecture's probe size: only the weights' shapes matter.
    """
    for name in (workdir_lib.CONFIG_FILE, workdir_lib.FINAL_WEIGHTS):
        if not os.path.isfile(os.path.join(workdir, name)):
            raise FileNotFoundError(f"source workdir {workdir} has no {name}")
    try:
        cfg = workdir_lib.read_config(workdir)
    except workdir_lib.WorkdirError as err:
        raise SourceError(f"cannot read the model settings: {err}") from err
    name = cfg.model.name
    model = workdir_lib.build_model(cfg, image_size=registry.probe_image_size(name))
    weights_path = workdir_lib.weights_path(workdir, "final")
    try:
        _load_into(model, weights_path)
    except Exception as err:
        raise SourceError(
            f"cannot load {weights_path} into {name}: {load_error_summary(err)}"
        ) from None
    return model, weights_path, name


@functools.lru_cache(maxsize=4)
def _cached_source(
    spec: str,
    path: str,
    stamp: tuple[int, int],
    model_name: str,
    channels: int,
    widths: tuple[int, ...] | None,
    width_multiplier: float,
) -> SourceTensors:
    del stamp  # part of the cache key only: a rewritten file is read again
    if os.path.isdir(spec):
        model, path, arch = _workdir_source(spec)
        description = f"workdir {spec} ({arch})"
    elif path.endswith(".keras"):
        try:
            model = keras.saving.load_model(path, compile=False)
        except Exception as err:
            raise SourceError(f"cannot load the Keras model {path}: {err}") from err
        arch = model.name
        description = f"keras model {path}"
    elif path.endswith((".h5", ".hdf5")):
        model, arch = _materialise_file(
            path,
            model_name=model_name,
            channels=channels,
            widths=widths,
            width_multiplier=width_multiplier,
        )
        kind = "imagenet" if spec == "imagenet" else "weights file"
        description = f"{kind} {path} ({arch})"
    else:
        raise SourceError(
            f"source weights {spec}: unsupported format; give 'imagenet', a .h5 / .weights.h5 "
            "file, a .keras model or a workdir"
        )
    logging.info("Read source weights %s (%s)", path, arch)
    return SourceTensors(_harvest(model), path, workdir_lib.sha256(path), description, arch)


def load_source_weights(
    spec: str,
    *,
    model_name: str,
    channels: int = 3,
    widths: Sequence[int] | None = None,
    width_multiplier: float = 0.5,
) -> SourceTensors:
    """Reads source weights for a target model of registered architecture `model_name`.

    Args:
      spec: "imagenet", a legacy HDF5 or Keras 3 `.weights.h5` file, a `.keras` model, or a
        workdir of ours (`<workdir>/weights/final.weights.h5` with `<workdir>/config.json`).
      model_name: the target's architecture; picks the backbone a weights file is read into.
      channels, widths, width_multiplier: the target's settings, tried for files of our models.

    Returns:
      The source tensors by layer name with the source file and its SHA-256.

    Raises:
      FileNotFoundError: the file or workdir (or a file inside it) does not exist.
      SourceError: the file cannot be read or does not fit the architecture.
    """
    spec = os.fspath(spec)
    if spec == "imagenet":
        arch = registry.get_spec(model_name).source_arch
        if arch is None:
            raise SourceError(
                f"there are no ImageNet weights for {model_name!r}; "
                "pass --source_weights=PATH (a weights file, .keras model or workdir)"
            )
        path = applications.imagenet_weights_path(arch)
    elif not os.path.exists(spec):
        raise FileNotFoundError(f"source weights not found: {spec}")
    else:
        path = spec
    target = workdir_lib.weights_path(path, "final") if os.path.isdir(path) else path
    stat = os.stat(target) if os.path.exists(target) else os.stat(path)
    return _cached_source(
        spec,
        path,
        (stat.st_mtime_ns, stat.st_size),
        model_name,
        channels,
        tuple(widths) if widths is not None else None,
        float(width_multiplier),
    )


def load_stats_file(path: str) -> SourceStats:
    """Reads a statistics file written by `write_stats` (`transfusion-stats`)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"stats file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SourceError(f"stats file {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or data.get("format") != STATS_FORMAT:
        raise SourceError(f"{path} is not a transfusion stats file (format {STATS_FORMAT!r})")
    try:
        layers = {
            layer: [
                TensorStat(
                    str(s["name"]),
                    tuple(int(d) for d in s["shape"]),
                    float(s["mean"]),
                    float(s["var"]),
                )
                for s in items
            ]
            for layer, items in data["layers"].items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise SourceError(f"stats file {path} is malformed: {err!r}") from err
    bad = [s.name for stats in layers.values() for s in stats if not s.var >= 0]
    if bad:
        raise SourceError(f"stats file {path} has negative or NaN variances for {bad[:5]}")
    return SourceStats(
        layers,
        path,
        workdir_lib.sha256(path),
        f"stats file {path} of {data.get('source')}",
        str(data.get("architecture")),
    )


def write_stats(stats: SourceStats, path: str) -> None:
    """Writes per-tensor mean/var/shape as JSON (a few kilobytes) to `path`."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(stats.to_dict(), f, indent=1)
