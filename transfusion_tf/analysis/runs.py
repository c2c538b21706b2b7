"""The workdirs an analysis reads: labels, architecture groups, images, units, weight pairs.

Runs are grouped by architecture (model, image size, channels, widths); pairs are only formed
within a group, since units are compared by name. Every workdir read goes through
`analysis.activations` (which reads the run record of `transfusion_tf.workdir`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from transfusion_tf import workdir as workdir_lib
from transfusion_tf.analysis import activations as act


def labels(workdirs: Sequence[str]) -> list[str]:
    """Short unique names of workdirs: the basename, or more of the path where those clash."""
    parts = [os.path.normpath(os.path.abspath(w)).split(os.sep) for w in workdirs]
    depth = 1
    while True:
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names) or depth >= max(len(p) for p in parts):
            return names
        depth += 1


def _arch_key(cfg) -> tuple:
    m = cfg.model
    return (m.name, m.image_size, m.channels, tuple(m.widths or ()), m.width_multiplier)


def group_by_arch(configs: Sequence[Any]) -> list[list[int]]:
    """Indices of `configs` grouped by architecture, in first-seen order."""
    groups: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(configs):
        groups.setdefault(_arch_key(cfg), []).append(i)
    return list(groups.values())


def check_workdirs(workdirs: Sequence[str], *, minimum: int, mode: str) -> list[str]:
    """The workdirs as a list; ValueError for too few, WorkdirError for one without a config."""
    workdirs = list(workdirs)
    if len(workdirs) < minimum:
        raise ValueError(f"{mode} needs at least {minimum} workdir(s), got {len(workdirs)}")
    for w in workdirs:
        workdir_lib.read_config(w)  # a clear error for a non-workdir before any model is built
    return workdirs


def dataset_dir(path: str | None, run: act.LoadedRun) -> str:
    """`path`, else the dataset the run trained on; an error naming the flag when neither."""
    path = path or run.config.data.dataset_dir
    if not path:
        raise ValueError(
            f"no dataset: {run.workdir}/config.json names none; pass dataset_dir (--dataset_dir)"
        )
    if not os.path.isdir(path):
        raise FileNotFoundError(f"dataset directory {path} not found")
    return path


def images(path: str, run: act.LoadedRun, spec: act.ActivationSpec) -> Iterator[np.ndarray]:
    """The spec's images of the dataset at `path`, preprocessed as `run` was trained.

    Yields float32 [batch, image_size, image_size, channels].
    """
    from transfusion_tf.models import registry as model_registry

    return act.dataset_images(
        dataset_dir=path,
        spec=spec,
        image_size=run.config.model.image_size,
        channels=run.config.model.channels,
        preprocess_mode=model_registry.default_preprocess_mode(run.config.model.name),
    )


def unit_names(run: act.LoadedRun, units: Sequence[str] | None) -> list[str]:
    """The run's units in model order, or those of `units` (ValueError naming unknown ones)."""
    names = [u.name for u in run.units]
    if not units:
        return names
    unknown = [u for u in units if u not in names]
    if unknown:
        raise ValueError(
            f"unknown units {unknown} for model {run.config.model.name}; it has {', '.join(names)}"
        )
    return [n for n in names if n in units]


def init_and_final_weights(workdir: str):
    """(config, units, layer variables) with init and final numpy values of every variable.

    Returns cfg, units, and a list of (layer name, variable path, trainable, init, final),
    init and final being float64 arrays of the variable's shape.
    """
    from transfusion_tf.models import registry as model_registry

    for which in ("init", "final"):  # both files checked before a model is built
        workdir_lib.existing_weights(workdir, which)
    cfg, model = workdir_lib.load_model(workdir, weights="init")
    values = {"init": {id(v): np.array(v.numpy(), dtype=np.float64) for v in model.weights}}
    workdir_lib.load_weights(model, workdir, weights="final")
    values["final"] = {id(v): np.array(v.numpy(), dtype=np.float64) for v in model.weights}
    variables = []
    for layer in model.layers:
        for v in layer.weights:
            trainable = any(v is t for t in layer.trainable_weights)
            variables.append(
                (layer.name, v.path, trainable, values["init"][id(v)], values["final"][id(v)])
            )
    return cfg, model_registry.model_units(model, cfg.model.name), variables


def relative_change(diff_sq: float, init_sq: float) -> float | None:
    """sqrt(||W1 - W0||^2 / ||W0||^2), or None when W0 is all zeros."""
    return float(np.sqrt(diff_sq / init_sq)) if init_sq > 0 else None
