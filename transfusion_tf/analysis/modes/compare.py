"""`compare`: per-unit similarity between every pair of runs, and Fig. 2's statistic.

Writes compare.json, compare.csv, compare_units*.png (null as a band), compare_fig2.png and
TensorBoard (those figures and the table of pairs).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

from transfusion_tf.analysis import activations as act
from transfusion_tf.analysis import figures
from transfusion_tf.analysis import measures as measures_lib
from transfusion_tf.analysis import output as output_lib
from transfusion_tf.analysis import pairs as pairs_lib
from transfusion_tf.analysis import runs as runs_lib

MODE = "compare"
_TABLE_KEYS = ("model", "run_a", "run_b", "group", "top_two", "null_mean", "above_chance")


def compare_runs(
    *,
    workdirs: Sequence[str],
    output_dir: str,
    dataset_dir: str | None = None,
    weights: str = "final",
    measures: Sequence[str] = pairs_lib.DEFAULT_ACTIVATION_MEASURES,
    options: measures_lib.MeasureOptions = measures_lib.MeasureOptions(),
    spec: act.ActivationSpec = act.ActivationSpec(),
    units: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Per-unit similarity of every pair of runs and the paper's Fig. 2 statistic.

    For each pair (same architecture) and unit, the measures of the two runs' unit outputs on
    the same images, each with its permutation null; `top_two` is their mean over the last two
    units before the head (with the null of that mean), and `groups` summarises it (mean, std
    over pairs, and the mean of the pairs' null means) by pair kind and by init names.
    Writes compare.json, compare.csv, compare_units*.png (null as a band), compare_fig2.png,
    TensorBoard.
    """
    measures = measures_lib.check_measure_names(measures, streaming=True)
    workdirs = runs_lib.check_workdirs(workdirs, minimum=2, mode=MODE)
    labels = runs_lib.labels(workdirs)
    runs = [act.load_run(w, which=weights) for w in workdirs]
    pair_records, rows = [], []
    for group in runs_lib.group_by_arch([r.config for r in runs]):
        pairs = list(itertools.combinations(group, 2))
        if not pairs:
            logging.warning(
                "%s has no other run of its architecture to compare", workdirs[group[0]]
            )
            continue
        unit_names, sims = pairs_lib.run_pairs(
            runs,
            pairs,
            dataset_dir=dataset_dir,
            spec=spec,
            units=units,
            measures=measures,
            options=options,
        )
        for i, j in pairs:
            record = _pair_record(
                runs,
                (i, j),
                workdirs=workdirs,
                labels=labels,
                sims=sims[(i, j)],
                unit_names=unit_names,
            )
            pair_records.append(_with_top_two(record, sims[(i, j)], measures))
            rows += _unit_rows(record, measures)
    if not pair_records:
        raise ValueError("compare: no two workdirs share an architecture, nothing to compare")
    low = pairs_lib.warn_low_ratio(
        [{"unit": u, **v} for r in pair_records for u, v in r["units"].items()], what=MODE
    )
    payload = {
        "mode": MODE,
        "weights": weights,
        "measures": measures,
        "primary_measure": measures[0],
        "options": dataclasses.asdict(options),
        "activations": dataclasses.asdict(spec),
        "above_chance_rule": pairs_lib.ABOVE_CHANCE_RULE,
        "low_datapoints_per_feature": low,
        "pairs": pair_records,
        "groups": _groups(pair_records, measures),
    }
    with output_lib.Output(output_dir, mode=MODE) as out:
        out.json("compare.json", payload)
        out.csv("compare.csv", rows)
        _write_figures(out, pair_records, primary=measures[0], weights=weights)
    return payload


def _pair_record(
    runs: Sequence[act.LoadedRun],
    pair: tuple[int, int],
    *,
    workdirs: Sequence[str],
    labels: Sequence[str],
    sims: Mapping[str, pairs_lib.UnitSimilarity],
    unit_names: Sequence[str],
) -> dict[str, Any]:
    """The JSON record of one pair of runs, without its top-two statistic."""
    i, j = pair
    init_a, init_b = runs[i].config.init.name, runs[j].config.init.name
    return {
        "run_a": labels[i],
        "run_b": labels[j],
        "workdir_a": workdirs[i],
        "workdir_b": workdirs[j],
        "model": runs[i].config.model.name,
        "init_a": init_a,
        "init_b": init_b,
        "kind": pairs_lib.pair_kind(init_a, init_b),
        "group": pairs_lib.pair_group(init_a, init_b),
        "units": {u: sims[u].record() for u in unit_names},
    }


def _with_top_two(
    record: dict[str, Any], sims: Mapping[str, pairs_lib.UnitSimilarity], measures: Sequence[str]
) -> dict[str, Any]:
    """Adds Fig. 2's statistic: the mean of the last two units before the head, with its null."""
    top = list(record["units"])[-2:]
    top_two = pairs_lib.averaged(sims, top, measures)
    record["top_units"] = top
    record["top_two"] = top_two["value"]
    record["top_two_null"] = top_two["null"]
    record["top_two_above_chance"] = top_two["above_chance"]
    return record


def _unit_rows(record: Mapping[str, Any], measures: Sequence[str]) -> list[dict[str, Any]]:
    """The CSV rows of one pair: one per unit."""
    return [
        {
            "model": record["model"],
            "run_a": record["run_a"],
            "run_b": record["run_b"],
            "kind": record["kind"],
            "group": record["group"],
            "unit": unit,
            **pairs_lib.csv_cells(values, measures),
        }
        for unit, values in record["units"].items()
    ]


def _group_stats(records: Sequence[Mapping[str, Any]], measure: str) -> dict[str, Any] | None:
    """Mean and std over pairs of the top-two value, the mean of their null means, and how many
    of the pairs stand above chance; None when no pair has a value."""
    members = [r for r in records if r["top_two"][measure] is not None]
    if not members:
        return None
    arr = np.asarray([r["top_two"][measure] for r in members], dtype=np.float64)
    nulls = [r["top_two_null"][measure]["mean"] for r in members]
    verdicts = [r["top_two_above_chance"][measure] for r in members]
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std()),
        "pairs": int(arr.size),
        "null_mean": pairs_lib.mean_or_none(nulls),
        "above_chance_pairs": sum(v is True for v in verdicts),
    }


def _groups(
    pair_records: Sequence[Mapping[str, Any]], measures: Sequence[str]
) -> dict[str, dict[str, dict]]:
    """Fig. 2's groups: {"by_kind": {kind: {measure: stats}}, "by_init": {group: ...}}."""
    groups: dict[str, dict[str, dict]] = {"by_kind": {}, "by_init": {}}
    for key, field in (("by_kind", "kind"), ("by_init", "group")):
        for name in sorted({r[field] for r in pair_records}):
            members = [r for r in pair_records if r[field] == name]
            groups[key][name] = {
                m: stats for m in measures if (stats := _group_stats(members, m)) is not None
            }
    return groups


def _write_figures(
    out: output_lib.Output,
    pair_records: Sequence[Mapping[str, Any]],
    *,
    primary: str,
    weights: str,
) -> None:
    """compare_units*.png, compare_fig2.png and the table of pairs (primary measure)."""
    pairs_lib.write_unit_curves(
        out,
        pair_records,
        stem="compare_units",
        label=lambda r: f"{r['run_a']} vs {r['run_b']} ({r['group']})",
        measure=primary,
        title=lambda model: f"{model}: {primary} between runs per unit ({weights} weights)",
    )
    fig2: dict[str, list[float]] = {}
    fig2_null: dict[str, list[float]] = {}
    for r in pair_records:
        if r["top_two"][primary] is not None:
            key = f"{r['model']}: {r['kind']}"
            fig2.setdefault(key, []).append(r["top_two"][primary])
            if r["top_two_null"][primary]["mean"] is not None:
                fig2_null.setdefault(key, []).append(r["top_two_null"][primary]["mean"])
    if fig2:
        out.figure(
            "compare_fig2.png",
            lambda path: figures.plot_pair_groups(
                fig2,
                path,
                title=f"{primary} of the top two units",
                null_levels={k: float(np.mean(v)) for k, v in fig2_null.items()},
            ),
        )
    table = [
        {
            **r,
            "top_two": r["top_two"][primary],
            "null_mean": r["top_two_null"][primary]["mean"],
            "above_chance": r["top_two_above_chance"][primary],
        }
        for r in pair_records
    ]
    out.table("pairs", table, _TABLE_KEYS)
