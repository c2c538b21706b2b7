"""Run records and the report's tables: loading workdirs, grouping seeds, mean ± sd aggregation.

A *run* is one `transfusion-train` workdir (SPEC T1): `config.json` (a `RunConfig`),
`results.json` and `eval_history.jsonl`. Runs that differ only in their seed form one *group*,
keyed by (dataset, model, init); the AUC table reports mean ± sample standard deviation over a
group's seeds (the paper reports mean ± sd over 3 runs, PAPER.md).

Steps to a threshold are *censored* when a run never reaches it: such a run counts as its
train_steps (a lower bound of its true value), and the steps table shows the median over
seeds with the number censored — never a mean over the seeds that happened to reach it.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

from absl import logging

from transfusion_tf import config as config_lib
from transfusion_tf import workdir as workdir_lib


class ReportError(ValueError):
    """A workdir or pattern that cannot be reported on; the message names the path."""


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One finished run: its resolved config, results and evaluation history."""

    workdir: str
    config: config_lib.RunConfig
    results: dict[str, Any]
    history: tuple[dict[str, Any], ...]

    @property
    def dataset(self) -> str:
        """Dataset label: the dataset directory's name, plus the training-subset size if any."""
        name = os.path.basename(os.path.normpath(self.config.data.dataset_dir)) or "?"
        if self.config.data.train_examples:
            name = f"{name} ({self.config.data.train_examples} train ex.)"
        return name

    @property
    def model(self) -> str:
        return self.config.model.name

    @property
    def init(self) -> str:
        """Init label in the paper's words, with the knob that distinguishes variants."""
        init = self.config.init
        if init.name == "imagenet" and init.source_weights not in (None, "imagenet"):
            source = os.path.normpath(init.source_weights).split(os.sep)[-2:]
            return f"transfer (source={'/'.join(source)})"
        if init.name == "meanvar":
            return f"meanvar (bn={init.bn_policy})"
        if init.name == "transfusion":
            label = f"transfusion (upto={init.transfuse_upto})"
            if init.upper_init != "random":
                label = f"{label[:-1]}, upper={init.upper_init})"
            return label
        return init.name

    @property
    def seed(self) -> int:
        return int(self.results.get("seed", self.config.train.seed))

    @property
    def tasks(self) -> list[str]:
        return list(self.results.get("tasks") or self.results.get("final_auc", {}).keys())

    @property
    def group(self) -> tuple[str, str, str]:
        return (self.dataset, self.model, self.init)


def load_run(workdir: str) -> RunRecord:
    """Reads one workdir; raises FileNotFoundError or ReportError naming the offending file.

    The history is read as the trainer reads it (`workdir.read_history`), sorted by step.
    """
    if not os.path.isdir(workdir):
        raise FileNotFoundError(f"workdir {workdir} does not exist")
    for name in (workdir_lib.CONFIG_FILE, workdir_lib.RESULTS_FILE):
        path = os.path.join(workdir, name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} is missing (is {workdir} a finished training run?)")
    try:
        config = workdir_lib.read_config(workdir)
        results = workdir_lib.read_results(workdir)
        history = workdir_lib.read_history(workdir)
    except workdir_lib.WorkdirError as err:
        raise ReportError(str(err)) from err
    if not isinstance(results, dict) or "final_auc_mean" not in results:
        path = os.path.join(workdir, workdir_lib.RESULTS_FILE)
        raise ReportError(f"{path}: no 'final_auc_mean' key")
    history.sort(key=lambda r: r["step"])
    return RunRecord(workdir=workdir, config=config, results=results, history=tuple(history))


def find_runs(patterns: Sequence[str]) -> tuple[list[RunRecord], list[str]]:
    """Expands glob patterns to finished runs; returns (runs, skipped 'path: reason' strings).

    A directory matched by a pattern is a run if it holds `config.json`; otherwise its
    immediate subdirectories holding one are taken (so `runs/` works as well as `runs/*`).
    Unfinished runs (no `results.json`) are skipped with a reason, never silently.
    Raises ReportError when a pattern matches nothing or no finished run is found.
    """
    candidates: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise ReportError(f"--workdirs pattern {pattern!r} matches nothing")
        for match in matches:
            if not os.path.isdir(match):
                continue
            if os.path.exists(os.path.join(match, workdir_lib.CONFIG_FILE)):
                candidates.append(match)
            else:
                subdirs = sorted(
                    os.path.join(match, d)
                    for d in os.listdir(match)
                    if os.path.exists(os.path.join(match, d, workdir_lib.CONFIG_FILE))
                )
                candidates.extend(subdirs)
    runs: list[RunRecord] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for workdir in candidates:
        key = os.path.realpath(workdir)
        if key in seen:
            continue
        seen.add(key)
        results_file = workdir_lib.RESULTS_FILE
        if not os.path.exists(os.path.join(workdir, results_file)):
            skipped.append(f"{workdir}: no {results_file} (unfinished run)")
            logging.warning("Skipping %s: no %s (unfinished run)", workdir, results_file)
            continue
        runs.append(load_run(workdir))
    if not runs:
        raise ReportError(f"no finished training run found under {', '.join(patterns)}")
    return runs, skipped


def group_runs(runs: Iterable[RunRecord]) -> dict[tuple[str, str, str], list[RunRecord]]:
    """Groups runs by (dataset, model, init), seeds sorted; groups in a stable order."""
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    return {k: sorted(groups[k], key=lambda r: r.seed) for k in sorted(groups, key=_group_order)}


_INIT_ORDER = ("random", "imagenet", "transfer", "meanvar", "transfusion", "gabor")


def _group_order(key: tuple[str, str, str]) -> tuple[Any, ...]:
    dataset, model, init = key
    base = init.split(" ")[0]
    rank = _INIT_ORDER.index(base) if base in _INIT_ORDER else len(_INIT_ORDER)
    return (dataset, model, rank, init)


def mean_sd(values: Iterable[float | None]) -> tuple[float | None, float | None, int]:
    """Mean and sample sd (ddof=1; 0 for one value) of the defined values, and their count."""
    defined = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not defined:
        return None, None, 0
    mean = sum(defined) / len(defined)
    if len(defined) == 1:
        return mean, 0.0, 1
    var = sum((v - mean) ** 2 for v in defined) / (len(defined) - 1)
    return mean, math.sqrt(var), len(defined)


def fmt_mean_sd(mean: float | None, sd: float | None, *, scale: float = 100.0, digits: int = 1):
    """'96.4 ± 0.1' (AUC in percent by default, as the paper's tables); '–' when undefined."""
    if mean is None:
        return "–"
    return f"{mean * scale:.{digits}f} ± {(sd or 0.0) * scale:.{digits}f}"


def auc_rows(groups: dict[tuple[str, str, str], list[RunRecord]]) -> list[dict[str, Any]]:
    """One row per group: AUC mean/sd over seeds per task, macro mean, best-step mean.

    Values are fractions in [0, 1] (the Markdown table shows percent). Keys: dataset, model,
    init, seeds, `auc_mean`, `auc_mean_sd`, `best_auc_mean`, `best_auc_mean_sd`, and per task
    `auc/<task>`, `auc/<task>_sd`.
    """
    rows = []
    for (dataset, model, init), runs in groups.items():
        row: dict[str, Any] = {"dataset": dataset, "model": model, "init": init}
        row["seeds"] = len(runs)
        row["auc_mean"], row["auc_mean_sd"], _ = mean_sd(r.results["final_auc_mean"] for r in runs)
        row["best_auc_mean"], row["best_auc_mean_sd"], _ = mean_sd(
            r.results.get("best_auc_mean") for r in runs
        )
        tasks = _ordered_tasks(runs)
        for task in tasks:
            m, s, _ = mean_sd(r.results.get("final_auc", {}).get(task) for r in runs)
            row[f"auc/{task}"], row[f"auc/{task}_sd"] = m, s
        row["tasks"] = tasks
        rows.append(row)
    return rows


def _ordered_tasks(runs: Sequence[RunRecord]) -> list[str]:
    tasks: list[str] = []
    for run in runs:
        tasks.extend(t for t in run.tasks if t not in tasks)
    return tasks


def thresholds_of(runs: Iterable[RunRecord]) -> list[str]:
    """The AUC thresholds (as their results.json keys) that any run reports, ascending."""
    keys: set[str] = set()
    for run in runs:
        keys.update((run.results.get("steps_to_threshold") or {}).keys())
    return sorted(keys, key=float)


def crossing(run: RunRecord, threshold: str) -> tuple[float, bool] | None:
    """A run's steps to `threshold` (a results.json key) and whether they are censored.

    The interpolated crossing when recorded, else the crossing's eval step (runs recorded
    before interpolation existed); a threshold never reached counts as the run's train_steps,
    censored. None when the run does not report this threshold.
    """
    results = run.results
    steps = results.get("steps_to_threshold") or {}
    if threshold not in steps:
        return None
    censored_map = results.get("steps_to_threshold_censored") or {}
    censored = bool(censored_map.get(threshold, steps[threshold] is None))
    if censored:
        return float(results.get("train_steps") or run.config.train.train_steps), True
    interpolated = (results.get("steps_to_threshold_interpolated") or {}).get(threshold)
    return float(interpolated if interpolated is not None else steps[threshold]), False


def curve_area(run: RunRecord) -> float | None:
    """A run's `auc_curve_area` (computed from its history for runs recorded without it)."""
    if "auc_curve_area" in run.results:
        value = run.results["auc_curve_area"]
        return None if value is None else float(value)
    from transfusion_tf.training import metrics as metrics_lib

    return metrics_lib.auc_curve_area(run.history, tasks=run.config.train.threshold_tasks)


def censored_median(values: Sequence[tuple[float, bool]]) -> tuple[float | None, bool]:
    """Median of (value, censored) pairs whose censored values are lower bounds.

    Censored values sort after observed ones of equal value; the median is censored (a lower
    bound, shown as ">= median") when a middle value it is taken from is censored.
    """
    if not values:
        return None, False
    ordered = sorted(values, key=lambda v: (v[0], v[1]))
    n = len(ordered)
    middle = [ordered[n // 2]] if n % 2 else [ordered[n // 2 - 1], ordered[n // 2]]
    return sum(v for v, _ in middle) / len(middle), any(c for _, c in middle)


def threshold_auc_label(runs: Iterable[RunRecord]) -> str:
    """Which AUC the runs threshold and by which rule, e.g. "sustained, Consolidation"."""
    labels = []
    for run in runs:
        rule = run.results.get("threshold_rule") or "first"
        tasks = run.results.get("threshold_tasks") or []
        label = f"{rule}, {'+'.join(tasks) if tasks else 'all tasks'}"
        if label not in labels:
            labels.append(label)
    return "; ".join(labels)


def steps_rows(groups: dict[tuple[str, str, str], list[RunRecord]]) -> list[dict[str, Any]]:
    """One row per group: median steps to each AUC threshold over seeds, censoring counted.

    Keys: dataset, model, init, seeds, train_steps, threshold_auc (`threshold_auc_label`),
    `auc_curve_area` and `auc_curve_area_sd` (mean ± sd over seeds), and per threshold `t`:
    `steps@t` (median of the interpolated crossings, censored runs at their train_steps),
    `median_censored@t` (that median is a lower bound), `censored@t` (runs that never reached
    it), `reached@t` (runs that did).
    """
    all_runs = [r for runs in groups.values() for r in runs]
    thresholds = thresholds_of(all_runs)
    rows = []
    for (dataset, model, init), runs in groups.items():
        row: dict[str, Any] = {"dataset": dataset, "model": model, "init": init}
        row["seeds"] = len(runs)
        row["train_steps"] = max(int(r.results.get("train_steps", 0) or 0) for r in runs)
        row["threshold_auc"] = threshold_auc_label(runs)
        row["auc_curve_area"], row["auc_curve_area_sd"], _ = mean_sd(curve_area(r) for r in runs)
        for t in thresholds:
            values = [v for v in (crossing(r, t) for r in runs) if v is not None]
            median, median_censored = censored_median(values)
            censored = sum(c for _, c in values)
            row[f"steps@{t}"], row[f"median_censored@{t}"] = median, median_censored
            row[f"censored@{t}"], row[f"reached@{t}"] = censored, len(values) - censored
        rows.append(row)
    return rows


def fmt_censored_steps(row: dict[str, Any], threshold: str) -> str:
    """'120 (2/5 censored)', or '>= 150 (3/5 censored)' when the median is censored."""
    median = row[f"steps@{threshold}"]
    n = row[f"censored@{threshold}"] + row[f"reached@{threshold}"]
    if median is None:
        return "–"
    prefix = ">= " if row[f"median_censored@{threshold}"] else ""
    return f"{prefix}{median:.0f} ({row[f'censored@{threshold}']}/{n} censored)"


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def auc_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """AUC table: one line per group, per-task AUC and macro mean in percent, mean ± sd."""
    tasks: list[str] = []
    for row in rows:
        tasks.extend(t for t in row["tasks"] if t not in tasks)
    header = ["dataset", "model", "init", "seeds", *tasks, "mean AUC (final)", "best AUC"]
    body = []
    for row in rows:
        cells = [row["dataset"], row["model"], row["init"], str(row["seeds"])]
        cells += [fmt_mean_sd(row.get(f"auc/{t}"), row.get(f"auc/{t}_sd")) for t in tasks]
        cells.append(fmt_mean_sd(row["auc_mean"], row["auc_mean_sd"]))
        cells.append(fmt_mean_sd(row["best_auc_mean"], row["best_auc_mean_sd"]))
        body.append(cells)
    return markdown_table(header, body)


def steps_markdown(rows: Sequence[dict[str, Any]], thresholds: Sequence[str]) -> str:
    """Steps-to-threshold table: median over seeds with the censored count, and the curve area."""
    header = ["dataset", "model", "init", "train steps", "thresholded AUC (rule, tasks)"]
    header += [f"steps to AUC {t}" for t in thresholds]
    header.append("AUC curve area")
    body = []
    for row in rows:
        cells = [row["dataset"], row["model"], row["init"], str(row["train_steps"])]
        cells.append(row["threshold_auc"])
        cells += [fmt_censored_steps(row, t) for t in thresholds]
        cells.append(fmt_mean_sd(row["auc_curve_area"], row["auc_curve_area_sd"]))
        body.append(cells)
    return markdown_table(header, body)


def write_csv(path: str, rows: Sequence[dict[str, Any]]) -> None:
    """Writes rows (dicts) as CSV with the union of their keys (list values joined by ';')."""
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    k: (";".join(v) if isinstance(v, list) else ("" if v is None else v))
                    for k, v in row.items()
                }
            )
