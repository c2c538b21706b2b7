"""`filters`: conv1 filters of each run at init and final (Fig. 5) and how much each moved.

Writes filters.json, filters.csv (one row per filter), filters_<run>.png and TensorBoard (those
figures and the table of runs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from transfusion_tf.analysis import figures
from transfusion_tf.analysis import output as output_lib
from transfusion_tf.analysis import pairs as pairs_lib
from transfusion_tf.analysis import runs as runs_lib

MODE = "filters"
_TABLE_KEYS = ("run", "model", "init", "layer", "relative_change", "mean_filter_cosine")


def filter_grids(
    *, workdirs: Sequence[str], output_dir: str, max_filters: int = 64
) -> dict[str, Any]:
    """conv1 filters of each run at init and final (Fig. 5) and how much each filter moved.

    Writes filters.json, filters.csv (one row per filter: relative change, cosine similarity of
    init and final), filters_<run>.png, TensorBoard images `filters/filters_<run>`.
    """
    workdirs = runs_lib.check_workdirs(workdirs, minimum=1, mode=MODE)
    labels = runs_lib.labels(workdirs)
    records, rows = [], []
    with output_lib.Output(output_dir, mode=MODE) as out:
        for label, workdir in zip(labels, workdirs, strict=True):
            record, filter_rows = _run_filters(
                out, label=label, workdir=workdir, max_filters=max_filters
            )
            records.append(record)
            rows += filter_rows
        out.table("runs", records, _TABLE_KEYS)
        payload = {"mode": MODE, "runs": records}
        out.json("filters.json", payload)
        out.csv("filters.csv", rows)
    return payload


def _conv1_kernel(workdir: str):
    """(config, layer, variable path, init kernel, final kernel) of the run's first unit.

    Kernels are float64 [kh, kw, in_channels, filters].
    """
    cfg, units, variables = runs_lib.init_and_final_weights(workdir)
    conv1 = set(units[0].layers)
    found = [
        (layer, path, w0, w1)
        for layer, path, _, w0, w1 in variables
        if layer in conv1 and w0.ndim == 4 and path.endswith("kernel")
    ]
    if not found:
        raise ValueError(f"{workdir}: unit {units[0].name!r} has no 4-D conv kernel")
    return (cfg, *found[0])


def _run_filters(
    out: output_lib.Output, *, label: str, workdir: str, max_filters: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Draws one run's filters_<run>.png; returns its JSON record and CSV rows (per filter)."""
    cfg, layer, path, w0, w1 = _conv1_kernel(workdir)
    flat0 = w0.reshape(-1, w0.shape[-1])
    flat1 = w1.reshape(-1, w1.shape[-1])
    norms0 = np.linalg.norm(flat0, axis=0)
    norms1 = np.linalg.norm(flat1, axis=0)
    change = np.linalg.norm(flat1 - flat0, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(norms0 > 0, change / norms0, np.nan)
        cos = np.where(norms0 * norms1 > 0, np.sum(flat0 * flat1, 0) / (norms0 * norms1), np.nan)
    rows = [
        {
            "run": label,
            "filter": i,
            "norm_init": float(norms0[i]),
            "norm_final": float(norms1[i]),
            "relative_change": None if np.isnan(rel[i]) else float(rel[i]),
            "cosine_init_final": None if np.isnan(cos[i]) else float(cos[i]),
        }
        for i in range(w0.shape[-1])
    ]
    png = out.figure(
        f"filters_{label.replace('/', '_')}.png",
        lambda png_path: figures.plot_filter_grids(
            {"init": w0, "final": w1},
            png_path,
            title=f"{label}: {cfg.model.name} {layer} ({cfg.init.name} init)",
            max_filters=max_filters,
        ),
    )
    record = {
        "run": label,
        "workdir": workdir,
        "model": cfg.model.name,
        "init": cfg.init.name,
        "layer": layer,
        "variable": path,
        "shape": list(w0.shape),
        "relative_change": runs_lib.relative_change(
            float(np.sum((w1 - w0) ** 2)), float(np.sum(w0**2))
        ),
        "mean_filter_cosine": pairs_lib.mean_or_none([c for c in cos if not np.isnan(c)]),
        "figure": os.path.basename(png),
    }
    return record, rows
