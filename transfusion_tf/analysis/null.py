"""Chance levels of similarity values: permutation nulls (SPEC A5).

On a finite sample, two *unrelated* activation sets still look alike: the mean canonical
correlation of independent standard-normal x [2000, 256] and y [2000, 256] is about 0.31. A
similarity value is only evidence when it is read against the same measure on the same
activations with the pairing of the datapoints broken. This module owns that null:

- The permutation: one side's *images* are shuffled (a random derangement, so no image keeps its
  partner), every row of an image moving together. For conv maps taken as (image, position)
  datapoints, the partner of x's image i at position s is y's image pi(i) at the same position
  s, so the null keeps whatever the two models share through position alone (padding, the image
  frame) and removes only what they share about image content. Over streamed activations the
  images are shuffled within each image batch (an image batch of one joins the batch before
  it), which is a valid, slightly restricted permutation test; images of one patient that fall
  in one batch may be paired, which can only raise the null (conservative).
- `NullCovariance` accumulates, in the same pass over the images as the real statistics, the
  cross co-moments of x with each of K permuted versions of y. When the permuted rows of y are
  the rows of y in another order (vectors, pooled maps, or every position kept), yy is shared
  with the real statistics and only xy is new: O(K p q) memory, and the CCA decomposition of
  each side is computed once (see `cca`).
- `summarize` / `above_chance`: a value stands above chance when it exceeds the null mean by
  more than `ABOVE_CHANCE_SD` null standard deviations (3 sd; for a near-Gaussian null about a
  one-sided p of 0.0013). With fewer than 2 permutations there is no null and no verdict.
- `datapoints_per_feature`: n / (p + q), the quantity that sets how inflated CCA is by chance;
  values below `LOW_DATAPOINTS_PER_FEATURE` are flagged with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from transfusion_tf.analysis import cca as cca_lib

DEFAULT_PERMUTATIONS = 10
ABOVE_CHANCE_SD = 3.0
LOW_DATAPOINTS_PER_FEATURE = 10.0


def derangement(rng: np.random.Generator, n: int) -> np.ndarray:
    """A uniformly drawn permutation of range(n) with no fixed point (n >= 2), by rejection."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 elements, got {n}")
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


def group_derangement(rng: np.random.Generator, *, rows: int, rows_per_group: int) -> np.ndarray:
    """Row indices [rows] that move consecutive groups of `rows_per_group` rows as blocks.

    Groups (e.g. the positions of one image) are deranged; rows keep their order in a group.
    """
    if rows_per_group < 1 or rows % rows_per_group:
        raise ValueError(
            f"{rows} rows do not split into groups of {rows_per_group} (rows per image)"
        )
    groups = rows // rows_per_group
    order = derangement(rng, groups)
    return (order[:, None] * rows_per_group + np.arange(rows_per_group)[None, :]).reshape(-1)


def datapoints_per_feature(n: int, x_features: int, y_features: int) -> float:
    """n / (p + q): how many datapoints per feature the two sides have together."""
    return float(n) / float(x_features + y_features)


def summarize(samples: Sequence[float | None]) -> dict[str, float | int | None]:
    """{"mean", "sd", "permutations"} of a measure's null samples (None samples left out).

    sd is the sample standard deviation (ddof=1); with fewer than 2 samples mean/sd are None.
    """
    values = np.asarray([s for s in samples if s is not None], dtype=np.float64)
    if values.size < 2:
        return {"mean": None, "sd": None, "permutations": int(values.size)}
    return {
        "mean": float(values.mean()),
        "sd": float(values.std(ddof=1)),
        "permutations": int(values.size),
    }


def above_chance(value: float | None, null: dict[str, float | int | None]) -> bool | None:
    """True when `value` > null mean + ABOVE_CHANCE_SD * null sd; None without value or null."""
    if value is None or null.get("mean") is None or null.get("sd") is None:
        return None
    return bool(value > null["mean"] + ABOVE_CHANCE_SD * null["sd"])


class NullCovariance:
    """Cross co-moments of x [rows, p] with K permuted versions of y [rows, q], streamed.

    `update(x, y_permuted)` with one [rows, q] array per permutation, for the same x rows that
    the real accumulator gets. `shared_y`: the permuted y rows are a reordering of the real y
    rows within each update, so their co-moment is the real yy and is not accumulated.
    Merging uses the pairwise update of Chan, Golub and LeVeque, as the real accumulator does.
    """

    def __init__(
        self, x_features: int, y_features: int, *, permutations: int, shared_y: bool
    ) -> None:
        self.x_features = int(x_features)
        self.y_features = int(y_features)
        self.permutations = int(permutations)
        self.shared_y = bool(shared_y)
        self.n = 0
        self._mean_x = np.zeros(self.x_features)
        self._mean_y = np.zeros((self.permutations, self.y_features))
        self._xy = np.zeros((self.permutations, self.x_features, self.y_features))
        self._yy = (
            None
            if self.shared_y
            else np.zeros((self.permutations, self.y_features, self.y_features))
        )

    def update(self, x: np.ndarray, y_permuted: Sequence[np.ndarray]) -> None:
        """Adds x [b, p] paired with each permutation's y rows [b, q]."""
        if len(y_permuted) != self.permutations:
            raise ValueError(f"expected {self.permutations} permuted y, got {len(y_permuted)}")
        n_b = x.shape[0]
        n = self.n + n_b
        scale = self.n * n_b / n
        mean_xb = x.mean(axis=0)
        xc = x - mean_xb
        delta_x = mean_xb - self._mean_x
        for k, y in enumerate(y_permuted):
            mean_yb = y.mean(axis=0)
            yc = y - mean_yb
            delta_y = mean_yb - self._mean_y[k]
            self._xy[k] += xc.T @ yc
            self._xy[k] += np.outer(delta_x, delta_y) * scale
            if self._yy is not None:
                self._yy[k] += np.dot(yc.T, yc)
                self._yy[k] += np.outer(delta_y, delta_y) * scale
            self._mean_y[k] += delta_y * (n_b / n)
        self._mean_x += delta_x * (n_b / n)
        self.n = n

    def covariances(self, real: cca_lib.JointCovariance) -> list[cca_lib.JointCovariance]:
        """One JointCovariance per permutation, sharing xx (and yy if shared) with `real`."""
        if real.n != self.n:
            raise ValueError(f"null saw {self.n} rows but the real statistics {real.n}")
        return [
            cca_lib.JointCovariance(
                n=self.n,
                xx=real.xx,
                yy=real.yy if self._yy is None else self._yy[k],
                xy=self._xy[k],
            )
            for k in range(self.permutations)
        ]


def array_null_samples(
    x: np.ndarray,
    y: np.ndarray,
    *,
    names: Sequence[str],
    options,
    permutations: int,
    rows_per_group: int = 1,
    seed: int = 0,
    gram_rows: np.ndarray | None = None,
) -> dict[str, list[float | None]]:
    """K null values of each measure of in-memory x [n, p] and y [n, q].

    Permutation k derangs y's groups of `rows_per_group` consecutive rows (one image's positions)
    with a generator seeded by (seed, k). The co-moment measures reuse the real xx and yy (the
    rows of y are only reordered) and recompute xy; the others are computed on (x, y[perm]),
    RBF CKA on the rows `gram_rows` when given (the subsample of the real value). A measure
    undefined on a permutation gives None there.
    """
    from transfusion_tf.analysis import measures as measures_lib
    from transfusion_tf.analysis.common import SimilarityError

    cov = cca_lib.joint_covariance(x, y)
    xc = x - x.mean(axis=0, keepdims=True)
    yc = y - y.mean(axis=0, keepdims=True)
    samples: dict[str, list[float | None]] = {name: [] for name in names}
    for k in range(permutations):
        perm = group_derangement(
            np.random.default_rng([seed, k]), rows=x.shape[0], rows_per_group=rows_per_group
        )
        permuted = cca_lib.JointCovariance(n=cov.n, xx=cov.xx, yy=cov.yy, xy=xc.T @ yc[perm])
        y_perm = y[perm]
        for name in names:
            measure = measures_lib.MEASURES.get(name)
            try:
                if measure.from_covariance is not None:
                    value = measure.from_covariance(permuted, options)
                elif gram_rows is not None and name.startswith("cka_rbf"):
                    value = measure.compute(x[gram_rows], y_perm[gram_rows], options)
                else:
                    value = measure.compute(x, y_perm, options)
                samples[name].append(float(value))
            except SimilarityError:
                samples[name].append(None)
    return samples
