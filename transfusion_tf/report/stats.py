"""Bootstrap confidence intervals of the difference between two inits (SPEC X3). Pure numpy.

A comparison is `other - baseline` of one metric. Runs of the two inits with the same seed form
a *pair* (same data order and augmentation draws, so their difference cancels that noise):
the mean of the paired differences gets a percentile bootstrap CI over pairs. When the evaluation
images' per-example scores are known (`Predictions`), each resampled pair also resamples the
images, the same indices for both members, so the CI covers the finite evaluation set as well
as the seeds. Runs without partners are compared *unpaired*: the difference of the two means,
each side resampled on its own.

The verdict is read off the CI only: `higher` (the CI lies above 0), `lower` (below 0) or
`no evidence` (it contains 0, or there are fewer than 2 pairs / runs a side, so no CI).
"No evidence" never means "equal".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

HIGHER, LOWER, NO_EVIDENCE = "higher", "lower", "no evidence"
DEFAULT_RESAMPLES = 2000
_CHUNK = 256  # bootstrap replicates per vectorised block of image resamples


@dataclasses.dataclass(frozen=True)
class Difference:
    """One comparison of `other - base`.

    `n_pairs` is the number of seed pairs (0 when unpaired); `n_base` / `n_other` the runs of
    each side used. `ci_low` / `ci_high` are None without a CI.
    """

    mean_diff: float | None
    ci_low: float | None
    ci_high: float | None
    n_pairs: int
    n_base: int
    n_other: int
    paired: bool
    images_resampled: bool
    verdict: str


def verdict(*, ci_low: float | None, ci_high: float | None) -> str:
    """`higher` if the CI lies above 0, `lower` if below, else `no evidence` (also no CI)."""
    if ci_low is None or ci_high is None:
        return NO_EVIDENCE
    if ci_low > 0:
        return HIGHER
    if ci_high < 0:
        return LOWER
    return NO_EVIDENCE


def _interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    lo, hi = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    low, high = np.percentile(replicates, [lo, hi])
    return float(low), float(high)


def _check(num_resamples: int, confidence: float) -> None:
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _vector(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return out


def _difference(
    *, mean_diff, replicates, n_pairs, n_base, n_other, paired, images, confidence
) -> Difference:
    low = high = None
    if replicates is not None:
        low, high = _interval(replicates, confidence)
    return Difference(
        mean_diff=None if mean_diff is None else float(mean_diff),
        ci_low=low,
        ci_high=high,
        n_pairs=n_pairs,
        n_base=n_base,
        n_other=n_other,
        paired=paired,
        images_resampled=images,
        verdict=verdict(ci_low=low, ci_high=high),
    )


def paired_difference(
    *,
    base: Sequence[float] | np.ndarray,
    other: Sequence[float] | np.ndarray,
    num_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> Difference:
    """Mean of `other[i] - base[i]` over pairs, with a percentile bootstrap CI over pairs.

    Args:
      base, other: [pairs] one value per seed, `base[i]` and `other[i]` of the same seed.
      num_resamples: bootstrap replicates (pairs drawn with replacement).
      confidence: the CI's coverage.
      seed: seed of the resampling.

    Returns:
      A paired `Difference`; with fewer than 2 pairs it has no CI and says `no evidence`.
    """
    _check(num_resamples, confidence)
    base, other = _vector(base, "base"), _vector(other, "other")
    if base.shape != other.shape:
        raise ValueError(f"paired values differ in length: {base.size} base, {other.size} other")
    n = base.size
    diffs = other - base
    replicates = None
    if n >= 2:
        rng = np.random.default_rng(seed)
        replicates = diffs[rng.integers(0, n, size=(num_resamples, n))].mean(axis=1)
    return _difference(
        mean_diff=diffs.mean() if n else None,
        replicates=replicates,
        n_pairs=n,
        n_base=n,
        n_other=n,
        paired=True,
        images=False,
        confidence=confidence,
    )


def unpaired_difference(
    *,
    base: Sequence[float] | np.ndarray,
    other: Sequence[float] | np.ndarray,
    num_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> Difference:
    """`mean(other) - mean(base)`, each side resampled independently for the CI.

    Args:
      base: [runs of the baseline] one value per run.
      other: [runs of the compared init] one value per run.
      num_resamples, confidence, seed: as `paired_difference`.

    Returns:
      An unpaired `Difference` (n_pairs 0); without 2 runs on each side it has no CI.
    """
    _check(num_resamples, confidence)
    base, other = _vector(base, "base"), _vector(other, "other")
    nb, no = base.size, other.size
    replicates = None
    if nb >= 2 and no >= 2:
        rng = np.random.default_rng(seed)
        rb = base[rng.integers(0, nb, size=(num_resamples, nb))].mean(axis=1)
        ro = other[rng.integers(0, no, size=(num_resamples, no))].mean(axis=1)
        replicates = ro - rb
    return _difference(
        mean_diff=other.mean() - base.mean() if nb and no else None,
        replicates=replicates,
        n_pairs=0,
        n_base=nb,
        n_other=no,
        paired=False,
        images=False,
        confidence=confidence,
    )


def weighted_auc(*, labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of one task under example weights (a bootstrap resample's multiplicities).

    The Mann-Whitney statistic with ties counted one half: with integer weights it equals the
    AUC of the sample that repeats example i `weights[r, i]` times.

    Args:
      labels: [examples] 0/1 labels.
      scores: [examples] scores.
      weights: [replicates, examples] non-negative weights.

    Returns:
      [replicates] AUCs; NaN where the weighted sample holds one class only.
    """
    labels = np.asarray(labels, dtype=np.float64) > 0.5
    scores = np.asarray(scores, dtype=np.float64)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    w = weights[:, order]
    positive = labels[order]
    pos = np.add.reduceat(w * positive, starts, axis=1)  # [replicates, distinct scores]
    neg = np.add.reduceat(w * ~positive, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    numerator = np.sum(pos * (below + 0.5 * neg), axis=1)
    denominator = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan
        )


def mean_auc(
    *, labels: np.ndarray, scores: np.ndarray, mask: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Macro mean over tasks of `weighted_auc`, each task over its labelled examples.

    Args:
      labels, scores, mask: [examples, tasks] (mask 1 = label known).
      weights: [replicates, examples] example weights.

    Returns:
      [replicates] mean AUC over the tasks defined in each replicate (NaN if none is).
    """
    labels, scores, mask = (np.asarray(a, dtype=np.float64) for a in (labels, scores, mask))
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    per_task = []
    for t in range(labels.shape[1]):
        keep = mask[:, t] > 0
        if not np.any(keep):
            continue
        per_task.append(
            weighted_auc(labels=labels[keep, t], scores=scores[keep, t], weights=weights[:, keep])
        )
    if not per_task:
        return np.full(weights.shape[0], np.nan)
    stacked = np.stack(per_task, axis=1)
    defined = np.isfinite(stacked)
    total = np.where(defined, stacked, 0.0).sum(axis=1)
    count = defined.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _resample_counts(rng: np.random.Generator, num_images: int, num: int) -> np.ndarray:
    """[num, num_images] multiplicities of `num` bootstrap samples of the images."""
    idx = rng.integers(0, num_images, size=(num, num_images))
    offsets = np.arange(num)[:, None] * num_images
    counts = np.bincount((offsets + idx).ravel(), minlength=num * num_images)
    return counts.reshape(num, num_images)


@dataclasses.dataclass(frozen=True)
class ScoredRun:
    """One run's per-example scores on the evaluation images: arrays [examples, tasks]."""

    labels: np.ndarray
    scores: np.ndarray
    mask: np.ndarray


def paired_auc_difference(
    *,
    base: Sequence[ScoredRun],
    other: Sequence[ScoredRun],
    num_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> Difference:
    """Paired difference of mean AUC resampling seeds and, within each pair, the images.

    Each replicate draws the pairs with replacement and, for every drawn pair, a bootstrap
    sample of the evaluation images used for both of its members; its statistic is the mean over
    the drawn pairs of `AUC(other) - AUC(base)` on those images.

    Args:
      base, other: [pairs] runs of the same seed; `base[i]` and `other[i]` must score the same
        images in the same order (equal labels and mask, checked).
      num_resamples, confidence, seed: as `paired_difference`.

    Returns:
      A paired `Difference` with `images_resampled`; the point estimate is the mean paired
      difference on all images. Fewer than 2 pairs: no CI.
    """
    _check(num_resamples, confidence)
    if len(base) != len(other):
        raise ValueError(f"paired runs differ in number: {len(base)} base, {len(other)} other")
    for i, (b, o) in enumerate(zip(base, other, strict=True)):
        if b.labels.shape != o.labels.shape or not (
            np.array_equal(b.labels, o.labels) and np.array_equal(b.mask, o.mask)
        ):
            raise ValueError(f"pair {i}: the two runs were not scored on the same images")
    n = len(base)

    def pair_diff(i: int, weights: np.ndarray) -> np.ndarray:
        b, o = base[i], other[i]
        return mean_auc(labels=o.labels, scores=o.scores, mask=o.mask, weights=weights) - mean_auc(
            labels=b.labels, scores=b.scores, mask=b.mask, weights=weights
        )

    full = [pair_diff(i, np.ones((1, base[i].labels.shape[0])))[0] for i in range(n)]
    mean_diff = float(np.mean(full)) if n and np.all(np.isfinite(full)) else None
    replicates = None
    if n >= 2 and mean_diff is not None:
        rng = np.random.default_rng(seed)
        drawn = rng.integers(0, n, size=(num_resamples, n))
        diffs = np.empty((num_resamples, n))
        for i in range(n):
            rows, cols = np.nonzero(drawn == i)
            num_images = base[i].labels.shape[0]
            for start in range(0, rows.size, _CHUNK):
                block = slice(start, start + _CHUNK)
                weights = _resample_counts(rng, num_images, rows[block].size)
                diffs[rows[block], cols[block]] = pair_diff(i, weights)
        # A task with one class in a resample is left out of both members' means alike; a
        # drawn pair with no task defined at all is left out of its replicate.
        defined = np.isfinite(diffs)
        count = defined.sum(axis=1)
        total = np.where(defined, diffs, 0.0).sum(axis=1)
        replicates = total[count > 0] / count[count > 0] if np.any(count > 0) else None
    return _difference(
        mean_diff=mean_diff,
        replicates=replicates,
        n_pairs=n,
        n_base=n,
        n_other=n,
        paired=True,
        images=True,
        confidence=confidence,
    )
