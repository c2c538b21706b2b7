"""The similarity of pairs of runs per unit, with its chance level (SPEC A4, A5).

Shared by the `compare` and `init_vs_final` modes: which measures they take by default, how a
pair is named by its inits (Fig. 2's grouping), one unit's values and null samples
(`UnitSimilarity`), the mean over units with the null of that mean (the top-two statistic of
Fig. 2), the CSV cells of a unit record and the curves and chance bands of the per-unit figures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

from transfusion_tf.analysis import activations as act
from transfusion_tf.analysis import figures
from transfusion_tf.analysis import measures as measures_lib
from transfusion_tf.analysis import null as null_lib
from transfusion_tf.analysis import output as output_lib
from transfusion_tf.analysis import runs as runs_lib

# The first is the primary measure of the figures and of Fig. 2's groups: PWCCA has the widest
# range above its chance level at both ResNet50 and CBR sizes (README, "Chance levels"), where
# linear CKA's chance level is 0.91 at ResNet50's block3/4 and mean CCA's range is a third.
DEFAULT_ACTIVATION_MEASURES = ("pwcca", "cca_mean", "svcca_mean", "cka_linear")
RANDOM_INIT = "random"
ABOVE_CHANCE_RULE = (
    f"value > null mean + {null_lib.ABOVE_CHANCE_SD:g} null sd; null: the same measure with one "
    "side's images deranged within each image batch, positions kept"
)


def pair_kind(init_a: str, init_b: str) -> str:
    """random_vs_random, random_vs_transfer or transfer_vs_transfer (Fig. 2's grouping)."""
    randoms = [init_a == RANDOM_INIT, init_b == RANDOM_INIT].count(True)
    return {2: "random_vs_random", 1: "random_vs_transfer", 0: "transfer_vs_transfer"}[randoms]


def pair_group(init_a: str, init_b: str) -> str:
    """The pair's init names, random first, e.g. random_vs_imagenet."""
    a, b = sorted([init_a, init_b], key=lambda n: (n != RANDOM_INIT, n))
    return f"{a}_vs_{b}"


def mean_or_none(values: Sequence[float | None]) -> float | None:
    """The mean of the values that are not None; None when there are none."""
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


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


def run_pairs(
    runs: Sequence[act.LoadedRun],
    pairs: Sequence[tuple[int, int]],
    *,
    dataset_dir: str | None,
    spec: act.ActivationSpec,
    units: Sequence[str] | None,
    measures: Sequence[str],
    options: measures_lib.MeasureOptions,
) -> tuple[list[str], dict[tuple[int, int], dict[str, UnitSimilarity]]]:
    """Similarity per unit of every pair of runs (all of one architecture) on shared images.

    Returns the unit names and, per pair (i, j) of indices into `runs`, unit -> similarity.
    """
    first = runs[pairs[0][0]]
    unit_names = runs_lib.unit_names(first, units)
    stats = act.pairwise_unit_similarity(
        runs,
        pairs,
        images=runs_lib.images(runs_lib.dataset_dir(dataset_dir, first), first, spec),
        unit_names=unit_names,
        spec=spec,
        measures=measures,
        options=options,
    )
    return unit_names, {
        p: _similarities(stats[p], unit_names, measures=measures, options=options) for p in pairs
    }


def averaged(
    sims: Mapping[str, UnitSimilarity], units: Sequence[str], measures: Sequence[str]
) -> dict[str, Any]:
    """The mean over `units` of each measure, with the null of that mean (per permutation).

    Returns {"value": {m: v}, "null": {m: summary}, "above_chance": {m: bool | None}}.
    """
    value, null, verdict = {}, {}, {}
    for m in measures:
        value[m] = mean_or_none([sims[u].values[m] for u in units])
        columns = [sims[u].samples.get(m, []) for u in units]
        k = min(len(c) for c in columns) if columns else 0
        samples = [mean_or_none([c[i] for c in columns]) for i in range(k)]
        null[m] = null_lib.summarize(samples)
        verdict[m] = null_lib.above_chance(value[m], null[m])
    return {"value": value, "null": null, "above_chance": verdict}


def warn_low_ratio(records: Sequence[Mapping[str, Any]], *, what: str) -> list[str]:
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


def csv_cells(record: Mapping[str, Any], measures: Sequence[str]) -> dict[str, Any]:
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


def curves_and_bands(
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


def write_unit_curves(
    out: output_lib.Output,
    records: Sequence[Mapping[str, Any]],
    *,
    stem: str,
    label: Callable[[Mapping[str, Any]], str],
    measure: str,
    title: Callable[[str], str],
) -> list[str]:
    """Per model, the per-unit curves of `records` with their null bands: `<stem>*.png`.

    Every record holds "model" and "units": unit -> unit record (`UnitSimilarity.record`);
    `label(record)` names its curve and `title(model)` titles a model's figure.
    """

    def plot(model: str, members: Sequence[Mapping[str, Any]], path: str) -> str:
        unit_names = list(members[0]["units"])
        curves, bands = curves_and_bands(
            {label(r): r["units"] for r in members}, unit_names, measure
        )
        return figures.plot_unit_curves(
            unit_names,
            curves,
            path,
            title=title(model),
            ylabel=measure,
            null_bands=bands,
        )

    return out.figures_per_model(records, stem=stem, plot=plot)
