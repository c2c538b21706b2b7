"""Every init against a baseline init, paired by seed (SPEC X3): `comparisons.csv` rows,
the report's comparison table and the findings sentences built from it.

Within each (dataset, model), every init is compared with the baseline (`--baseline_init`,
default `random`) on these metrics, `other - baseline`, by `stats`:
  - `test_auc`: test mean AUC from `<workdir>/evaluation/evaluation_test.json` (written by
    `transfusion-evaluate --split=test` by default, and by the demo), when both have it;
  - `valid_auc`: the final validation mean AUC (`results.json` `final_auc_mean`);
  - `steps@<t>` per AUC threshold: the interpolated steps to the threshold, a run that never
    reached it counting as its train_steps (censored). Lower is faster;
  - `auc_curve_area`: the validation AUC averaged over training (threshold-free speed).
For the two AUCs the bootstrap also resamples the evaluation images when every run of the
comparison saved its per-example predictions (`valid_predictions.npz`, `predictions_test.npz`).

Pairing: runs of the same seed pair when every run has its partner or at least two seeds are
shared (then runs without a partner are left out, and the row says so); otherwise the two
inits are compared unpaired (difference of means, each side resampled on its own).

Censoring: a censored run enters the steps difference as its train_steps, a lower bound of its
true steps. A pair where only the compared init is censored therefore contributes a difference
that is a lower bound (the true one is at least as large); one where only the baseline is
censored, an upper bound; both censored, 0. A `higher` (slower) verdict carried by pairs of the
first kind, or a `lower` (faster) verdict carried by pairs of the second, only gets stronger
with longer training; the `censored_pairs` column says how many pairs hold a censored run.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any

from absl import logging

from transfusion_tf import workdir as workdir_lib
from transfusion_tf.report import stats, tables
from transfusion_tf.training import predictions as predictions_lib

BASELINE_INIT = "random"
TEST_AUC, VALID_AUC, CURVE_AREA = "test_auc", "valid_auc", "auc_curve_area"
EVALUATION_DIR = workdir_lib.EVALUATION_DIR
COLUMNS = (
    "dataset",
    "model",
    "init",
    "baseline",
    "metric",
    "n_pairs",
    "mean_diff",
    "ci_low",
    "ci_high",
    "verdict",
    "paired",
    "n_base",
    "n_other",
    "images_resampled",
    "censored_pairs",
    "detail",
)


def steps_metric(threshold: str) -> str:
    """The metric name of steps to a threshold (a results.json key): `steps@0.91`."""
    return f"steps@{threshold}"


def metric_label(metric: str) -> str:
    """The metric in words, for the report."""
    if metric.startswith("steps@"):
        return f"steps to AUC {metric[len('steps@') :]}"
    return {
        TEST_AUC: "test mean AUC",
        VALID_AUC: "final validation mean AUC",
        CURVE_AREA: "validation AUC averaged over training",
    }[metric]


@dataclasses.dataclass(frozen=True)
class RunValue:
    """One run's value of one metric; `scored` holds its per-example scores when saved."""

    seed: int
    value: float
    censored: bool = False
    scored: predictions_lib.Predictions | None = None


def _load_predictions(path: str, *, tasks: Sequence[str]) -> predictions_lib.Predictions | None:
    if not os.path.exists(path):
        return None
    try:
        out = _read_predictions(path, os.path.getmtime(path))
    except ValueError as err:
        logging.warning("%s; comparing without resampling images", err)
        return None
    if list(out.tasks) != list(tasks):
        logging.warning("%s: tasks %s differ from the run's %s", path, out.tasks, list(tasks))
        return None
    return out


@functools.lru_cache(maxsize=64)
def _read_predictions(path: str, mtime: float) -> predictions_lib.Predictions:
    """Reads a predictions file once per modification time (each init reuses the baseline's)."""
    del mtime  # part of the cache key only
    return predictions_lib.load_predictions(path)


def read_test_evaluation(run: tables.RunRecord) -> tuple[dict[str, Any], str] | None:
    """(evaluation_test.json, its weights) of a run evaluated on the test split, else None."""
    path = os.path.join(run.workdir, EVALUATION_DIR, workdir_lib.evaluation_report_file("test"))
    if not os.path.exists(path):
        return None
    try:
        report = workdir_lib.read_json(path)
    except workdir_lib.WorkdirError as err:
        raise tables.ReportError(str(err)) from err
    if not isinstance(report, dict) or report.get("auc_mean") is None:
        return None
    weights = (report.get("source") or {}).get("weights") or "final"
    return report, weights


def run_value(run: tables.RunRecord, metric: str) -> RunValue | None:
    """`run`'s value of `metric`, or None when the run does not have it."""
    if metric == VALID_AUC:
        value = run.results.get("final_auc_mean")
        if value is None:
            return None
        path = os.path.join(run.workdir, workdir_lib.VALID_PREDICTIONS_FILE)
        scored = _load_predictions(path, tasks=run.tasks)
        if scored is not None and scored.step not in (-1, run.results.get("train_steps")):
            scored = None  # not the final weights' predictions
        return RunValue(seed=run.seed, value=float(value), scored=scored)
    if metric == TEST_AUC:
        found = read_test_evaluation(run)
        if found is None:
            return None
        report, _ = found
        path = os.path.join(
            run.workdir, EVALUATION_DIR, workdir_lib.evaluation_predictions_file("test")
        )
        scored = _load_predictions(path, tasks=report.get("tasks") or run.tasks)
        return RunValue(seed=run.seed, value=float(report["auc_mean"]), scored=scored)
    if metric == CURVE_AREA:
        value = tables.curve_area(run)
        return None if value is None else RunValue(seed=run.seed, value=value)
    if metric.startswith("steps@"):
        found = tables.crossing(run, metric[len("steps@") :])
        if found is None:
            return None
        return RunValue(seed=run.seed, value=found[0], censored=found[1])
    raise ValueError(f"unknown comparison metric {metric!r}")


def _seed_map(values: Sequence[RunValue]) -> dict[int, RunValue] | None:
    """seed -> value, or None when a seed repeats (then the runs cannot be paired)."""
    out = {v.seed: v for v in values}
    return out if len(out) == len(values) else None


def compare_values(
    *,
    base: Sequence[RunValue],
    other: Sequence[RunValue],
    num_resamples: int = stats.DEFAULT_RESAMPLES,
    seed: int = 0,
) -> tuple[stats.Difference, int, list[str]]:
    """Compares `other - base` (see the module docstring for pairing and images).

    Returns:
      (the Difference, the number of pairs / runs holding a censored value, detail phrases).
    """
    details: list[str] = []
    base_by, other_by = _seed_map(base), _seed_map(other)
    shared = sorted(set(base_by) & set(other_by)) if base_by and other_by else []
    everyone = bool(shared) and len(shared) == len(base) == len(other)
    if base_by is None or other_by is None:
        details.append("a seed repeats within an init, so runs are not paired")
    if everyone or len(shared) >= 2:
        left_out = [v.seed for v in base if v.seed not in shared]
        left_out_other = [v.seed for v in other if v.seed not in shared]
        if left_out or left_out_other:
            details.append(
                "runs without a same-seed partner left out (seeds "
                f"{left_out} of the baseline, {left_out_other} of the init)"
            )
        pairs = [(base_by[s], other_by[s]) for s in shared]
        censored = sum(b.censored or o.censored for b, o in pairs)
        scored = [(b.scored, o.scored) for b, o in pairs]
        if all(b is not None and o is not None and b.same_examples(o) for b, o in scored):
            diff = stats.paired_auc_difference(
                base=[stats.ScoredRun(b.labels, b.scores, b.mask) for b, _ in scored],
                other=[stats.ScoredRun(o.labels, o.scores, o.mask) for _, o in scored],
                num_resamples=num_resamples,
                seed=seed,
            )
            if diff.mean_diff is not None:
                return diff, censored, details
        diff = stats.paired_difference(
            base=[b.value for b, _ in pairs],
            other=[o.value for _, o in pairs],
            num_resamples=num_resamples,
            seed=seed,
        )
        return diff, censored, details
    if base_by is not None and other_by is not None:
        details.append("no same-seed partners" if not shared else "only one seed shared")
    diff = stats.unpaired_difference(
        base=[v.value for v in base],
        other=[v.value for v in other],
        num_resamples=num_resamples,
        seed=seed,
    )
    censored = sum(v.censored for v in base) + sum(v.censored for v in other)
    return diff, censored, details


def _metrics(thresholds: Sequence[str]) -> list[str]:
    return [TEST_AUC, VALID_AUC, *[steps_metric(t) for t in thresholds], CURVE_AREA]


def comparison_rows(
    groups: dict[tuple[str, str, str], list[tables.RunRecord]],
    *,
    baseline: str = BASELINE_INIT,
    num_resamples: int = stats.DEFAULT_RESAMPLES,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row (the `COLUMNS`) per (dataset, model, init other than `baseline`, metric).

    A metric is compared when both inits have it for at least one run; test AUC only between
    evaluations of the same weights (final / best), named in `detail`.
    """
    thresholds = tables.thresholds_of(r for runs in groups.values() for r in runs)
    rows: list[dict[str, Any]] = []
    pairs = list(dict.fromkeys((d, m) for d, m, _ in groups))
    for dataset, model in pairs:
        base_runs = groups.get((dataset, model, baseline))
        if not base_runs:
            continue
        for (d, m, init), runs in groups.items():
            if (d, m) != (dataset, model) or init == baseline:
                continue
            for metric in _metrics(thresholds):
                for label, base_values, other_values in _metric_sides(metric, base_runs, runs):
                    diff, censored, details = compare_values(
                        base=base_values, other=other_values, num_resamples=num_resamples, seed=seed
                    )
                    if label:
                        details.insert(0, f"test split, {label} weights")
                    if diff.images_resampled and diff.ci_low is not None:
                        details.append("seeds and evaluation images resampled")
                    if censored:
                        total = diff.n_pairs if diff.paired else diff.n_base + diff.n_other
                        unit = "pairs" if diff.paired else "runs"
                        details.append(f"{censored} of {total} {unit} censored at train steps")
                    rows.append(
                        {
                            "dataset": dataset,
                            "model": model,
                            "init": init,
                            "baseline": baseline,
                            "metric": metric,
                            "n_pairs": diff.n_pairs,
                            "mean_diff": diff.mean_diff,
                            "ci_low": diff.ci_low,
                            "ci_high": diff.ci_high,
                            "verdict": diff.verdict,
                            "paired": diff.paired,
                            "n_base": diff.n_base,
                            "n_other": diff.n_other,
                            "images_resampled": diff.images_resampled,
                            "censored_pairs": censored,
                            "detail": "; ".join(details),
                            "weights": label or None,
                        }
                    )
    return rows


def _metric_sides(
    metric: str, base_runs: Sequence[tables.RunRecord], runs: Sequence[tables.RunRecord]
) -> list[tuple[str, list[RunValue], list[RunValue]]]:
    """(test weights or "", baseline values, init values) for each comparable set of a metric."""
    if metric != TEST_AUC:
        base = [v for v in (run_value(r, metric) for r in base_runs) if v is not None]
        other = [v for v in (run_value(r, metric) for r in runs) if v is not None]
        return [("", base, other)] if base and other else []
    # Test AUC: one comparison per kind of evaluated weights both sides have.
    by_weights: dict[str, tuple[list[RunValue], list[RunValue]]] = {}
    for side, side_runs in ((0, base_runs), (1, runs)):
        for run in side_runs:
            found = read_test_evaluation(run)
            value = run_value(run, TEST_AUC)
            if found is None or value is None:
                continue
            by_weights.setdefault(found[1], ([], []))[side].append(value)
    return [
        (weights, base, other)
        for weights, (base, other) in sorted(by_weights.items())
        if base and other
    ]


def write_comparisons_csv(path: str, rows: Sequence[dict[str, Any]]) -> None:
    """Writes `comparisons.csv`: exactly `COLUMNS`, booleans as true/false, None as empty."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    k: (
                        str(row[k]).lower()
                        if isinstance(row[k], bool)
                        else ("" if row[k] is None else row[k])
                    )
                    for k in COLUMNS
                }
            )


def _is_steps(metric: str) -> bool:
    return metric.startswith("steps@")


def fmt_value(metric: str, value: float | None, *, signed: bool = True) -> str:
    """Steps as integers, AUCs to 3 decimals; a value that rounds to 0 has no sign."""
    if value is None:
        return "–"
    digits = 0 if _is_steps(metric) else 3
    rounded = round(value, digits)
    if rounded == 0:
        return f"{0.0:.{digits}f}"
    return f"{rounded:+.{digits}f}" if signed else f"{rounded:.{digits}f}"


def fmt_ci(row: dict[str, Any]) -> str:
    """'[-0.010, 0.020]', or 'no CI (n = 1)' with fewer than 2 pairs (or runs on a side)."""
    if row["ci_low"] is None:
        n = row["n_pairs"] if row["paired"] else min(row["n_base"], row["n_other"])
        return f"no CI (n = {n})"
    low = fmt_value(row["metric"], row["ci_low"], signed=False)
    high = fmt_value(row["metric"], row["ci_high"], signed=False)
    return f"[{low}, {high}]"


def verdict_words(row: dict[str, Any]) -> str:
    """The verdict in words; steps say which is faster ("lower" steps = faster)."""
    v = row["verdict"]
    if v == stats.NO_EVIDENCE:
        return "no evidence of a difference"
    if _is_steps(row["metric"]):
        return f"{v} steps: {'faster' if v == stats.LOWER else 'slower'}"
    return v


def pairing_words(row: dict[str, Any]) -> str:
    """'paired, 3 seeds' or 'unpaired, 2 vs 1 runs'."""
    if row["paired"]:
        return f"paired, {row['n_pairs']} seed{'s' if row['n_pairs'] != 1 else ''}"
    return f"unpaired, {row['n_base']} vs {row['n_other']} runs"


def comparisons_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison table: one line per (dataset, model, init, metric)."""
    header = ["dataset", "model", "init", "metric", "difference", "95 % CI", "verdict", "n"]
    body = []
    for row in rows:
        metric = metric_label(row["metric"])
        if row["detail"]:
            metric = f"{metric} ({row['detail']})"
        body.append(
            [
                row["dataset"],
                row["model"],
                row["init"],
                metric,
                fmt_value(row["metric"], row["mean_diff"]),
                fmt_ci(row),
                verdict_words(row),
                pairing_words(row),
            ]
        )
    return tables.markdown_table(header, body)


def sentence(row: dict[str, Any], *, with_pairing: bool = True) -> str:
    """One comparison in words, e.g. "steps to AUC 0.8: -150 steps [-210, -90]: lower steps:
    faster (paired, 3 seeds)"."""
    unit = " steps" if _is_steps(row["metric"]) else ""
    label = metric_label(row["metric"])
    if row.get("weights"):
        label = f"{label} ({row['weights']} weights)"
    ci = fmt_ci(row)
    ci = ci if row["ci_low"] is not None else f"({ci.replace('no CI (', 'no CI, ')}"
    text = f"{label}: {fmt_value(row['metric'], row['mean_diff'])}{unit} {ci}: {verdict_words(row)}"
    return f"{text} ({pairing_words(row)})" if with_pairing else text


def findings(
    groups: dict[tuple[str, str, str], list[tables.RunRecord]],
    rows: Sequence[dict[str, Any]],
    *,
    baseline: str = BASELINE_INIT,
) -> list[str]:
    """Findings sentences built from the comparison rows: one item per (dataset, model, init).

    A (dataset, model) without baseline runs gets one sentence saying so.
    """
    out: list[str] = []
    pairs = list(dict.fromkeys((d, m) for d, m, _ in groups))
    for dataset, model in pairs:
        if (dataset, model, baseline) not in groups:
            out.append(f"**{model} on {dataset}**: no `{baseline}` runs to compare against.")
            continue
        inits = [i for d, m, i in groups if (d, m) == (dataset, model) and i != baseline]
        for init in inits:
            mine = [
                r for r in rows if (r["dataset"], r["model"], r["init"]) == (dataset, model, init)
            ]
            pairing = {pairing_words(r) for r in mine}
            shared = len(pairing) == 1
            head = f"**{model} on {dataset}** — {init} vs {baseline}"
            if shared:
                head += f" ({pairing.pop()})"
            parts = [sentence(r, with_pairing=not shared) for r in mine]
            out.append(
                f"{head}, difference {init} − {baseline} with its 95 % bootstrap CI: "
                + "; ".join(parts)
                + "."
            )
    return out
