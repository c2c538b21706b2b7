"""The report's figures: convergence curves with seed-spread bands, median steps-to-threshold bars.

Curves show the validation mean AUC from `eval_history.jsonl` against the training step, one
line per init (mean over seeds) with a band of ± one sample sd, as the paper's Fig. 6 and its
weight-transfusion plots do. Figures are drawn through matplotlib's object API on an Agg
canvas (no pyplot state, no backend switch) and written as PNG.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from transfusion_tf.report import tables


def slug(text: str) -> str:
    """A file-name-safe version of a label."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "x"


def _figure(figsize: tuple[float, float]):
    """A Figure on its own Agg canvas and its one Axes."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def _save(fig: Figure, path: str) -> str:
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def mean_curve(runs: Sequence[tables.RunRecord]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and sd of `auc_mean` over runs at every evaluated step: arrays of shape [steps].

    A step contributes the runs that evaluated it with a defined mean AUC; the sd there is the
    sample sd (0 for a single run).
    """
    per_step: dict[int, list[float]] = {}
    for run in runs:
        for row in run.history:
            value = row.get("auc_mean")
            if value is not None:
                per_step.setdefault(int(row["step"]), []).append(float(value))
    steps = np.array(sorted(per_step), dtype=np.int64)
    means = np.array([np.mean(per_step[s]) for s in steps], dtype=np.float64)
    sds = np.array(
        [np.std(per_step[s], ddof=1) if len(per_step[s]) > 1 else 0.0 for s in steps],
        dtype=np.float64,
    )
    return steps, means, sds


def convergence_figure(
    groups: dict[tuple[str, str, str], list[tables.RunRecord]],
    *,
    dataset: str,
    model: str,
    path: str,
    thresholds: Sequence[float] = (),
) -> str | None:
    """Plots the mean-AUC curves of every init for one (dataset, model); returns the path.

    Returns None (and writes nothing) when no run of that pair has an evaluation history.
    """
    fig, ax = _figure((6.4, 4.2))
    plotted = False
    for (ds, mdl, init), runs in groups.items():
        if (ds, mdl) != (dataset, model):
            continue
        steps, means, sds = mean_curve(runs)
        if steps.size == 0:
            continue
        (line,) = ax.plot(steps, means, marker="o", markersize=3, label=f"{init} (n={len(runs)})")
        ax.fill_between(steps, means - sds, means + sds, color=line.get_color(), alpha=0.2)
        plotted = True
    if not plotted:
        return None
    for t in thresholds:
        ax.axhline(t, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("training step")
    ax.set_ylabel("validation mean AUC")
    ax.set_title(f"{model} on {dataset}: mean ± sd over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def steps_figure(
    rows: Sequence[dict],
    *,
    dataset: str,
    model: str,
    threshold: str,
    path: str,
) -> str | None:
    """Bar chart of the median steps to `threshold` per init (hatched: the median is censored).

    `rows` are `tables.steps_rows` rows. Returns the path, or None when the pair has no rows.
    """
    rows = [r for r in rows if (r["dataset"], r["model"]) == (dataset, model)]
    if not rows:
        return None
    fig, ax = _figure((6.4, 0.5 * len(rows) + 1.6))
    labels, values, hatches = [], [], []
    for row in rows:
        censored = row[f"censored@{threshold}"]
        labels.append(f"{row['init']} ({censored}/{censored + row[f'reached@{threshold}']} cens.)")
        median = row[f"steps@{threshold}"]
        values.append(row["train_steps"] if median is None else median)
        hatches.append("//" if median is None or row[f"median_censored@{threshold}"] else "")
    y = np.arange(len(rows))
    bars = ax.barh(y, values, color="tab:blue", alpha=0.7)
    for bar, hatch in zip(bars, hatches, strict=True):
        if hatch:
            bar.set_hatch(hatch)
            bar.set_alpha(0.3)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"median steps to validation AUC {threshold} (hatched: censored, a lower bound)")
    ax.set_title(f"{model} on {dataset}")
    return _save(fig, path)
