"""`init_vs_final`: each run's init vs final representations per unit (Fig. 3), and Fig. 4.

Writes init_vs_final.json/.csv, init_vs_final_units*.png, init_vs_final_scatter.png (two runs
or more) and TensorBoard (those figures and the table of runs per unit).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from transfusion_tf.analysis import activations as act
from transfusion_tf.analysis import figures
from transfusion_tf.analysis import measures as measures_lib
from transfusion_tf.analysis import output as output_lib
from transfusion_tf.analysis import pairs as pairs_lib
from transfusion_tf.analysis import runs as runs_lib

MODE = "init_vs_final"
_TABLE_KEYS = ("model", "run", "init", "unit", "value", "null_mean", "above_chance")


def init_vs_final(
    *,
    workdirs: Sequence[str],
    output_dir: str,
    dataset_dir: str | None = None,
    measures: Sequence[str] = pairs_lib.DEFAULT_ACTIVATION_MEASURES,
    options: measures_lib.MeasureOptions = measures_lib.MeasureOptions(),
    spec: act.ActivationSpec = act.ActivationSpec(),
    units: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Per-unit similarity of each run's init and final representations (Fig. 3), and Fig. 4.

    Fig. 4: for every pair of runs of one architecture and every unit, the pair's similarity
    at initialisation (x) against their similarity after training (y); `init_final_correlation`
    is the Pearson correlation of the two over the pairs, per unit and per pair kind (never
    pooled over units, whose levels differ). Every value carries its null and above_chance.
    Writes init_vs_final.json/.csv, init_vs_final_units*.png, init_vs_final_scatter.png
    (two runs or more), TensorBoard.
    """
    measures = measures_lib.check_measure_names(measures, streaming=True)
    workdirs = runs_lib.check_workdirs(workdirs, minimum=1, mode=MODE)
    labels = runs_lib.labels(workdirs)
    primary = measures[0]
    runs: list[act.LoadedRun] = []
    for w in workdirs:  # runs[2k] = run k at init, runs[2k + 1] = run k final
        runs.extend([act.load_run(w, which="init"), act.load_run(w, which="final")])
    per_run, scatter, rows = [], [], []
    for group in runs_lib.group_by_arch([runs[2 * k].config for k in range(len(workdirs))]):
        group_runs, group_scatter, group_rows = _group_records(
            runs,
            group,
            workdirs=workdirs,
            labels=labels,
            dataset_dir=dataset_dir,
            spec=spec,
            units=units,
            measures=measures,
            options=options,
        )
        per_run += group_runs
        scatter += group_scatter
        rows += group_rows
    low = pairs_lib.warn_low_ratio(
        [{"unit": u, **v} for r in per_run for u, v in r["units"].items()], what=MODE
    )
    payload = {
        "mode": MODE,
        "measures": measures,
        "primary_measure": primary,
        "options": dataclasses.asdict(options),
        "activations": dataclasses.asdict(spec),
        "above_chance_rule": pairs_lib.ABOVE_CHANCE_RULE,
        "low_datapoints_per_feature": low,
        "runs": per_run,
        "pairs": scatter,
        "init_final_correlation": init_final_correlations(scatter, measure=primary),
    }
    with output_lib.Output(output_dir, mode=MODE) as out:
        out.json("init_vs_final.json", payload)
        out.csv("init_vs_final.csv", rows)
        _write_figures(out, per_run, scatter, primary=primary)
    return payload


def _group_records(
    runs: Sequence[act.LoadedRun],
    group: Sequence[int],
    *,
    workdirs: Sequence[str],
    labels: Sequence[str],
    dataset_dir: str | None,
    spec: act.ActivationSpec,
    units: Sequence[str] | None,
    measures: Sequence[str],
    options: measures_lib.MeasureOptions,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """One architecture's runs (k in `group`; runs[2k] at init, runs[2k + 1] final): their
    per-unit init-vs-final records, Fig. 4's points of every pair of them, and the CSV rows."""
    per_run, scatter, rows = [], [], []
    cross = list(itertools.combinations(group, 2))
    cross_pairs = [(2 * a, 2 * b) for a, b in cross] + [(2 * a + 1, 2 * b + 1) for a, b in cross]
    unit_names, sims = pairs_lib.run_pairs(
        runs,
        [(2 * k, 2 * k + 1) for k in group] + cross_pairs,
        dataset_dir=dataset_dir,
        spec=spec,
        units=units,
        measures=measures,
        options=options,
    )
    records = {p: {u: sims[p][u].record() for u in unit_names} for p in sims}
    for k in group:
        per_run.append(
            {
                "run": labels[k],
                "workdir": workdirs[k],
                "model": runs[2 * k].config.model.name,
                "init": runs[2 * k].config.init.name,
                "units": records[(2 * k, 2 * k + 1)],
            }
        )
        rows += _unit_rows(per_run[-1], "init_vs_final", labels[k], labels[k], measures)
    for a, b in cross:
        points = _scatter_points(runs, (a, b), labels=labels, records=records, measures=measures)
        scatter += points
        rows += _pair_rows(points, records, (a, b), measures)
    return per_run, scatter, rows


def _unit_rows(
    record: Mapping[str, Any],
    comparison: str,
    run_a: str,
    run_b: str,
    measures: Sequence[str],
) -> list[dict[str, Any]]:
    """CSV rows, one per unit of `record["units"]`, of one comparison of two runs."""
    return [
        {
            "comparison": comparison,
            "model": record["model"],
            "run_a": run_a,
            "run_b": run_b,
            "unit": unit,
            **pairs_lib.csv_cells(values, measures),
        }
        for unit, values in record["units"].items()
    ]


def _scatter_points(
    runs: Sequence[act.LoadedRun],
    pair: tuple[int, int],
    *,
    labels: Sequence[str],
    records: Mapping[tuple[int, int], Mapping[str, Mapping[str, Any]]],
    measures: Sequence[str],
) -> list[dict[str, Any]]:
    """Fig. 4's points of runs a and b: per unit, their similarity at init and after training."""
    a, b = pair
    init_a, init_b = runs[2 * a].config.init.name, runs[2 * b].config.init.name
    at_init, at_final = records[(2 * a, 2 * b)], records[(2 * a + 1, 2 * b + 1)]
    return [
        {
            "model": runs[2 * a].config.model.name,
            "run_a": labels[a],
            "run_b": labels[b],
            "kind": pairs_lib.pair_kind(init_a, init_b),
            "group": pairs_lib.pair_group(init_a, init_b),
            "unit": unit,
            "init": {m: at_init[unit][m] for m in measures},
            "final": {m: at_final[unit][m] for m in measures},
            "init_null": at_init[unit]["null"],
            "final_null": at_final[unit]["null"],
            "init_above_chance": at_init[unit]["above_chance"],
            "final_above_chance": at_final[unit]["above_chance"],
        }
        for unit in at_init
    ]


def _pair_rows(
    points: Sequence[Mapping[str, Any]],
    records: Mapping[tuple[int, int], Mapping[str, Mapping[str, Any]]],
    pair: tuple[int, int],
    measures: Sequence[str],
) -> list[dict[str, Any]]:
    """CSV rows of a pair of runs: per unit, `pair_at_init` then `pair_at_final`."""
    a, b = pair
    stages = (("init", records[(2 * a, 2 * b)]), ("final", records[(2 * a + 1, 2 * b + 1)]))
    rows = []
    for p in points:
        for stage, values in stages:
            record = {"model": p["model"], "units": {p["unit"]: values[p["unit"]]}}
            rows += _unit_rows(record, f"pair_at_{stage}", p["run_a"], p["run_b"], measures)
    return rows


def init_final_correlations(
    scatter: Sequence[Mapping[str, Any]], *, measure: str
) -> list[dict[str, Any]]:
    """Fig. 4's correlation per (model, unit, pair kind): Pearson r of init vs final similarity.

    Returns one record {model, unit, kind, pairs, correlation} per group; correlation is None
    with fewer than 3 pairs or no spread on either axis.
    """
    groups: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for p in scatter:
        key = (p["model"], p["unit"], p["kind"])
        points = groups.setdefault(key, [])
        if p["init"][measure] is not None and p["final"][measure] is not None:
            points.append((p["init"][measure], p["final"][measure]))
    out = []
    for (model, unit, kind), points in groups.items():
        correlation = None
        arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if len(points) >= 3 and arr.std(axis=0).min() > 0:
            correlation = float(np.corrcoef(arr.T)[0, 1])
        out.append(
            {
                "model": model,
                "unit": unit,
                "kind": kind,
                "pairs": len(points),
                "correlation": correlation,
            }
        )
    return out


def _write_figures(
    out: output_lib.Output,
    per_run: Sequence[Mapping[str, Any]],
    scatter: Sequence[Mapping[str, Any]],
    *,
    primary: str,
) -> None:
    """init_vs_final_units*.png, init_vs_final_scatter.png and the table of runs per unit."""
    pairs_lib.write_unit_curves(
        out,
        per_run,
        stem="init_vs_final_units",
        label=lambda r: f"{r['run']} ({r['init']})",
        measure=primary,
        title=lambda model: f"{model}: {primary} of each unit at init vs after training",
    )
    if scatter:
        groups: dict[str, list[tuple[float, float]]] = {}
        for p in scatter:
            if p["init"][primary] is not None and p["final"][primary] is not None:
                key = f"{p['model']}: {p['kind']}"
                groups.setdefault(key, []).append((p["init"][primary], p["final"][primary]))
        levels = [
            pairs_lib.mean_or_none([p[f"{stage}_null"][primary]["mean"] for p in scatter])
            for stage in ("init", "final")
        ]
        out.figure(
            "init_vs_final_scatter.png",
            lambda path: figures.plot_init_final_scatter(
                groups,
                path,
                title=f"{primary} of run pairs, per unit",
                null_levels=(levels[0], levels[1]),
            ),
        )
    table = [
        {
            **r,
            "unit": unit,
            "value": values[primary],
            "null_mean": (values["null"].get(primary) or {}).get("mean"),
            "above_chance": values["above_chance"].get(primary),
        }
        for r in per_run
        for unit, values in r["units"].items()
    ]
    out.table("runs", table, _TABLE_KEYS)
