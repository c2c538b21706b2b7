"""Similarity over activation sets too large for memory: accumulate statistics batch by batch.

- `CovarianceAccumulator`: running means and centred co-moments of (x [b, p], y [b, q]) rows,
  merged per batch with the pairwise update of Chan, Golub and LeVeque (1979), which stays
  accurate when the means are large. Its memory is O((p + q)^2), independent of the number of
  rows, and it gives CCA, SVCCA, PWCCA and biased linear CKA exactly as the in-memory functions
  do on the concatenated rows.
- `MinibatchCKA`: minibatch CKA (Nguyen, Raghu and Kornblith 2021): the unbiased HSIC estimator
  of each batch, averaged over batches, then normalised; linear or RBF kernel.
- `RowMinibatchCKA`: the same over fixed-size minibatches of rows, whatever the sizes of the
  batches fed to it (so a result does not depend on how the stream was batched).
"""

from __future__ import annotations

import copy

import numpy as np

from transfusion_tf.analysis import cca as cca_lib
from transfusion_tf.analysis import cka as cka_lib
from transfusion_tf.analysis.common import SimilarityError, as_activation_pair


class CovarianceAccumulator:
    """Running sufficient statistics of CCA-family measures and linear CKA.

    update(x [b, p], y [b, q]) any number of times (rows are datapoints), then read the
    measures. `merge` combines accumulators filled on disjoint rows (e.g. per worker).
    """

    def __init__(self, x_features: int, y_features: int) -> None:
        if x_features < 1 or y_features < 1:
            raise SimilarityError(
                f"feature counts must be >= 1, got x={x_features}, y={y_features}"
            )
        self.x_features = int(x_features)
        self.y_features = int(y_features)
        dim = self.x_features + self.y_features
        self.n = 0
        self._mean = np.zeros(dim, dtype=np.float64)
        self._comoment = np.zeros((dim, dim), dtype=np.float64)

    def _merge_stats(self, n_b: int, mean_b: np.ndarray, comoment_b: np.ndarray) -> None:
        n_a = self.n
        n = n_a + n_b
        delta = mean_b - self._mean
        self._mean += delta * (n_b / n)
        self._comoment += comoment_b
        self._comoment += np.outer(delta, delta) * (n_a * n_b / n)
        self.n = n

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        """Adds the rows of x [b, p] and y [b, q] (same b, same order)."""
        x, y = as_activation_pair(x, y, min_examples=1)
        if x.shape[1] != self.x_features or y.shape[1] != self.y_features:
            raise SimilarityError(
                f"batch has {x.shape[1]} x and {y.shape[1]} y features; this accumulator "
                f"expects {self.x_features} and {self.y_features}"
            )
        z = np.concatenate([x, y], axis=1)
        mean_b = z.mean(axis=0)
        zc = z - mean_b
        # np.dot of a matrix with its own transpose runs BLAS syrk: half the work of a matmul.
        self._merge_stats(z.shape[0], mean_b, np.dot(zc.T, zc))

    def merge(self, other: CovarianceAccumulator) -> None:
        """Adds the statistics of an accumulator filled on other rows."""
        if (other.x_features, other.y_features) != (self.x_features, self.y_features):
            raise SimilarityError(
                f"cannot merge accumulators of ({other.x_features}, {other.y_features}) and "
                f"({self.x_features}, {self.y_features}) features"
            )
        if other.n:
            self._merge_stats(other.n, other._mean, other._comoment)

    def covariance(self) -> cca_lib.JointCovariance:
        """The centred co-moments of every row seen so far."""
        if self.n < 2:
            raise SimilarityError(f"need at least 2 rows to compare, got {self.n}")
        p = self.x_features
        return cca_lib.JointCovariance(
            n=self.n,
            xx=self._comoment[:p, :p].copy(),
            yy=self._comoment[p:, p:].copy(),
            xy=self._comoment[:p, p:].copy(),
        )

    def cca(self, *, rtol: float = cca_lib.DEFAULT_RTOL) -> cca_lib.CCAResult:
        return cca_lib.cca_from_covariance(self.covariance(), rtol=rtol)

    def svcca(
        self, *, dims: int | float = 0.99, rtol: float = cca_lib.DEFAULT_RTOL
    ) -> cca_lib.CCAResult:
        return cca_lib.cca_from_covariance(self.covariance(), x_dims=dims, y_dims=dims, rtol=rtol)

    def pwcca(self, *, rtol: float = cca_lib.DEFAULT_RTOL) -> cca_lib.PWCCAResult:
        return cca_lib.pwcca_from_covariance(self.covariance(), rtol=rtol)

    def linear_cka(self) -> float:
        return cka_lib.linear_cka_from_covariance(self.covariance())


KERNELS = ("linear", "rbf")


class MinibatchCKA:
    """Minibatch CKA: mean over batches of unbiased HSIC, normalised at the end.

    CKA_mb = mean_b HSIC_1(K_b, L_b) / sqrt(mean_b HSIC_1(K_b, K_b) mean_b HSIC_1(L_b, L_b)).
    Each batch needs at least 4 rows. With one batch it equals the debiased CKA.
    """

    def __init__(self, *, kernel: str = "linear", rbf_threshold: float = 1.0) -> None:
        if kernel not in KERNELS:
            raise SimilarityError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")
        self.kernel = kernel
        self.rbf_threshold = rbf_threshold
        self.batches = 0
        self._hsic = np.zeros(3, dtype=np.float64)  # xy, xx, yy

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        """Adds one batch x [b, p], y [b, q] with b >= 4."""
        x, y = as_activation_pair(x, y, min_examples=4)
        n = x.shape[0]
        if self.kernel == "linear":
            # Feature space on centred features: exact, and no b x b Gram of large dot products.
            terms = np.array(cka_lib.linear_hsic_terms(x, y, debiased=True)) / (n * (n - 3))
        else:
            gx = cka_lib.gram_rbf(x, threshold=self.rbf_threshold)
            gy = cka_lib.gram_rbf(y, threshold=self.rbf_threshold)
            terms = np.array(
                [
                    cka_lib.hsic_unbiased(gx, gy),
                    cka_lib.hsic_unbiased(gx, gx),
                    cka_lib.hsic_unbiased(gy, gy),
                ]
            )
        self._hsic += terms
        self.batches += 1

    def value(self) -> float:
        if self.batches == 0:
            raise SimilarityError("minibatch CKA: no batch was added")
        xy, xx, yy = self._hsic / self.batches
        return cka_lib.cka_from_hsic(xy, xx, yy)


class RowMinibatchCKA:
    """Minibatch CKA over consecutive minibatches of exactly `rows` rows.

    `update(x [b, p], y [b, q])` with any b buffers rows and adds every full minibatch to a
    `MinibatchCKA`; `value()` also counts the rows left over as one last, smaller minibatch when
    there are at least 4 of them (fewer are left out). Memory: O(rows * (p + q)).
    """

    def __init__(self, *, rows: int = 1024, kernel: str = "linear", rbf_threshold: float = 1.0):
        if rows < 4:
            raise SimilarityError(f"minibatch CKA needs minibatches of >= 4 rows, got {rows}")
        self.rows = int(rows)
        self._cka = MinibatchCKA(kernel=kernel, rbf_threshold=rbf_threshold)
        self._x: list[np.ndarray] = []
        self._y: list[np.ndarray] = []
        self._buffered = 0

    @property
    def batches(self) -> int:
        """Full minibatches added so far."""
        return self._cka.batches

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        """Adds the rows of x [b, p] and y [b, q] (same b, same order)."""
        x, y = as_activation_pair(x, y, min_examples=1)
        self._x.append(x)
        self._y.append(y)
        self._buffered += x.shape[0]
        if self._buffered < self.rows:
            return
        x_all, y_all = np.concatenate(self._x), np.concatenate(self._y)
        full = (self._buffered // self.rows) * self.rows
        for start in range(0, full, self.rows):
            self._cka.update(x_all[start : start + self.rows], y_all[start : start + self.rows])
        self._x, self._y = [x_all[full:]], [y_all[full:]]
        self._buffered -= full

    def value(self) -> float:
        """Minibatch CKA of every row added (the state is left unchanged)."""
        cka = self._cka
        if self._buffered >= 4:
            cka = copy.deepcopy(self._cka)
            cka.update(np.concatenate(self._x), np.concatenate(self._y))
        return cka.value()
