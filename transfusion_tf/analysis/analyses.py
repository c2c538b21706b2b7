"""The representational analyses of the paper's Section 4 over workdirs (SPEC A4).

Library entry points, one per `transfusion-analyze` mode; each writes `<mode>.json`,
`<mode>.csv`, PNG figures and TensorBoard summaries (`<output_dir>/tensorboard`) and returns the
JSON payload as a dict:
- `compare_runs`: per-unit similarity between every pair of runs, and Fig. 2's statistic (the
  similarity of the top two units before the head, averaged) grouped by the pair's inits
  (random_vs_random, random_vs_transfer, transfer_vs_transfer; and by init names).
- `init_vs_final`: per-unit similarity of each run's init and final weights (Fig. 3); with
  several runs of one architecture also, for every pair of runs, their similarity at init vs
  after training per unit (Fig. 4 scatter).
- `filter_grids`: conv1 filters at init and final (Fig. 5) and how much each filter moved.
- `weight_change`: per-layer (and per-unit) ||W_final - W_init|| / ||W_init||.
- `analyze_arrays`: every similarity measure of two `.npy` activation files.
Runs are grouped by architecture (model, image size, channels, widths); pairs are only formed
within a group, since units are compared by name.

Every similarity value comes with its chance level (SPEC A5, module `null`): per unit and pair,
`null` maps each measure to the {"mean", "sd", "permutations"} of the same measure with y's
images shuffled, `above_chance` maps it to whether the value exceeds the null mean by more than
3 null sd, and `datapoints_per_feature` is n / (p + q) (warned about below 10). The top-two
statistic of Fig. 2 carries the null of the same average (per permutation, over the two units).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

from transfusion_tf import tiling
from transfusion_tf import workdir as workdir_lib
from transfusion_tf.analysis import activations as act
from transfusion_tf.analysis import cca as cca_lib
from transfusion_tf.analysis import figures
from transfusion_tf.analysis import measures as measures_lib
from transfusion_tf.analysis import null as null_lib
from transfusion_tf.analysis.common import SimilarityError, as_activation_pair

MODES = ("compare", "init_vs_final", "filters", "weight_change", "arrays")
# The first is the primary measure of the figures and of Fig. 2's groups: PWCCA has the widest
# range above its chance level at both ResNet50 and CBR sizes (README, "Chance levels"), where
# linear CKA's chance level is 0.91 at ResNet50's block3/4 and mean CCA's range is a third.
DEFAULT_ACTIVATION_MEASURES = ("pwcca", "cca_mean", "svcca_mean", "cka_linear")
RANDOM_INIT = "random"
ABOVE_CHANCE_RULE = (
    f"value > null mean + {null_lib.ABOVE_CHANCE_SD:g} null sd; null: the same measure with one "
    "side's images deranged within each image batch, positions kept"
)


# ---------------------------------------------------------------------------- output helpers


def _write_json(path: str, payload: Mapping[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.write("\n")


def _write_csv(path: str, rows: Sequence[Mapping[str, Any]]) -> None:
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in fields})


class _Summaries:
    """TensorBoard writer of one analysis under `<output_dir>/tensorboard`."""

    def __init__(self, output_dir: str) -> None:
        self._writer = tf.summary.create_file_writer(os.path.join(output_dir, "tensorboard"))

    def scalars(self, tag: str, values: Sequence[float | None]) -> None:
        """A curve over steps 0..len-1 (units or layers in order); None values are skipped."""
        with self._writer.as_default():
            for step, value in enumerate(values):
                if value is not None:
                    tf.summary.scalar(tag, float(value), step=step)

    def text(self, tag: str, text: str) -> None:
        with self._writer.as_default():
            tf.summary.text(tag, text, step=0)

    def image(self, tag: str, image: np.ndarray) -> None:
        with self._writer.as_default():
            tf.summary.image(tag, np.asarray(image, np.float32), step=0)

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()


def _labels(workdirs: Sequence[str]) -> list[str]:
    """Short unique names of workdirs: the basename, or more of the path where those clash."""
    parts = [os.path.normpath(os.path.abspath(w)).split(os.sep) for w in workdirs]
    depth = 1
    while True:
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels) or depth >= max(len(p) for p in parts):
            return labels
        depth += 1


def _markdown_table(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- runs and pairs


def _arch_key(cfg) -> tuple:
    m = cfg.model
    return (m.name, m.image_size, m.channels, tuple(m.widths or ()), m.width_multiplier)


def _group_by_arch(configs: Sequence[Any]) -> list[list[int]]:
    groups: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(configs):
        groups.setdefault(_arch_key(cfg), []).append(i)
    return list(groups.values())


def pair_kind(init_a: str, init_b: str) -> str:
    """random_vs_random, random_vs_transfer or transfer_vs_transfer (Fig. 2's grouping)."""
    randoms = [init_a == RANDOM_INIT, init_b == RANDOM_INIT].count(True)
    return {2: "random_vs_random", 1: "random_vs_transfer", 0: "transfer_vs_transfer"}[randoms]


def pair_group(init_a: str, init_b: str) -> str:
    """The pair's init names, random first, e.g. random_vs_imagenet."""
    a, b = sorted([init_a, init_b], key=lambda n: (n != RANDOM_INIT, n))
    return f"{a}_vs_{b}"


def _check_workdirs(workdirs: Sequence[str], *, minimum: int, mode: str) -> list[str]:
    workdirs = list(workdirs)
    if len(workdirs) < minimum:
        raise ValueError(f"{mode} needs at least {minimum} workdir(s), got {len(workdirs)}")
    for w in workdirs:
        workdir_lib.read_config(w)  # a clear error for a non-workdir before any model is built
    return workdirs


def _dataset_dir(dataset_dir: str | None, run: act.LoadedRun) -> str:
    path = dataset_dir or run.config.data.dataset_dir
    if not path:
        raise ValueError(
            f"no dataset: {run.workdir}/config.json names none; pass dataset_dir (--dataset_dir)"
        )
    if not os.path.isdir(path):
        raise FileNotFoundError(f"dataset directory {path} not found")
    return path


def _images(dataset_dir: str, run: act.LoadedRun, spec: act.ActivationSpec):
    from transfusion_tf.models import registry as model_registry

    return act.dataset_images(
        dataset_dir=dataset_dir,
        spec=spec,
        image_size=run.config.model.image_size,
        channels=run.config.model.channels,
        preprocess_mode=model_registry.default_preprocess_mode(run.config.model.name),
    )


def _unit_names(run: act.LoadedRun, units: Sequence[str] | None) -> list[str]:
    names = [u.name for u in run.units]
    if not units:
        return names
    unknown = [u for u in units if u not in names]
    if unknown:
        raise ValueError(
            f"unknown units {unknown} for model {run.config.model.name}; it has {', '.join(names)}"
        )
    return [n for n in names if n in units]


@dataclasses.dataclass
class UnitSimilarity:
    """The measures of one unit of one pair, with the null samples behind their chance level.

    values: measure -> value (None if undefined); samples: measure -> K null values;
    datapoints n, features (p, q).
    """

    values: dict[str, float | None]
    samples: dict[str, list[float | None]]
    datapoints: int
    features: tuple[int, int]

    def record(self) -> dict[str, Any]:
        """The JSON form: every value, datapoints, features, ratio, null and above_chance."""
        null = {m: null_lib.summarize(v) for m, v in self.samples.items()}
        return {
            **self.values,
            "datapoints": self.datapoints,
            "features": list(self.features),
            "datapoints_per_feature": null_lib.datapoints_per_feature(
                self.datapoints, *self.features
            ),
            "null": null,
            "above_chance": {m: null_lib.above_chance(self.values[m], null[m]) for m in null},
        }


def _similarities(
    accumulators: Mapping[str, Any],
    unit_names: Sequence[str],
    *,
    measures: Sequence[str],
    options: measures_lib.MeasureOptions,
) -> dict[str, UnitSimilarity]:
    out = {}
    for unit in unit_names:
        stats = accumulators[unit]
        values = measures_lib.measures_from_statistics(
            stats.covariance(), stats.accumulators, names=measures, options=options
        )
        null_values = [
            measures_lib.measures_from_statistics(cov, accs, names=measures, options=options)
            for cov, accs in stats.null_statistics()
        ]
        out[unit] = UnitSimilarity(
            values=values,
            samples={m: [v[m] for v in null_values] for m in measures} if null_values else {},
            datapoints=stats.n,
            features=(stats.x_features, stats.y_features),
        )
    return out


def _warn_low_ratio(records: Sequence[Mapping[str, Any]], *, what: str) -> list[str]:
    """Logs one warning listing the units with few datapoints per feature; returns them."""
    low = sorted(
        {
            f"{r['unit']} ({r['datapoints_per_feature']:.1f})"
            for r in records
            if r["datapoints_per_feature"] < null_lib.LOW_DATAPOINTS_PER_FEATURE
        }
    )
    if low:
        logging.warning(
            "%s: fewer than %g datapoints per feature for %s; chance similarity is high there, "
            "read the values against their null (more images or positions lower it)",
            what,
            null_lib.LOW_DATAPOINTS_PER_FEATURE,
            ", ".join(low),
        )
    return low


def _csv_cells(record: Mapping[str, Any], measures: Sequence[str]) -> dict[str, Any]:
    """A unit record flattened for CSV: value, null mean / sd, above_chance per measure."""
    cells: dict[str, Any] = {}
    for m in measures:
        null = record["null"].get(m, {})
        cells[m] = record.get(m)
        cells[f"{m}_null_mean"] = null.get("mean")
        cells[f"{m}_null_sd"] = null.get("sd")
        cells[f"{m}_above_chance"] = record["above_chance"].get(m)
    permutations = [n.get("permutations", 0) for n in record["null"].values()]
    cells["null_permutations"] = max(permutations) if permutations else 0
    cells["datapoints"] = record["datapoints"]
    cells["x_features"], cells["y_features"] = record["features"]
    cells["datapoints_per_feature"] = record["datapoints_per_feature"]
    return cells


def _averaged(
    sims: Mapping[str, UnitSimilarity], units: Sequence[str], measures: Sequence[str]
) -> dict[str, Any]:
    """The mean over `units` of each measure, with the null of that mean (per permutation).

    Returns {"value": {m: v}, "null": {m: summary}, "above_chance": {m: bool | None}}.
    """
    value, null, verdict = {}, {}, {}
    for m in measures:
        value[m] = _mean_or_none([sims[u].values[m] for u in units])
        columns = [sims[u].samples.get(m, []) for u in units]
        k = min(len(c) for c in columns) if columns else 0
        samples = [_mean_or_none([c[i] for c in columns]) for i in range(k)]
        null[m] = null_lib.summarize(samples)
        verdict[m] = null_lib.above_chance(value[m], null[m])
    return {"value": value, "null": null, "above_chance": verdict}


def _run_pairs(
    runs: Sequence[act.LoadedRun],
    pairs: Sequence[tuple[int, int]],
    *,
    dataset_dir: str | None,
    spec: act.ActivationSpec,
    units: Sequence[str] | None,
    measures: Sequence[str],
    options: measures_lib.MeasureOptions,
) -> tuple[list[str], dict[tuple[int, int], dict[str, UnitSimilarity]]]:
    """Similarity per unit of every pair of runs (all of one architecture) on shared images."""
    first = runs[pairs[0][0]]
    unit_names = _unit_names(first, units)
    stats = act.pairwise_unit_similarity(
        runs,
        pairs,
        images=_images(_dataset_dir(dataset_dir, first), first, spec),
        unit_names=unit_names,
        spec=spec,
        measures=measures,
        options=options,
    )
    return unit_names, {
        p: _similarities(stats[p], unit_names, measures=measures, options=options) for p in pairs
    }


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


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
        "null_mean": _mean_or_none(nulls),
        "above_chance_pairs": sum(v is True for v in verdicts),
    }


# ---------------------------------------------------------------------------- compare (Fig. 2)


def compare_runs(
    *,
    workdirs: Sequence[str],
    output_dir: str,
    dataset_dir: str | None = None,
    weights: str = "final",
    measures: Sequence[str] = DEFAULT_ACTIVATION_MEASURES,
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
    workdirs = _check_workdirs(workdirs, minimum=2, mode="compare")
    labels = _labels(workdirs)
    runs = [act.load_run(w, which=weights) for w in workdirs]
    primary = measures[0]
    pair_records, rows = [], []
    for group in _group_by_arch([r.config for r in runs]):
        pairs = list(itertools.combinations(group, 2))
        if not pairs:
            logging.warning(
                "%s has no other run of its architecture to compare", workdirs[group[0]]
            )
            continue
        unit_names, sims = _run_pairs(
            runs,
            pairs,
            dataset_dir=dataset_dir,
            spec=spec,
            units=units,
            measures=measures,
            options=options,
        )
        top = unit_names[-2:]
        for i, j in pairs:
            init_a, init_b = runs[i].config.init.name, runs[j].config.init.name
            unit_records = {u: sims[(i, j)][u].record() for u in unit_names}
            top_two = _averaged(sims[(i, j)], top, measures)
            record = {
                "run_a": labels[i],
                "run_b": labels[j],
                "workdir_a": workdirs[i],
                "workdir_b": workdirs[j],
                "model": runs[i].config.model.name,
                "init_a": init_a,
                "init_b": init_b,
                "kind": pair_kind(init_a, init_b),
                "group": pair_group(init_a, init_b),
                "units": unit_records,
                "top_units": top,
                "top_two": top_two["value"],
                "top_two_null": top_two["null"],
                "top_two_above_chance": top_two["above_chance"],
            }
            pair_records.append(record)
            for unit in unit_names:
                rows.append(
                    {
                        "model": record["model"],
                        "run_a": labels[i],
                        "run_b": labels[j],
                        "kind": record["kind"],
                        "group": record["group"],
                        "unit": unit,
                        **_csv_cells(unit_records[unit], measures),
                    }
                )
    if not pair_records:
        raise ValueError("compare: no two workdirs share an architecture, nothing to compare")
    low = _warn_low_ratio(
        [{"unit": u, **v} for r in pair_records for u, v in r["units"].items()], what="compare"
    )

    groups: dict[str, dict[str, dict]] = {"by_kind": {}, "by_init": {}}
    for key, field in (("by_kind", "kind"), ("by_init", "group")):
        for name in sorted({r[field] for r in pair_records}):
            members = [r for r in pair_records if r[field] == name]
            groups[key][name] = {
                m: stats for m in measures if (stats := _group_stats(members, m)) is not None
            }
    payload = {
        "mode": "compare",
        "weights": weights,
        "measures": measures,
        "primary_measure": primary,
        "options": dataclasses.asdict(options),
        "activations": dataclasses.asdict(spec),
        "above_chance_rule": ABOVE_CHANCE_RULE,
        "low_datapoints_per_feature": low,
        "pairs": pair_records,
        "groups": groups,
    }
    os.makedirs(output_dir, exist_ok=True)
    _write_json(os.path.join(output_dir, "compare.json"), payload)
    _write_csv(os.path.join(output_dir, "compare.csv"), rows)

    summaries = _Summaries(output_dir)
    by_model: dict[str, list[dict]] = {}
    for r in pair_records:
        by_model.setdefault(r["model"], []).append(r)
    for model, records in by_model.items():
        unit_names = list(records[0]["units"])
        curves, bands = _curves_and_bands(
            {f"{r['run_a']} vs {r['run_b']} ({r['group']})": r["units"] for r in records},
            unit_names,
            primary,
        )
        suffix = "" if len(by_model) == 1 else f"_{model}"
        figures.plot_unit_curves(
            unit_names,
            curves,
            os.path.join(output_dir, f"compare_units{suffix}.png"),
            title=f"{model}: {primary} between runs per unit ({weights} weights)",
            ylabel=primary,
            null_bands=bands,
        )
        for label, values in curves.items():
            summaries.scalars(f"compare/{primary}/{label}", values)
    fig2: dict[str, list[float]] = {}
    fig2_null: dict[str, list[float]] = {}
    for r in pair_records:
        if r["top_two"][primary] is not None:
            key = f"{r['model']}: {r['kind']}"
            fig2.setdefault(key, []).append(r["top_two"][primary])
            if r["top_two_null"][primary]["mean"] is not None:
                fig2_null.setdefault(key, []).append(r["top_two_null"][primary]["mean"])
    if fig2:
        figures.plot_pair_groups(
            fig2,
            os.path.join(output_dir, "compare_fig2.png"),
            title=f"{primary} of the top two units",
            null_levels={k: float(np.mean(v)) for k, v in fig2_null.items()},
        )
    summaries.text(
        "compare/pairs",
        _markdown_table(
            [
                {
                    **r,
                    "top_two": r["top_two"][primary],
                    "null_mean": r["top_two_null"][primary]["mean"],
                    "above_chance": r["top_two_above_chance"][primary],
                }
                for r in pair_records
            ],
            ["model", "run_a", "run_b", "group", "top_two", "null_mean", "above_chance"],
        ),
    )
    summaries.close()
    return payload


def _curves_and_bands(
    unit_records: Mapping[str, Mapping[str, Mapping[str, Any]]],
    unit_names: Sequence[str],
    measure: str,
) -> tuple[dict[str, list[float | None]], dict[str, list[tuple[float, float] | None]]]:
    """Per labelled record set: the measure over units, and its null band (mean -/+ 3 sd)."""
    curves, bands = {}, {}
    for label, records in unit_records.items():
        curves[label] = [records[u][measure] for u in unit_names]
        band = []
        for u in unit_names:
            null = records[u]["null"].get(measure) or {}
            if null.get("mean") is None:
                band.append(None)
            else:
                half = null_lib.ABOVE_CHANCE_SD * null["sd"]
                band.append((null["mean"] - half, null["mean"] + half))
        bands[label] = band
    return curves, bands


# ---------------------------------------------------------------------- init vs final (Fig. 3/4)


def init_vs_final(
    *,
    workdirs: Sequence[str],
    output_dir: str,
    dataset_dir: str | None = None,
    measures: Sequence[str] = DEFAULT_ACTIVATION_MEASURES,
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
    workdirs = _check_workdirs(workdirs, minimum=1, mode="init_vs_final")
    labels = _labels(workdirs)
    primary = measures[0]
    runs: list[act.LoadedRun] = []
    for w in workdirs:  # runs[2k] = run k at init, runs[2k + 1] = run k final
        runs.extend([act.load_run(w, which="init"), act.load_run(w, which="final")])
    per_run, scatter, rows = [], [], []
    for group in _group_by_arch([runs[2 * k].config for k in range(len(workdirs))]):
        self_pairs = [(2 * k, 2 * k + 1) for k in group]
        cross = list(itertools.combinations(group, 2))
        cross_pairs = [(2 * a, 2 * b) for a, b in cross] + [
            (2 * a + 1, 2 * b + 1) for a, b in cross
        ]
        unit_names, sims = _run_pairs(
            runs,
            self_pairs + cross_pairs,
            dataset_dir=dataset_dir,
            spec=spec,
            units=units,
            measures=measures,
            options=options,
        )
        records = {p: {u: sims[p][u].record() for u in unit_names} for p in sims}
        for k in group:
            record = {
                "run": labels[k],
                "workdir": workdirs[k],
                "model": runs[2 * k].config.model.name,
                "init": runs[2 * k].config.init.name,
                "units": records[(2 * k, 2 * k + 1)],
            }
            per_run.append(record)
            for unit in unit_names:
                rows.append(
                    {
                        "comparison": "init_vs_final",
                        "model": record["model"],
                        "run_a": labels[k],
                        "run_b": labels[k],
                        "unit": unit,
                        **_csv_cells(record["units"][unit], measures),
                    }
                )
        for a, b in cross:
            init_a, init_b = runs[2 * a].config.init.name, runs[2 * b].config.init.name
            at_init, at_final = records[(2 * a, 2 * b)], records[(2 * a + 1, 2 * b + 1)]
            for unit in unit_names:
                scatter.append(
                    {
                        "model": runs[2 * a].config.model.name,
                        "run_a": labels[a],
                        "run_b": labels[b],
                        "kind": pair_kind(init_a, init_b),
                        "group": pair_group(init_a, init_b),
                        "unit": unit,
                        "init": {m: at_init[unit][m] for m in measures},
                        "final": {m: at_final[unit][m] for m in measures},
                        "init_null": at_init[unit]["null"],
                        "final_null": at_final[unit]["null"],
                        "init_above_chance": at_init[unit]["above_chance"],
                        "final_above_chance": at_final[unit]["above_chance"],
                    }
                )
                for stage, values in (("init", at_init), ("final", at_final)):
                    rows.append(
                        {
                            "comparison": f"pair_at_{stage}",
                            "model": runs[2 * a].config.model.name,
                            "run_a": labels[a],
                            "run_b": labels[b],
                            "unit": unit,
                            **_csv_cells(values[unit], measures),
                        }
                    )
    low = _warn_low_ratio(
        [{"unit": u, **v} for r in per_run for u, v in r["units"].items()], what="init_vs_final"
    )
    payload = {
        "mode": "init_vs_final",
        "measures": measures,
        "primary_measure": primary,
        "options": dataclasses.asdict(options),
        "activations": dataclasses.asdict(spec),
        "above_chance_rule": ABOVE_CHANCE_RULE,
        "low_datapoints_per_feature": low,
        "runs": per_run,
        "pairs": scatter,
        "init_final_correlation": init_final_correlations(scatter, measure=primary),
    }
    os.makedirs(output_dir, exist_ok=True)
    _write_json(os.path.join(output_dir, "init_vs_final.json"), payload)
    _write_csv(os.path.join(output_dir, "init_vs_final.csv"), rows)

    summaries = _Summaries(output_dir)
    by_model: dict[str, list[dict]] = {}
    for r in per_run:
        by_model.setdefault(r["model"], []).append(r)
    for model, model_runs in by_model.items():
        unit_names = list(model_runs[0]["units"])
        curves, bands = _curves_and_bands(
            {f"{r['run']} ({r['init']})": r["units"] for r in model_runs}, unit_names, primary
        )
        suffix = "" if len(by_model) == 1 else f"_{model}"
        figures.plot_unit_curves(
            unit_names,
            curves,
            os.path.join(output_dir, f"init_vs_final_units{suffix}.png"),
            title=f"{model}: {primary} of each unit at init vs after training",
            ylabel=primary,
            null_bands=bands,
        )
        for label, values in curves.items():
            summaries.scalars(f"init_vs_final/{primary}/{label}", values)
    if scatter:
        groups: dict[str, list[tuple[float, float]]] = {}
        for p in scatter:
            if p["init"][primary] is not None and p["final"][primary] is not None:
                key = f"{p['model']}: {p['kind']}"
                groups.setdefault(key, []).append((p["init"][primary], p["final"][primary]))
        levels = [
            _mean_or_none([p[f"{stage}_null"][primary]["mean"] for p in scatter])
            for stage in ("init", "final")
        ]
        figures.plot_init_final_scatter(
            groups,
            os.path.join(output_dir, "init_vs_final_scatter.png"),
            title=f"{primary} of run pairs, per unit",
            null_levels=(levels[0], levels[1]),
        )
    summaries.close()
    return payload


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


# ---------------------------------------------------------------------------- weights


def _init_and_final_weights(workdir: str):
    """(config, units, layer variables) with init and final numpy values of every variable.

    Returns cfg, units, and a list of (layer name, variable path, trainable, init, final).
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


def _relative(diff_sq: float, init_sq: float) -> float | None:
    return float(np.sqrt(diff_sq / init_sq)) if init_sq > 0 else None


def weight_change(*, workdirs: Sequence[str], output_dir: str) -> dict[str, Any]:
    """Relative weight change ||W_final - W_init|| / ||W_init|| per variable, layer and unit.

    Layers and units pool their trainable variables (kernel, bias, BN gamma/beta); a tensor
    that is all zeros at init has an undefined (None) relative change, its absolute change is
    kept. Writes weight_change.json/.csv, weight_change*.png, TensorBoard.
    """
    workdirs = _check_workdirs(workdirs, minimum=1, mode="weight_change")
    labels = _labels(workdirs)
    runs, rows = [], []
    for label, workdir in zip(labels, workdirs, strict=True):
        cfg, units, variables = _init_and_final_weights(workdir)
        unit_of = {layer: u.name for u in units for layer in u.layers}
        layers: dict[str, list[float]] = {}
        unit_sums: dict[str, list[float]] = {}
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
                    "relative_change": _relative(diff_sq, init_sq),
                }
            )
            if trainable:
                for table, key in ((layers, layer), (unit_sums, unit)):
                    sums = table.setdefault(key, [0.0, 0.0])
                    sums[0] += diff_sq
                    sums[1] += init_sq
        runs.append(
            {
                "run": label,
                "workdir": workdir,
                "model": cfg.model.name,
                "init": cfg.init.name,
                "layers": [
                    {"layer": k, "unit": unit_of.get(k, "head"), "relative_change": _relative(*v)}
                    for k, v in layers.items()
                ],
                "units": {k: _relative(*v) for k, v in unit_sums.items()},
            }
        )
    payload = {"mode": "weight_change", "runs": runs}
    os.makedirs(output_dir, exist_ok=True)
    _write_json(os.path.join(output_dir, "weight_change.json"), payload)
    _write_csv(os.path.join(output_dir, "weight_change.csv"), rows)

    summaries = _Summaries(output_dir)
    by_model: dict[str, list[dict]] = {}
    for r in runs:
        by_model.setdefault(r["model"], []).append(r)
    for model, records in by_model.items():
        layer_names = [entry["layer"] for entry in records[0]["layers"]]
        curves = {
            f"{r['run']} ({r['init']})": [
                np.nan if e["relative_change"] is None else e["relative_change"]
                for e in r["layers"]
            ]
            for r in records
        }
        suffix = "" if len(by_model) == 1 else f"_{model}"
        figures.plot_weight_change(
            curves,
            layer_names,
            os.path.join(output_dir, f"weight_change{suffix}.png"),
            title=f"{model}: relative weight change per layer",
        )
    for r in runs:
        summaries.scalars(
            f"weight_change/layers/{r['run']}", [e["relative_change"] for e in r["layers"]]
        )
        summaries.scalars(f"weight_change/units/{r['run']}", list(r["units"].values()))
    summaries.close()
    return payload


def filter_grids(
    *, workdirs: Sequence[str], output_dir: str, max_filters: int = 64
) -> dict[str, Any]:
    """conv1 filters of each run at init and final (Fig. 5) and how much each filter moved.

    Writes filters.json, filters.csv (one row per filter: relative change, cosine similarity of
    init and final), filters_<run>.png, TensorBoard images `filters/<run>/{init,final}`.
    """

    workdirs = _check_workdirs(workdirs, minimum=1, mode="filters")
    labels = _labels(workdirs)
    records, rows = [], []
    os.makedirs(output_dir, exist_ok=True)
    summaries = _Summaries(output_dir)
    for label, workdir in zip(labels, workdirs, strict=True):
        cfg, units, variables = _init_and_final_weights(workdir)
        conv1 = set(units[0].layers)
        found = [
            (layer, path, w0, w1)
            for layer, path, _, w0, w1 in variables
            if layer in conv1 and w0.ndim == 4 and path.endswith("kernel")
        ]
        if not found:
            raise ValueError(f"{workdir}: unit {units[0].name!r} has no 4-D conv kernel")
        layer, path, w0, w1 = found[0]
        flat0 = w0.reshape(-1, w0.shape[-1])
        flat1 = w1.reshape(-1, w1.shape[-1])
        norms0 = np.linalg.norm(flat0, axis=0)
        norms1 = np.linalg.norm(flat1, axis=0)
        change = np.linalg.norm(flat1 - flat0, axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(norms0 > 0, change / norms0, np.nan)
            cos = np.where(
                norms0 * norms1 > 0, np.sum(flat0 * flat1, 0) / (norms0 * norms1), np.nan
            )
        for i in range(w0.shape[-1]):
            rows.append(
                {
                    "run": label,
                    "filter": i,
                    "norm_init": float(norms0[i]),
                    "norm_final": float(norms1[i]),
                    "relative_change": None if np.isnan(rel[i]) else float(rel[i]),
                    "cosine_init_final": None if np.isnan(cos[i]) else float(cos[i]),
                }
            )
        png = figures.plot_filter_grids(
            {"init": w0, "final": w1},
            os.path.join(output_dir, f"filters_{label.replace('/', '_')}.png"),
            title=f"{label}: {cfg.model.name} {layer} ({cfg.init.name} init)",
            max_filters=max_filters,
        )
        for which, kernel in (("init", w0), ("final", w1)):
            summaries.image(
                f"filters/{label}/{which}",
                tiling.filter_grid(kernel, max_filters=max_filters),
            )
        records.append(
            {
                "run": label,
                "workdir": workdir,
                "model": cfg.model.name,
                "init": cfg.init.name,
                "layer": layer,
                "variable": path,
                "shape": list(w0.shape),
                "relative_change": _relative(float(np.sum((w1 - w0) ** 2)), float(np.sum(w0**2))),
                "mean_filter_cosine": _mean_or_none([c for c in cos if not np.isnan(c)]),
                "figure": os.path.basename(png),
            }
        )
    summaries.close()
    payload = {"mode": "filters", "runs": records}
    _write_json(os.path.join(output_dir, "filters.json"), payload)
    _write_csv(os.path.join(output_dir, "filters.csv"), rows)
    return payload


# ---------------------------------------------------------------------------- arrays


def load_activations(path: str) -> np.ndarray:
    """A [examples, features] activation matrix from a `.npy` file (no pickle).

    Raises FileNotFoundError or ValueError naming the file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"activation file {path} not found")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: not a readable .npy array ({err})") from err
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path}: expected one array (.npy), got {type(array).__name__}")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{path}: expected a numeric array, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(
            f"{path}: activations must be 2-D [examples, features], got shape {array.shape}; "
            "flatten or pool conv maps first"
        )
    return array


def analyze_arrays(
    *,
    a_path: str,
    b_path: str,
    output_dir: str,
    measures: Sequence[str] | None = None,
    options: measures_lib.MeasureOptions = measures_lib.MeasureOptions(),
    max_gram_examples: int = 5000,
    seed: int = 0,
    null_permutations: int = null_lib.DEFAULT_PERMUTATIONS,
    rows_per_image: int = 1,
) -> dict[str, Any]:
    """Every similarity measure (or the named ones) of two `.npy` activation files, vs chance.

    RBF CKA builds n x n Gram matrices, so with more than `max_gram_examples` rows it uses a
    seeded subsample of that many (reported as "gram_examples"). A measure undefined on
    these inputs is null with its reason under "undefined". `null` (measure -> mean, sd,
    permutations) is the same measure over `null_permutations` derangements of b's rows, taken
    in blocks of `rows_per_image` consecutive rows (the positions of one image, for conv maps
    flattened image-major); `above_chance` (measure -> bool) applies the 3-sd rule.
    Writes similarity.json, similarity.csv, similarity.png and TensorBoard scalars
    `similarity/<measure>`.
    """
    names = measures_lib.check_measure_names(measures or measures_lib.MEASURES.names())
    if null_permutations < 0 or null_permutations == 1:
        raise ValueError(
            f"null_permutations={null_permutations} must be 0 (no chance level) or >= 2"
        )
    a, b = load_activations(a_path), load_activations(b_path)
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{a_path} has {a.shape[0]} examples but {b_path} has {b.shape[0]}: rows must be "
            "the same examples in the same order"
        )
    try:
        x, y = as_activation_pair(a, b)
    except SimilarityError as err:
        raise ValueError(f"{a_path} (x) and {b_path} (y): {err}") from err
    if rows_per_image < 1 or x.shape[0] % rows_per_image:
        raise ValueError(
            f"rows_per_image={rows_per_image}: the {x.shape[0]} rows of {a_path} are not a whole "
            "number of images of that many rows"
        )
    if null_permutations and x.shape[0] // rows_per_image < 2:
        raise ValueError(
            f"{a_path}: a permutation null needs at least 2 images of {rows_per_image} rows"
        )
    subsample = None
    if x.shape[0] > max_gram_examples:
        subsample = np.sort(
            np.random.default_rng(seed).choice(x.shape[0], max_gram_examples, replace=False)
        )
    values: dict[str, float | None] = {}
    undefined: dict[str, str] = {}
    cov = cca_lib.joint_covariance(x, y)
    for name in names:
        measure = measures_lib.MEASURES.get(name)
        try:
            if measure.from_covariance is not None:
                values[name] = float(measure.from_covariance(cov, options))
            elif subsample is not None and name.startswith("cka_rbf"):
                values[name] = float(measure.compute(x[subsample], y[subsample], options))
            else:
                values[name] = float(measure.compute(x, y, options))
        except SimilarityError as err:
            values[name], undefined[name] = None, str(err)
    samples = null_lib.array_null_samples(
        x,
        y,
        names=[n for n in names if values[n] is not None],
        options=options,
        permutations=null_permutations,
        rows_per_group=rows_per_image,
        seed=seed,
        gram_rows=subsample,
    )
    null = {n: null_lib.summarize(samples.get(n, [])) for n in names}
    verdict = {n: null_lib.above_chance(values[n], null[n]) for n in names}
    ratio = null_lib.datapoints_per_feature(x.shape[0], x.shape[1], y.shape[1])
    if ratio < null_lib.LOW_DATAPOINTS_PER_FEATURE:
        logging.warning(
            "%s vs %s: %d datapoints for %d + %d features (%.1f per feature); chance similarity "
            "is high, read each value against its null",
            a_path,
            b_path,
            x.shape[0],
            x.shape[1],
            y.shape[1],
            ratio,
        )
    details: dict[str, Any] = {}
    try:
        full = cca_lib.cca_from_covariance(cov, rtol=options.rtol)
        reduced = cca_lib.cca_from_covariance(
            cov, x_dims=options.svcca_dims, y_dims=options.svcca_dims, rtol=options.rtol
        )
        details = {
            "cca_correlations": full.correlations.tolist(),
            "cca_dims": [full.x_dims, full.y_dims],
            "svcca_dims": [reduced.x_dims, reduced.y_dims],
        }
    except SimilarityError as err:
        undefined.setdefault("cca_mean", str(err))
    payload = {
        **values,
        "mode": "arrays",
        "a": a_path,
        "b": b_path,
        "examples": int(x.shape[0]),
        "a_features": int(x.shape[1]),
        "b_features": int(y.shape[1]),
        "datapoints_per_feature": ratio,
        "rows_per_image": rows_per_image,
        "options": dataclasses.asdict(options),
        "gram_examples": int(x.shape[0] if subsample is None else subsample.size),
        "null": null,
        "above_chance": verdict,
        "above_chance_rule": (
            f"value > null mean + {null_lib.ABOVE_CHANCE_SD:g} null sd; null: the same measure "
            "with b's images (blocks of rows_per_image rows) deranged"
        ),
        "undefined": undefined,
        **details,
    }
    os.makedirs(output_dir, exist_ok=True)
    _write_json(os.path.join(output_dir, "similarity.json"), payload)
    _write_csv(
        os.path.join(output_dir, "similarity.csv"),
        [
            {
                "measure": k,
                "value": v,
                "null_mean": null[k]["mean"],
                "null_sd": null[k]["sd"],
                "null_permutations": null[k]["permutations"],
                "above_chance": verdict[k],
            }
            for k, v in values.items()
        ],
    )
    figures.plot_measures(
        values,
        details.get("cca_correlations", []),
        os.path.join(output_dir, "similarity.png"),
        title=f"{os.path.basename(a_path)} vs {os.path.basename(b_path)}",
        null=null,
    )
    summaries = _Summaries(output_dir)
    for name, value in values.items():
        summaries.scalars(f"similarity/{name}", [value])
    summaries.close()
    return payload
