"""Exact evaluation metrics (SPEC T3, T5): per-task ROC AUC / AUPRC with sklearn, masked, and
the convergence of the validation AUC over training (threshold crossings, curve area).

A task whose known labels hold one class only has no ROC AUC; it is reported as `None`
(JSON null), never as 0 or 0.5, and left out of the macro means. For a softmax run the per-task
AUCs are one-vs-rest AUCs of the softmax probabilities, and `accuracy_report` adds top-1 and
top-5 accuracy over the examples with a one-hot label.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

from transfusion_tf.data import schema

TOP_K = (1, 5)


def _task_arrays(labels, scores, mask, t: int) -> tuple[np.ndarray, np.ndarray]:
    keep = mask[:, t] > 0
    return labels[keep, t], scores[keep, t]


def _check_shapes(labels, scores, mask, tasks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    mask = np.ones_like(labels) if mask is None else np.asarray(mask, dtype=np.float64)
    if labels.ndim != 2 or labels.shape != scores.shape or labels.shape != mask.shape:
        raise ValueError(
            "labels, scores and mask must all be [examples, tasks]; got "
            f"{labels.shape}, {scores.shape}, {mask.shape}"
        )
    if labels.shape[1] != len(tasks):
        raise ValueError(f"{labels.shape[1]} label columns but {len(tasks)} task names")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values")
    return labels, scores, mask


def _mean(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def _task_auc(y: np.ndarray, s: np.ndarray) -> tuple[float | None, float | None]:
    y = (y > 0.5).astype(np.int64)
    if y.size == 0 or y.min() == y.max():
        return None, None
    return float(skm.roc_auc_score(y, s)), float(skm.average_precision_score(y, s))


def auc_report(
    *,
    labels: np.ndarray,
    scores: np.ndarray,
    mask: np.ndarray | None,
    tasks: Sequence[str],
) -> dict[str, Any]:
    """ROC AUC and AUPRC per task over examples whose label is known.

    Args:
      labels: [examples, tasks] 0/1 labels.
      scores: [examples, tasks] scores (probabilities or logits: AUC is rank based).
      mask: [examples, tasks], 1 where the label is known (None: all known).
      tasks: the task names, in label order.

    Returns:
      {"auc": {task: float|None}, "auc_mean": float|None, "auprc": {...}, "auprc_mean": ...,
       "num_labelled": {task: int}, "num_positive": {task: int}}.
    """
    labels, scores, mask = _check_shapes(labels, scores, mask, tasks)
    auc: dict[str, float | None] = {}
    auprc: dict[str, float | None] = {}
    labelled: dict[str, int] = {}
    positive: dict[str, int] = {}
    for t, task in enumerate(tasks):
        y, s = _task_arrays(labels, scores, mask, t)
        auc[task], auprc[task] = _task_auc(y, s)
        labelled[task] = int(y.size)
        positive[task] = int(np.sum(y > 0.5))
    return {
        "auc": auc,
        "auc_mean": _mean(list(auc.values())),
        "auprc": auprc,
        "auprc_mean": _mean(list(auprc.values())),
        "num_labelled": labelled,
        "num_positive": positive,
    }


def topk_accuracy(
    *, labels: np.ndarray, scores: np.ndarray, mask: np.ndarray | None, k: int
) -> float | None:
    """Fraction of the one-hot examples whose class is among the `k` highest scores.

    Args:
      labels, scores, mask: [examples, classes]; only rows with a one-hot label
        (`schema.is_one_hot`) count.
      k: how many of the highest-scoring classes count as a hit; a tie at the k-th place counts
        as a hit, as in `tf.math.in_top_k`.

    Returns:
      The accuracy, or None when no example has a one-hot label.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    mask = np.ones_like(labels) if mask is None else np.asarray(mask, dtype=np.float64)
    rows = schema.is_one_hot(labels, mask)
    if not rows.any():
        return None
    true_class = np.argmax(labels[rows] >= 0.5, axis=-1)
    s = scores[rows]
    true_score = s[np.arange(len(true_class)), true_class]
    higher = np.sum(s > true_score[:, None], axis=-1)
    return float(np.mean(higher < k))


def accuracy_report(
    *, labels: np.ndarray, scores: np.ndarray, mask: np.ndarray | None
) -> dict[str, float | None]:
    """{"top1_accuracy", "top5_accuracy"} of a single-label (softmax) evaluation.

    Top-k is reported for k < the number of classes only (top-5 of 5 classes is always 1), so
    "top5_accuracy" needs more than 5 classes.
    """
    num_classes = np.shape(labels)[1]
    return {
        f"top{k}_accuracy": topk_accuracy(labels=labels, scores=scores, mask=mask, k=k)
        for k in TOP_K
        if k == 1 or k < num_classes
    }


def bootstrap_report(
    *,
    labels: np.ndarray,
    scores: np.ndarray,
    mask: np.ndarray | None,
    tasks: Sequence[str],
    num_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """`auc_report` plus percentile bootstrap confidence intervals (SPEC T5).

    Examples are resampled with replacement (seeded); a resample where a task has one class is
    skipped for that task. Intervals are the (1-confidence)/2 and (1+confidence)/2 percentiles.

    Returns:
      `auc_report`'s dict plus "auc_ci"/"auprc_ci" {task: [low, high] | None},
      "auc_mean_ci", "auprc_mean_ci", "bootstrap_samples", "confidence", "seed".
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    labels, scores, mask = _check_shapes(labels, scores, mask, tasks)
    report = auc_report(labels=labels, scores=scores, mask=mask, tasks=tasks)
    rng = np.random.default_rng(seed)
    n = labels.shape[0]
    auc_samples: dict[str, list[float]] = {t: [] for t in tasks}
    auprc_samples: dict[str, list[float]] = {t: [] for t in tasks}
    mean_auc: list[float] = []
    mean_auprc: list[float] = []
    for _ in range(num_samples):
        idx = rng.integers(0, n, size=n)
        per_auc, per_auprc = [], []
        for t, task in enumerate(tasks):
            y, s = _task_arrays(labels[idx], scores[idx], mask[idx], t)
            a, p = _task_auc(y, s)
            if a is not None:
                auc_samples[task].append(a)
                auprc_samples[task].append(p)
            per_auc.append(a)
            per_auprc.append(p)
        if report["auc_mean"] is not None and all(
            (a is None) == (report["auc"][task] is None)
            for a, task in zip(per_auc, tasks, strict=True)
        ):
            mean_auc.append(_mean(per_auc))
            mean_auprc.append(_mean(per_auprc))
    lo, hi = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2

    def interval(values: list[float]) -> list[float] | None:
        if not values:
            return None
        return [float(np.percentile(values, lo)), float(np.percentile(values, hi))]

    report.update(
        auc_ci={t: interval(auc_samples[t]) for t in tasks},
        auprc_ci={t: interval(auprc_samples[t]) for t in tasks},
        auc_mean_ci=interval(mean_auc),
        auprc_mean_ci=interval(mean_auprc),
        bootstrap_samples=int(num_samples),
        confidence=float(confidence),
        seed=int(seed),
    )
    return report


THRESHOLD_RULES = ("first", "sustained")


def convergence_auc(record: Mapping[str, Any], *, tasks: Sequence[str] = ()) -> float | None:
    """The AUC of one eval record that thresholds apply to (SPEC T3).

    Args:
      record: an eval record with "auc" {task: float|None} and "auc_mean".
      tasks: task names whose AUCs are averaged; empty: the record's `auc_mean` (all tasks).

    Returns:
      The mean AUC, or None when it is undefined (no selected task has a defined AUC).
    """
    if tasks:
        per_task = record.get("auc") or {}
        value = _mean([per_task.get(task) for task in tasks])
    else:
        value = record.get("auc_mean")
    if value is None or math.isnan(value):
        return None
    return float(value)


def _curve(
    history: Sequence[Mapping[str, Any]], tasks: Sequence[str]
) -> list[tuple[int, float | None]]:
    """(step, convergence AUC or None) of every eval record, in step order."""
    return [
        (int(r["step"]), convergence_auc(r, tasks=tasks))
        for r in sorted(history, key=lambda r: r["step"])
    ]


def threshold_crossing(
    history: Sequence[Mapping[str, Any]],
    *,
    threshold: float,
    rule: str = "first",
    tasks: Sequence[str] = (),
) -> dict[str, Any]:
    """When the validation AUC first reaches `threshold` (the paper's "steps to 0.91 AUC").

    The crossing is the first eval whose AUC (`convergence_auc`) is >= `threshold`; under
    `rule="sustained"` the next eval must be >= `threshold` too, so a single spike does not
    count (the last eval has no next one: reaching the threshold there counts). An eval with
    an undefined AUC never reaches a threshold.

    The interpolated crossing is the step where the straight line between the eval before the
    crossing and the crossing eval meets the threshold; a crossing at the first eval (step 0
    when the run evaluated its init) is its own step.

    Args:
      history: eval records, each with "step", "auc" and "auc_mean".
      threshold: the AUC threshold.
      rule: "first" or "sustained".
      tasks: task names whose mean AUC is thresholded; empty: all tasks (`auc_mean`).

    Returns:
      {"step": eval step or None, "interpolated": float or None, "censored": bool}; a
      threshold never reached is censored (at the run's last step) with step None.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(
            f"--threshold_rule must be one of {', '.join(THRESHOLD_RULES)}; got {rule!r}"
        )
    curve = _curve(history, tasks)
    for i, (step, value) in enumerate(curve):
        if value is None or value < threshold:
            continue
        if rule == "sustained" and i + 1 < len(curve):
            following = curve[i + 1][1]
            if following is None or following < threshold:
                continue
        interpolated = float(step)
        if i > 0:
            before_step, before = curve[i - 1]
            if before is not None and before < threshold:
                fraction = (threshold - before) / (value - before)
                interpolated = before_step + fraction * (step - before_step)
        return {"step": step, "interpolated": interpolated, "censored": False}
    return {"step": None, "interpolated": None, "censored": True}


def threshold_crossings(
    history: Sequence[Mapping[str, Any]],
    thresholds: Sequence[float],
    *,
    rule: str = "first",
    tasks: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """`threshold_crossing` of every threshold, keyed by `format_threshold`."""
    return {
        format_threshold(t): threshold_crossing(history, threshold=t, rule=rule, tasks=tasks)
        for t in thresholds
    }


def steps_to_threshold(
    history: Sequence[Mapping[str, Any]],
    thresholds: Sequence[float],
    *,
    rule: str = "first",
    tasks: Sequence[str] = (),
) -> dict[str, int | None]:
    """The eval step of each threshold's crossing (`threshold_crossing`), None if never reached.

    Args:
      history: eval records in step order, each with "step", "auc" and "auc_mean".
      thresholds: AUC thresholds.
      rule: "first" or "sustained" (see `threshold_crossing`).
      tasks: task names whose mean AUC is thresholded; empty: all tasks.

    Returns:
      {threshold formatted with `format_threshold`: step or None if never reached}.
    """
    crossings = threshold_crossings(history, thresholds, rule=rule, tasks=tasks)
    return {key: crossing["step"] for key, crossing in crossings.items()}


def auc_curve_area(
    history: Sequence[Mapping[str, Any]], *, tasks: Sequence[str] = ()
) -> float | None:
    """The validation AUC averaged over training: a threshold-free convergence speed (SPEC T3).

    The trapezoidal area under (step, AUC) over the evals with a defined AUC, divided by the
    steps they span (0..train_steps for a run that evaluated its init), so the value is in AUC
    units: a run that is at AUC a from step 0 on scores a, and a faster run scores higher.

    Args:
      history: eval records, each with "step", "auc" and "auc_mean".
      tasks: task names whose mean AUC is used; empty: all tasks (`auc_mean`).

    Returns:
      The mean AUC over the span, the single value when one eval is defined, or None.
    """
    points = [(s, v) for s, v in _curve(history, tasks) if v is not None]
    if not points:
        return None
    steps = np.array([s for s, _ in points], dtype=np.float64)
    values = np.array([v for _, v in points], dtype=np.float64)
    span = steps[-1] - steps[0]
    if span <= 0:
        return float(values[-1])
    area = np.sum((values[1:] + values[:-1]) / 2.0 * np.diff(steps))
    return float(area / span)


def format_threshold(threshold: float) -> str:
    """The JSON key of a threshold: 0.91 -> "0.91", 0.9 -> "0.9"."""
    return repr(float(threshold))
