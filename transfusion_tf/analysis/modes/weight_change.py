"""`weight_change`: per-layer (and per-unit) ||W_final - W_init|| / ||W_init|| of each run.

Writes weight_change.json/.csv, weight_change*.png and TensorBoard (those figures and the
table of runs per unit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from transfusion_tf.analysis import figures
from transfusion_tf.analysis import output as output_lib
from transfusion_tf.analysis import runs as runs_lib

MODE = "weight_change"


def weight_change(*, workdirs: Sequence[str], output_dir: str) -> dict[str, Any]:
    """Relative weight change ||W_final - W_init|| / ||W_init|| per variable, layer and unit.

    Layers and units pool their trainable variables (kernel, bias, BN gamma/beta); a tensor
    that is all zeros at init has an undefined (None) relative change, its absolute change is
    kept. Writes weight_change.json/.csv, weight_change*.png, TensorBoard.
    """
    workdirs = runs_lib.check_workdirs(workdirs, minimum=1, mode=MODE)
    labels = runs_lib.labels(workdirs)
    runs, rows = [], []
    for label, workdir in zip(labels, workdirs, strict=True):
        record, variable_rows = _run_change(label, workdir)
        runs.append(record)
        rows += variable_rows
    payload = {"mode": MODE, "runs": runs}
    with output_lib.Output(output_dir, mode=MODE) as out:
        out.json("weight_change.json", payload)
        out.csv("weight_change.csv", rows)
        out.figures_per_model(runs, stem="weight_change", plot=_plot)
        out.table(
            "units",
            [
                {"run": r["run"], "unit": u, "relative_change": v}
                for r in runs
                for u, v in r["units"].items()
            ],
            ("run", "unit", "relative_change"),
        )
    return payload


def _run_change(label: str, workdir: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One run's JSON record (layers and units) and its CSV rows (one per variable)."""
    cfg, units, variables = runs_lib.init_and_final_weights(workdir)
    unit_of = {layer: u.name for u in units for layer in u.layers}
    layers: dict[str, list[float]] = {}
    unit_sums: dict[str, list[float]] = {}
    rows = []
    for layer, path, trainable, w0, w1 in variables:
        diff_sq, init_sq = float(np.sum((w1 - w0) ** 2)), float(np.sum(w0**2))
        unit = unit_of.get(layer, "head")
        rows.append(
            {
                "run": label,
                "model": cfg.model.name,
                "unit": unit,
                "layer": layer,
                "variable": path,
                "trainable": trainable,
                "shape": "x".join(str(d) for d in w0.shape),
                "norm_init": float(np.sqrt(init_sq)),
                "norm_change": float(np.sqrt(diff_sq)),
                "relative_change": runs_lib.relative_change(diff_sq, init_sq),
            }
        )
        if trainable:
            for table, key in ((layers, layer), (unit_sums, unit)):
                sums = table.setdefault(key, [0.0, 0.0])
                sums[0] += diff_sq
                sums[1] += init_sq
    record = {
        "run": label,
        "workdir": workdir,
        "model": cfg.model.name,
        "init": cfg.init.name,
        "layers": [
            {
                "layer": k,
                "unit": unit_of.get(k, "head"),
                "relative_change": runs_lib.relative_change(*v),
            }
            for k, v in layers.items()
        ],
        "units": {k: runs_lib.relative_change(*v) for k, v in unit_sums.items()},
    }
    return record, rows


def _plot(model: str, records: Sequence[Mapping[str, Any]], path: str) -> str:
    """The per-layer relative change of the runs of one model, one line per run."""
    curves = {
        f"{r['run']} ({r['init']})": [
            np.nan if e["relative_change"] is None else e["relative_change"] for e in r["layers"]
        ]
        for r in records
    }
    return figures.plot_weight_change(
        curves,
        [entry["layer"] for entry in records[0]["layers"]],
        path,
        title=f"{model}: relative weight change per layer",
    )
