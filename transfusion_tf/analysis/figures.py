"""PNG figures of the representational analyses (matplotlib, object API, Agg canvas).

One function per figure of the paper's Section 4: per-unit similarity curves (Fig. 3 and the
per-unit view of Fig. 2), the grouped pair statistic (Fig. 2), the init-vs-final similarity
scatter (Fig. 4), conv1 filter grids (Fig. 5), per-layer weight change, and the measure summary
of the `arrays` mode. Each writes one PNG and returns its path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from transfusion_tf.tiling import filter_grid


def _save(fig: Figure, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_measures(
    values: Mapping[str, float | None],
    correlations: Sequence[float],
    path: str,
    *,
    title: str,
    null: Mapping[str, Mapping[str, float | None]] | None = None,
) -> str:
    """Bar chart of every measure (with its null mean +/- 3 sd) next to the CCA spectrum."""
    fig = Figure(figsize=(10, 4))
    ax_bar, ax_rho = fig.subplots(1, 2)
    names = list(values)
    heights = [np.nan if values[n] is None else values[n] for n in names]
    ax_bar.bar(range(len(names)), heights, color="tab:blue", label="value")
    drawn = False
    for i, name in enumerate(names):
        level = (null or {}).get(name) or {}
        if level.get("mean") is not None:
            ax_bar.errorbar(
                i,
                level["mean"],
                yerr=3.0 * level["sd"],
                fmt="_",
                color="tab:red",
                markersize=14,
                capsize=4,
                label=None if drawn else "chance (null mean ± 3 sd)",
            )
            drawn = True
    if drawn:
        ax_bar.legend(fontsize="small")
    ax_bar.set_xticks(range(len(names)), names, rotation=40, ha="right")
    ax_bar.set_ylim(min(0.0, np.nanmin(heights + [0.0])), 1.0)
    ax_bar.set_ylabel("similarity")
    ax_bar.set_title(title)
    ax_rho.plot(np.arange(1, len(correlations) + 1), correlations, marker=".")
    ax_rho.set_xlabel("canonical direction")
    ax_rho.set_ylabel("canonical correlation")
    ax_rho.set_ylim(0.0, 1.02)
    ax_rho.set_title("CCA spectrum")
    return _save(fig, path)


def plot_unit_curves(
    units: Sequence[str],
    curves: Mapping[str, Sequence[float | None]],
    path: str,
    *,
    title: str,
    ylabel: str,
    null_bands: Mapping[str, Sequence[tuple[float, float] | None]] | None = None,
) -> str:
    """One line per curve over the ordered units (None = undefined, drawn as a gap).

    null_bands: per curve label, the (low, high) chance band of each unit, drawn shaded in the
    curve's colour.
    """
    fig = Figure(figsize=(max(5.0, 0.9 * len(units) + 2.5), 4))
    ax = fig.subplots()
    for label, values in curves.items():
        ys = [np.nan if v is None else v for v in values]
        (line,) = ax.plot(range(len(units)), ys, marker="o", label=label)
        band = (null_bands or {}).get(label)
        if band and any(b is not None for b in band):
            low = [np.nan if b is None else b[0] for b in band]
            high = [np.nan if b is None else b[1] for b in band]
            ax.fill_between(
                range(len(units)), low, high, color=line.get_color(), alpha=0.15, linewidth=0
            )
    if null_bands:
        ax.plot([], [], color="gray", alpha=0.4, linewidth=6, label="chance (null mean ± 3 sd)")
    ax.set_xticks(range(len(units)), units, rotation=30, ha="right")
    ax.set_ylim(0.0, 1.02)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(curves) <= 12:
        ax.legend(fontsize="small")
    return _save(fig, path)


def plot_pair_groups(
    groups: Mapping[str, Sequence[float]],
    path: str,
    *,
    title: str,
    null_levels: Mapping[str, float] | None = None,
) -> str:
    """Fig. 2: mean (bars) and every pair (dots) of the top-two-unit similarity per group.

    null_levels: per group, the mean chance level, drawn as a red line across its bar.
    """
    fig = Figure(figsize=(max(4.0, 1.6 * len(groups) + 1.5), 4))
    ax = fig.subplots()
    drawn = False
    for i, (name, values) in enumerate(groups.items()):
        values = np.asarray(values, dtype=np.float64)
        ax.bar(i, float(np.mean(values)), color="tab:blue", alpha=0.6)
        level = (null_levels or {}).get(name)
        if level is not None:
            ax.hlines(
                level,
                i - 0.4,
                i + 0.4,
                color="tab:red",
                linewidth=2,
                label=None if drawn else "chance (null mean)",
            )
            drawn = True
        if values.size > 1:
            ax.errorbar(i, float(np.mean(values)), yerr=float(np.std(values)), color="black")
        ax.scatter(np.full(values.size, i), values, color="black", s=12, zorder=3)
    ax.set_xticks(range(len(groups)), list(groups), rotation=20, ha="right")
    ax.set_ylabel("similarity, top two units (mean)")
    ax.set_title(title)
    if drawn:
        ax.legend(fontsize="small")
    return _save(fig, path)


def plot_init_final_scatter(
    points: Mapping[str, Sequence[tuple[float, float]]],
    path: str,
    *,
    title: str,
    null_levels: tuple[float | None, float | None] | None = None,
) -> str:
    """Fig. 4: similarity of a pair at initialisation (x) vs after training (y), per unit.

    null_levels: the mean chance level at init (a vertical line) and after training
    (a horizontal line).
    """
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    for label, xy in points.items():
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        ax.scatter(xy[:, 0], xy[:, 1], label=label, s=18)
    ax.plot([0, 1], [0, 1], color="gray", linewidth=0.8, linestyle="--")
    at_init, at_final = null_levels or (None, None)
    if at_init is not None:
        ax.axvline(
            at_init, color="tab:red", linewidth=0.8, linestyle=":", label="chance (mean over units)"
        )
    if at_final is not None:
        ax.axhline(at_final, color="tab:red", linewidth=0.8, linestyle=":")
    ax.set_xlim(0.0, 1.02)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("similarity at initialisation")
    ax.set_ylabel("similarity after training")
    ax.set_title(title)
    if len(points) <= 12:
        ax.legend(fontsize="small")
    return _save(fig, path)


def plot_filter_grids(
    kernels: Mapping[str, np.ndarray], path: str, *, title: str, max_filters: int = 64
) -> str:
    """Fig. 5: conv1 filter grids side by side (e.g. {"init": k0, "final": k1}).

    Kernels are [kh, kw, in, out]; the tiling is the one the trainer's TensorBoard images use.
    """
    fig = Figure(figsize=(4.2 * len(kernels), 4.6))
    axes = np.atleast_1d(fig.subplots(1, len(kernels)))
    for ax, (label, kernel) in zip(axes, kernels.items(), strict=True):
        grid = filter_grid(kernel, max_filters=max_filters, scale=1)[0]
        ax.imshow(grid, interpolation="nearest")
        ax.set_title(label)
        ax.axis("off")
    fig.suptitle(title)
    return _save(fig, path)


def plot_weight_change(
    curves: Mapping[str, Sequence[float]], layers: Sequence[str], path: str, *, title: str
) -> str:
    """Per-layer relative weight change ||W_final - W_init|| / ||W_init||, one line per run."""
    fig = Figure(figsize=(max(6.0, 0.12 * len(layers) + 4.0), 4))
    ax = fig.subplots()
    for label, values in curves.items():
        ax.plot(range(len(layers)), values, marker=".", label=label)
    step = max(1, len(layers) // 30)
    ticks = list(range(0, len(layers), step))
    ax.set_xticks(ticks, [layers[i] for i in ticks], rotation=60, ha="right", fontsize="x-small")
    ax.set_yscale("log", nonpositive="mask")
    ax.set_ylabel("||W_final - W_init|| / ||W_init||")
    ax.set_title(title)
    if len(curves) <= 12:
        ax.legend(fontsize="small")
    return _save(fig, path)
