"""Canonical correlation analysis of two activation sets: CCA, SVCCA and PWCCA, in float64.

Convention: activations are [examples, features] matrices x [n, p] and y [n, q] with the same
examples in the same order. Everything here is computed from the centred co-moment matrices of
(x, y) (`JointCovariance`), so the same code serves in-memory arrays and the streaming
accumulators of `transfusion_tf.analysis.streaming` (memory O((p + q)^2), independent of n).

- CCA (Hotelling 1936): whiten x and y by the eigen-decomposition of their covariances, then the
  singular values of the whitened cross-covariance are the canonical correlations rho_1 >= ... >=
  rho_k, k = min(rank x, rank y). Directions whose variance is below `rtol` times the largest
  (zero-variance neurons, exactly collinear neurons) are dropped instead of inverted.
- SVCCA (Raghu et al. 2017): keep the top `dims` principal directions of each side (an integer
  count, or a float in (0, 1] = fraction of variance kept), then CCA. The principal directions come
  from the same covariance, so the data is read once.
- PWCCA (Morcos et al. 2018): the mean of rho_i weighted by alpha_i = sum_j |<h_i, x_j>|, where h_i
  is the i-th canonical variate of one side (unit norm) and x_j that side's j-th centred neuron.
  Which side: Morcos et al. (and google/svcca's `compute_pwcca`) weight by the side with fewer
  neurons; we do the same (`weighting="fewer"`, the default, counting the directions that enter
  the CCA), and where both sides have as many, the value is the mean of the two one-sided values,
  so PWCCA never depends on the order of its arguments. `weighting="x"` / `"y"` force a side.
  Unlike `compute_pwcca`, which projects activations rotated by the SVD factor u without the
  whitening by Sigma_xx^(-1/2), the h_i here are the canonical variates themselves.

The eigen-decompositions of the two co-moment matrices and the CCA of a `JointCovariance` are
cached by content (a few entries), so a permutation null, whose covariances share xx and yy with
the real one and differ only in xy, decomposes each side once.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib

import numpy as np
from absl import logging

from transfusion_tf.analysis.common import SimilarityError, as_activation_pair

DEFAULT_RTOL = 1e-10  # variance below rtol * largest variance counts as no direction
PWCCA_WEIGHTINGS = ("fewer", "x", "y")
_CACHE_ENTRIES = 6


def _fingerprint(array: np.ndarray) -> str:
    data = np.ascontiguousarray(array)
    digest = hashlib.blake2b(memoryview(data).cast("B"), digest_size=16)
    digest.update(repr((data.shape, data.dtype.str)).encode())
    return digest.hexdigest()


class _LRU:
    """A small least-recently-used cache (values are treated as read-only)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: collections.OrderedDict = collections.OrderedDict()

    def get(self, key, make):
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = make()
        self._items[key] = value
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        self._items.clear()


_WHITENERS = _LRU(_CACHE_ENTRIES)
_RESULTS = _LRU(_CACHE_ENTRIES)


def clear_caches() -> None:
    """Forgets every cached decomposition (benchmarks time the computation itself)."""
    _WHITENERS.clear()
    _RESULTS.clear()


@dataclasses.dataclass(frozen=True)
class JointCovariance:
    """Centred co-moments of x [n, p] and y [n, q]: sums of outer products around the means.

    xx [p, p] = Xc^T Xc, yy [q, q] = Yc^T Yc, xy [p, q] = Xc^T Yc with Xc = x - mean(x).
    Dividing by n - 1 gives covariances; every measure here is invariant to that scale.
    """

    n: int
    xx: np.ndarray
    yy: np.ndarray
    xy: np.ndarray

    @property
    def x_features(self) -> int:
        return int(self.xx.shape[0])

    @property
    def y_features(self) -> int:
        return int(self.yy.shape[0])

    @functools.cached_property
    def fingerprints(self) -> tuple[str, str, str]:
        """Content hashes of (xx, yy, xy), the keys of the decomposition caches."""
        return _fingerprint(self.xx), _fingerprint(self.yy), _fingerprint(self.xy)


@dataclasses.dataclass(frozen=True)
class CCAResult:
    """Canonical correlations and the weights that produce the canonical variates.

    correlations [k]: descending, in [0, 1]. x_weights [p, k] and y_weights [q, k]: the centred
    activations times these weights are the canonical variates, orthonormal columns (unit norm,
    mutually uncorrelated). x_dims / y_dims: directions of each side that entered the CCA (the
    rank after dropping degenerate directions, or the SVCCA dimension).
    """

    correlations: np.ndarray
    x_weights: np.ndarray
    y_weights: np.ndarray
    x_dims: int
    y_dims: int

    @property
    def mean(self) -> float:
        """Mean canonical correlation over all k directions."""
        return float(np.mean(self.correlations))


@dataclasses.dataclass(frozen=True)
class PWCCAResult:
    """Projection-weighted CCA: `value` = sum(weights * correlations), weights summing to 1."""

    value: float
    weights: np.ndarray
    correlations: np.ndarray


def joint_covariance(x: np.ndarray, y: np.ndarray) -> JointCovariance:
    """Centred co-moments of activations x [n, p] and y [n, q] (checked, float64)."""
    x, y = as_activation_pair(x, y)
    xc = x - x.mean(axis=0, keepdims=True)
    yc = y - y.mean(axis=0, keepdims=True)
    # np.dot(a.T, a) runs BLAS syrk (half the work of a general product).
    return JointCovariance(n=x.shape[0], xx=np.dot(xc.T, xc), yy=np.dot(yc.T, yc), xy=xc.T @ yc)


def _check_dims(dims: int | float | None) -> None:
    if dims is None:
        return
    if isinstance(dims, bool) or not isinstance(dims, int | float | np.integer | np.floating):
        raise SimilarityError(f"SVCCA dims must be an int or a float, got {dims!r}")
    if isinstance(dims, int | np.integer):
        if dims < 1:
            raise SimilarityError(f"SVCCA dims must be >= 1 directions, got {dims}")
    elif not 0.0 < dims <= 1.0:
        raise SimilarityError(f"SVCCA kept-variance fraction must be in (0, 1], got {dims}")


def _whitener(
    comoment: np.ndarray, *, side: str, dims: int | float | None, rtol: float
) -> np.ndarray:
    """Returns W [features, d] with W^T comoment W = I over the kept principal directions.

    Directions are the eigenvectors of `comoment` in order of decreasing variance; those below
    rtol * largest are dropped; `dims` (SVCCA) keeps the top `dims` (int) or the fewest that hold
    that fraction of the variance (float).
    """
    eigvals, eigvecs = np.linalg.eigh(comoment)
    eigvals, eigvecs = eigvals[::-1], eigvecs[:, ::-1]
    top = float(eigvals[0]) if eigvals.size else 0.0
    if not top > 0.0:
        raise SimilarityError(
            f"{side}: activations have zero variance (every neuron is constant over the "
            "examples); similarity is undefined"
        )
    keep = int(np.count_nonzero(eigvals > rtol * top))
    if isinstance(dims, int | np.integer):
        keep = min(keep, int(dims))
    elif dims is not None:
        kept = np.clip(eigvals[:keep], 0.0, None)
        fractions = np.cumsum(kept) / np.sum(kept)
        # Smallest k whose top-k directions hold `dims` of the variance (rounding-tolerant).
        keep = min(keep, int(np.searchsorted(fractions, dims - 1e-12)) + 1)
    return eigvecs[:, :keep] / np.sqrt(eigvals[:keep])


def cca_from_covariance(
    cov: JointCovariance,
    *,
    x_dims: int | float | None = None,
    y_dims: int | float | None = None,
    rtol: float = DEFAULT_RTOL,
) -> CCAResult:
    """CCA of the activations summarised by `cov`; x_dims/y_dims give SVCCA's reduction.

    Raises SimilarityError when a side has no variance or there are too few examples.
    """
    if cov.n < 2:
        raise SimilarityError(f"CCA needs at least 2 examples, got {cov.n}")
    _check_dims(x_dims)
    _check_dims(y_dims)
    hx, hy, hxy = cov.fingerprints

    def compute() -> CCAResult:
        result = _cca(cov, x_dims=x_dims, y_dims=y_dims, rtol=rtol)
        for array in (result.correlations, result.x_weights, result.y_weights):
            array.flags.writeable = False
        return result

    return _RESULTS.get((hx, hy, hxy, cov.n, _dims_key(x_dims), _dims_key(y_dims), rtol), compute)


def _dims_key(dims: int | float | None) -> tuple[str, float | None]:
    # 1 (one direction) and 1.0 (all the variance) must not share a cache entry.
    return type(dims).__name__, None if dims is None else float(dims)


def _cached_whitener(
    comoment: np.ndarray, key: str, *, side: str, dims: int | float | None, rtol: float
) -> np.ndarray:
    def compute() -> np.ndarray:
        w = _whitener(comoment, side=side, dims=dims, rtol=rtol)
        w.flags.writeable = False
        return w

    return _WHITENERS.get((key, _dims_key(dims), rtol), compute)


def _cca(
    cov: JointCovariance, *, x_dims: int | float | None, y_dims: int | float | None, rtol: float
) -> CCAResult:
    hx, hy, _ = cov.fingerprints
    wx = _cached_whitener(cov.xx, hx, side="x", dims=x_dims, rtol=rtol)
    wy = _cached_whitener(cov.yy, hy, side="y", dims=y_dims, rtol=rtol)
    if wx.shape[1] + wy.shape[1] >= cov.n:
        logging.log_first_n(
            logging.WARNING,
            "CCA with %d + %d directions on only %d examples: canonical correlations are "
            "inflated towards 1; use more examples or fewer (SVCCA) directions",
            5,
            wx.shape[1],
            wy.shape[1],
            cov.n,
        )
    u, s, vt = np.linalg.svd(wx.T @ cov.xy @ wy, full_matrices=False)
    k = s.shape[0]
    return CCAResult(
        correlations=np.clip(s, 0.0, 1.0),
        x_weights=wx @ u[:, :k],
        y_weights=wy @ vt[:k].T,
        x_dims=int(wx.shape[1]),
        y_dims=int(wy.shape[1]),
    )


def _projection_weights(weights: np.ndarray, comoment: np.ndarray) -> np.ndarray:
    projections = weights.T @ comoment  # [k, features]: <h_i, x_j>
    alpha = np.sum(np.abs(projections), axis=1)
    return alpha / np.sum(alpha)


def pwcca_from_covariance(
    cov: JointCovariance, *, rtol: float = DEFAULT_RTOL, weighting: str = "fewer"
) -> PWCCAResult:
    """PWCCA (Morcos et al. 2018) from co-moments; `weighting` picks the side (module doc).

    With unit-norm canonical variates h_i = Xc a_i, <h_i, x_j> = (a_i^T Xc^T Xc)_j, so the
    weights need only the co-moments. With "fewer" on sides of equal size, `weights` is the mean
    of the two sides' weights and `value` the mean of the two one-sided values.
    """
    if weighting not in PWCCA_WEIGHTINGS:
        raise SimilarityError(
            f"PWCCA weighting {weighting!r}: choose one of {', '.join(PWCCA_WEIGHTINGS)}"
        )
    result = cca_from_covariance(cov, rtol=rtol)
    if weighting == "fewer" and result.x_dims != result.y_dims:
        weighting = "x" if result.x_dims < result.y_dims else "y"
    sides = {"x": ("x",), "y": ("y",), "fewer": ("x", "y")}[weighting]
    per_side = [
        _projection_weights(result.x_weights, cov.xx)
        if side == "x"
        else _projection_weights(result.y_weights, cov.yy)
        for side in sides
    ]
    weights = np.mean(per_side, axis=0)
    return PWCCAResult(
        value=float(np.mean([np.sum(w * result.correlations) for w in per_side])),
        weights=weights,
        correlations=result.correlations,
    )


def cca(x: np.ndarray, y: np.ndarray, *, rtol: float = DEFAULT_RTOL) -> CCAResult:
    """All canonical correlations of x [n, p] and y [n, q]."""
    return cca_from_covariance(joint_covariance(x, y), rtol=rtol)


def svcca(
    x: np.ndarray,
    y: np.ndarray,
    *,
    dims: int | float = 0.99,
    y_dims: int | float | None = None,
    rtol: float = DEFAULT_RTOL,
) -> CCAResult:
    """SVCCA of x [n, p] and y [n, q]: top principal directions of each side, then CCA.

    `dims` (for x, and for y unless `y_dims` is given): an int keeps that many directions
    (fewer when the rank is lower; `CCAResult.x_dims` says how many), a float in (0, 1] keeps
    the fewest directions that explain that fraction of the variance.
    """
    return cca_from_covariance(
        joint_covariance(x, y),
        x_dims=dims,
        y_dims=dims if y_dims is None else y_dims,
        rtol=rtol,
    )


def pwcca(
    x: np.ndarray, y: np.ndarray, *, rtol: float = DEFAULT_RTOL, weighting: str = "fewer"
) -> PWCCAResult:
    """Projection-weighted CCA of x [n, p] and y [n, q]; `weighting` as in the module doc."""
    return pwcca_from_covariance(joint_covariance(x, y), rtol=rtol, weighting=weighting)
