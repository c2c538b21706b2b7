"""Exact evaluation metrics (SPEC T3, T5): per-task ROC AUC / AUPRC with sklearn, masked.

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


def steps_to_threshold(
    history: Sequence[Mapping[str, Any]], thresholds: Sequence[float]
) -> dict[str, int | None]:
    """First eval step whose `auc_mean` reaches each threshold (the paper's "steps to 0.91 AUC").

    Args:
      history: eval records in step order, each with "step" and "auc_mean" (float or None).
      thresholds: AUC thresholds.

    Returns:
      {threshold formatted with `format_threshold`: step or None if never reached}.
    """
    out: dict[str, int | None] = {}
    for threshold in thresholds:
        hit = None
        for record in sorted(history, key=lambda r: r["step"]):
            value = record.get("auc_mean")
            if value is not None and not math.isnan(value) and value >= threshold:
                hit = int(record["step"])
                break
        out[format_threshold(threshold)] = hit
    return out


def format_threshold(threshold: float) -> str:
    """The JSON key of a threshold: 0.91 -> "0.91", 0.9 -> "0.9"."""
    return repr(float(threshold))
