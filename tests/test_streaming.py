"""Streaming similarity (transfusion_tf.analysis.streaming) equals the in-memory result."""

import numpy as np
import pytest

from transfusion_tf.analysis import cca, cka, streaming
from transfusion_tf.analysis.common import SimilarityError


@pytest.fixture(scope="module")
def large_mean_pair():
    """Activations with large means and unequal scales (the case naive sums get wrong)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 12)) @ rng.normal(size=(12, 12)) + 1e3
    y = x[:, :6] @ rng.normal(size=(6, 8)) + rng.normal(size=(3000, 8)) * 40.0 - 5e2
    return x, y


def fill(x, y, batch_sizes):
    acc = streaming.CovarianceAccumulator(x.shape[1], y.shape[1])
    start = 0
    for size in batch_sizes:
        acc.update(x[start : start + size], y[start : start + size])
        start += size
    assert start == x.shape[0]
    return acc


def test_streaming_matches_in_memory(large_mean_pair):
    x, y = large_mean_pair
    acc = fill(x, y, [1, 999, 500, 1000, 500])
    assert acc.n == 3000
    np.testing.assert_allclose(acc.cca().correlations, cca.cca(x, y).correlations, atol=1e-8)
    np.testing.assert_allclose(
        acc.svcca(dims=5).correlations, cca.svcca(x, y, dims=5).correlations, atol=1e-8
    )
    assert acc.pwcca().value == pytest.approx(cca.pwcca(x, y).value, abs=1e-8)
    assert acc.linear_cka() == pytest.approx(cka.linear_cka(x, y), abs=1e-8)


def test_merge_equals_one_pass(large_mean_pair):
    x, y = large_mean_pair
    first, second = fill(x[:1700], y[:1700], [1700]), fill(x[1700:], y[1700:], [600, 700])
    first.merge(second)
    first.merge(streaming.CovarianceAccumulator(12, 8))  # empty: no-op
    one_pass = fill(x, y, [3000])
    np.testing.assert_allclose(
        first.covariance().xx, one_pass.covariance().xx, rtol=1e-10, atol=1e-6
    )
    assert first.cca().mean == pytest.approx(one_pass.cca().mean, abs=1e-10)


def test_memory_depends_on_features_only():
    rng = np.random.default_rng(1)
    acc = streaming.CovarianceAccumulator(5, 3)
    sizes = {k: v.nbytes for k, v in vars(acc).items() if isinstance(v, np.ndarray)}
    for _ in range(20):
        acc.update(rng.normal(size=(256, 5)), rng.normal(size=(256, 3)))
    assert {k: v.nbytes for k, v in vars(acc).items() if isinstance(v, np.ndarray)} == sizes
    assert sum(sizes.values()) == 8 * (8 + 8 * 8)


def test_accumulator_errors():
    acc = streaming.CovarianceAccumulator(3, 2)
    with pytest.raises(SimilarityError, match="at least 2 rows"):
        acc.cca()
    with pytest.raises(SimilarityError, match="expects 3 and 2"):
        acc.update(np.ones((4, 4)), np.ones((4, 2)))
    with pytest.raises(SimilarityError, match="same number of examples"):
        acc.update(np.ones((4, 3)), np.ones((5, 2)))
    with pytest.raises(SimilarityError, match="cannot merge"):
        acc.merge(streaming.CovarianceAccumulator(2, 2))
    with pytest.raises(SimilarityError, match=">= 1"):
        streaming.CovarianceAccumulator(0, 2)


def test_minibatch_cka_single_batch_is_debiased_cka(large_mean_pair):
    x, y = large_mean_pair
    mb = streaming.MinibatchCKA()
    mb.update(x[:200], y[:200])
    assert mb.value() == pytest.approx(cka.linear_cka(x[:200], y[:200], debiased=True), abs=1e-10)
    rbf = streaming.MinibatchCKA(kernel="rbf")
    rbf.update(x[:100], y[:100])
    assert rbf.value() == pytest.approx(cka.rbf_cka(x[:100], y[:100], debiased=True), abs=1e-10)


def test_minibatch_cka_averages_unbiased_hsic(large_mean_pair):
    x, y = large_mean_pair
    mb = streaming.MinibatchCKA()
    terms = []
    for start in range(0, 600, 150):
        xb, yb = x[start : start + 150], y[start : start + 150]
        mb.update(xb, yb)
        # Song's estimator on Grams of centred features (it is invariant to the shift, and
        # centring keeps the large means from cancelling catastrophically).
        xc, yc = xb - xb.mean(0), yb - yb.mean(0)
        gx, gy = xc @ xc.T, yc @ yc.T
        terms.append(
            [cka.hsic_unbiased(gx, gy), cka.hsic_unbiased(gx, gx), cka.hsic_unbiased(gy, gy)]
        )
    xy, xx, yy = np.mean(terms, axis=0)
    assert mb.batches == 4
    assert mb.value() == pytest.approx(xy / np.sqrt(xx * yy), rel=1e-10)
    # Close to the full-data debiased CKA (it estimates the same population quantity).
    assert mb.value() == pytest.approx(cka.linear_cka(x, y, debiased=True), abs=0.05)


def test_minibatch_cka_errors():
    with pytest.raises(SimilarityError, match="unknown kernel"):
        streaming.MinibatchCKA(kernel="cosine")
    mb = streaming.MinibatchCKA()
    with pytest.raises(SimilarityError, match="no batch"):
        mb.value()
    with pytest.raises(SimilarityError, match="at least 4 examples"):
        mb.update(np.ones((3, 2)), np.ones((3, 2)))


def test_row_minibatch_cka_does_not_depend_on_how_rows_are_fed(large_mean_pair):
    x, y = large_mean_pair
    explicit = streaming.MinibatchCKA()
    for start in range(0, 3000, 700):  # 4 minibatches of 700 and the 200 rows left over
        explicit.update(x[start : start + 700], y[start : start + 700])
    for feed in ([3000], [1, 699, 1000, 37, 1263], [100] * 30):
        rows = streaming.RowMinibatchCKA(rows=700)
        start = 0
        for size in feed:
            rows.update(x[start : start + size], y[start : start + size])
            start += size
        assert rows.batches == 4
        assert rows.value() == pytest.approx(explicit.value(), rel=1e-12)
        assert rows.value() == pytest.approx(explicit.value(), rel=1e-12)  # value() keeps state
    # Fewer than 4 rows left over are not a minibatch.
    rows = streaming.RowMinibatchCKA(rows=1000)
    rows.update(x[:3003], y[:3003])
    first_three = streaming.MinibatchCKA()
    for start in range(0, 3000, 1000):
        first_three.update(x[start : start + 1000], y[start : start + 1000])
    assert rows.value() == pytest.approx(first_three.value(), rel=1e-12)
    with pytest.raises(SimilarityError, match=">= 4 rows"):
        streaming.RowMinibatchCKA(rows=3)
    with pytest.raises(SimilarityError, match="no batch"):
        streaming.RowMinibatchCKA(rows=10).value()
