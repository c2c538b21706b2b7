"""Centered kernel alignment (Kornblith et al. 2019): linear and RBF CKA, biased and debiased.

Convention: x [n, p] and y [n, q], examples x features, float64.

CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) for Gram matrices K, L [n, n].
- biased: HSIC from doubly-centred Gram matrices (tr(HKHL)); for linear kernels this is
  ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), computed in feature space (and from
  co-moments, so it streams).
- debiased: the unbiased HSIC estimator of Song et al. (2012), as in the reference CKA code;
  needs n >= 4 examples.
- RBF: k(a, b) = exp(-||a - b||^2 / (2 threshold^2 m)) with m the median squared distance over
  all pairs (the reference code's bandwidth rule).
"""

from __future__ import annotations

import numpy as np

from transfusion_tf.analysis.cca import JointCovariance
from transfusion_tf.analysis.common import SimilarityError, as_activation_pair, as_activations


def gram_linear(x: np.ndarray) -> np.ndarray:
    """Linear Gram matrix [n, n] of x [n, p]."""
    x = as_activations(x, name="x")
    return x @ x.T


def gram_rbf(x: np.ndarray, *, threshold: float = 1.0) -> np.ndarray:
    """RBF Gram matrix [n, n] of x [n, p]; bandwidth = threshold * sqrt(median squared distance)."""
    if not threshold > 0:
        raise SimilarityError(f"RBF threshold must be > 0, got {threshold}")
    x = as_activations(x, name="x")
    dots = x @ x.T
    sq_norms = np.diag(dots)
    sq_distances = np.maximum(sq_norms[:, None] + sq_norms[None, :] - 2.0 * dots, 0.0)
    median = float(np.median(sq_distances))
    if not median > 0:
        raise SimilarityError(
            "RBF kernel: the median squared distance between examples is 0 (most examples "
            "are identical); the bandwidth is undefined"
        )
    return np.exp(-sq_distances / (2.0 * threshold**2 * median))


def center_gram(gram: np.ndarray, *, unbiased: bool = False) -> np.ndarray:
    """Centres a symmetric Gram matrix [n, n]; `unbiased` gives the U-statistic form.

    The inner product of two unbiased-centred Grams is (n (n - 3)) times Song et al.'s unbiased
    HSIC estimator.
    """
    gram = np.array(gram, dtype=np.float64)
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise SimilarityError(f"Gram matrix must be square, got shape {gram.shape}")
    if not np.allclose(gram, gram.T):
        raise SimilarityError("Gram matrix must be symmetric")
    n = gram.shape[0]
    if unbiased:
        if n < 4:
            raise SimilarityError(f"unbiased HSIC needs at least 4 examples, got {n}")
        np.fill_diagonal(gram, 0.0)
        means = np.sum(gram, axis=0) / (n - 2)
        means -= np.sum(means) / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        np.fill_diagonal(gram, 0.0)
    else:
        means = np.mean(gram, axis=0)
        means -= np.mean(means) / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram


def hsic_unbiased(gram_x: np.ndarray, gram_y: np.ndarray) -> float:
    """Song et al. (2012) unbiased HSIC estimator of two Gram matrices [n, n], n >= 4.

    HSIC_1 = [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n (n-3)),
    with K~, L~ the Grams with zeroed diagonals.
    """
    k = np.array(gram_x, dtype=np.float64)
    lm = np.array(gram_y, dtype=np.float64)
    n = k.shape[0]
    if n < 4:
        raise SimilarityError(f"unbiased HSIC needs at least 4 examples, got {n}")
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(lm, 0.0)
    k_sum = k.sum(axis=0)
    l_sum = lm.sum(axis=0)
    trace = float(np.sum(k * lm))
    total = float(k_sum.sum() * l_sum.sum()) / ((n - 1) * (n - 2))
    cross = 2.0 * float(k_sum @ l_sum) / (n - 2)
    return (trace + total - cross) / (n * (n - 3))


def cka_from_hsic(hsic_xy: float, hsic_xx: float, hsic_yy: float) -> float:
    """HSIC(x, y) / sqrt(HSIC(x, x) HSIC(y, y)); SimilarityError when a self-term is <= 0."""
    for side, value in (("x", hsic_xx), ("y", hsic_yy)):
        if not value > 0:
            raise SimilarityError(
                f"CKA undefined: the self-similarity HSIC({side}, {side}) is {value:.3g} <= 0 "
                "(constant activations, or too few examples for the debiased estimator)"
            )
    return float(hsic_xy / np.sqrt(hsic_xx * hsic_yy))


def cka(gram_x: np.ndarray, gram_y: np.ndarray, *, debiased: bool = False) -> float:
    """CKA of two Gram matrices [n, n] (any kernel)."""
    if np.shape(gram_x) != np.shape(gram_y):
        raise SimilarityError(
            f"Gram matrices differ in shape: {np.shape(gram_x)} and {np.shape(gram_y)}"
        )
    kx = center_gram(gram_x, unbiased=debiased)
    ky = center_gram(gram_y, unbiased=debiased)
    return cka_from_hsic(float(kx.ravel() @ ky.ravel()), float(np.sum(kx**2)), float(np.sum(ky**2)))


def _debiased_dot(
    xty_sq: float, rows_x: np.ndarray, rows_y: np.ndarray, norm_x: float, norm_y: float, n: int
) -> float:
    """n (n - 3) x the unbiased linear HSIC, from feature-space quantities of centred data."""
    return xty_sq - n / (n - 2.0) * float(rows_x @ rows_y) + norm_x * norm_y / ((n - 1) * (n - 2))


def linear_hsic_terms(
    x: np.ndarray, y: np.ndarray, *, debiased: bool = False
) -> tuple[float, float, float]:
    """(HSIC(x, y), HSIC(x, x), HSIC(y, y)) of a linear kernel, up to one common factor.

    Computed in feature space on centred x [n, p] and y [n, q] (O(n (p + q)^2), no n x n Gram);
    `debiased` gives n (n - 3) times Song et al.'s unbiased estimator (n >= 4).
    """
    xc = x - x.mean(axis=0, keepdims=True)
    yc = y - y.mean(axis=0, keepdims=True)
    xy = float(np.sum((xc.T @ yc) ** 2))
    xx = float(np.sum((xc.T @ xc) ** 2))
    yy = float(np.sum((yc.T @ yc) ** 2))
    if debiased:
        n = x.shape[0]
        if n < 4:
            raise SimilarityError(f"unbiased HSIC needs at least 4 examples, got {n}")
        rows_x = np.einsum("ij,ij->i", xc, xc)
        rows_y = np.einsum("ij,ij->i", yc, yc)
        norm_x, norm_y = float(rows_x.sum()), float(rows_y.sum())
        xy = _debiased_dot(xy, rows_x, rows_y, norm_x, norm_y, n)
        xx = _debiased_dot(xx, rows_x, rows_x, norm_x, norm_x, n)
        yy = _debiased_dot(yy, rows_y, rows_y, norm_y, norm_y, n)
    return xy, xx, yy


def linear_cka(x: np.ndarray, y: np.ndarray, *, debiased: bool = False) -> float:
    """Linear CKA of x [n, p] and y [n, q] in feature space (O(n (p + q)^2), no n x n Gram)."""
    x, y = as_activation_pair(x, y, min_examples=4 if debiased else 2)
    return cka_from_hsic(*linear_hsic_terms(x, y, debiased=debiased))


def linear_cka_from_covariance(cov: JointCovariance) -> float:
    """Biased linear CKA from co-moments: ||Sxy||_F^2 / (||Sxx||_F ||Syy||_F)."""
    return cka_from_hsic(
        float(np.sum(cov.xy**2)), float(np.sum(cov.xx**2)), float(np.sum(cov.yy**2))
    )


def rbf_cka(
    x: np.ndarray, y: np.ndarray, *, threshold: float = 1.0, debiased: bool = False
) -> float:
    """RBF-kernel CKA of x [n, p] and y [n, q] (builds two n x n Gram matrices)."""
    x, y = as_activation_pair(x, y, min_examples=4 if debiased else 2)
    return cka(
        gram_rbf(x, threshold=threshold), gram_rbf(y, threshold=threshold), debiased=debiased
    )
