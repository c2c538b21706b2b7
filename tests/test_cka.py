"""Known-answer tests of CKA (transfusion_tf.analysis.cka) and the measure registry."""

import numpy as np
import pytest

from transfusion_tf.analysis import cka, measures, streaming
from transfusion_tf.analysis.cca import joint_covariance
from transfusion_tf.analysis.common import SimilarityError


def centred_orthonormal(rng, n, m):
    g = rng.normal(size=(n, m))
    q, _ = np.linalg.qr(g - g.mean(axis=0))
    return q


def song_hsic_by_loops(k, lm):
    """Unbiased HSIC from its definition as a U-statistic over distinct quadruples' terms."""
    n = k.shape[0]
    k, lm = k.copy(), lm.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(lm, 0)
    ones = np.ones(n)
    trace = sum(k[i, j] * lm[j, i] for i in range(n) for j in range(n))
    term2 = (ones @ k @ ones) * (ones @ lm @ ones) / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * (ones @ k @ lm @ ones)
    return (trace + term2 - term3) / (n * (n - 3))


def test_linear_cka_closed_form():
    """x spans (q1, q2), y spans (q1, q3): ||Sxy||^2 = 1, ||Sxx|| = ||Syy|| = sqrt(2) -> 1/2."""
    q = centred_orthonormal(np.random.default_rng(0), 100, 3)
    x, y = q[:, :2] + 1.0, q[:, [0, 2]]
    assert cka.linear_cka(x, y) == pytest.approx(0.5, abs=1e-12)
    assert cka.cka(cka.gram_linear(x), cka.gram_linear(y)) == pytest.approx(0.5, abs=1e-12)


def test_debiased_linear_cka_feature_space_equals_gram_space_and_song():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 5))
    y = x[:, :3] @ rng.normal(size=(3, 4)) + rng.normal(size=(30, 4))
    gx, gy = cka.gram_linear(x), cka.gram_linear(y)
    by_song = song_hsic_by_loops(gx, gy) / np.sqrt(
        song_hsic_by_loops(gx, gx) * song_hsic_by_loops(gy, gy)
    )
    assert cka.linear_cka(x, y, debiased=True) == pytest.approx(by_song, abs=1e-10)
    assert cka.cka(gx, gy, debiased=True) == pytest.approx(by_song, abs=1e-10)
    assert cka.hsic_unbiased(gx, gy) == pytest.approx(song_hsic_by_loops(gx, gy), rel=1e-10)


def test_unbiased_centring_inner_product_is_scaled_hsic():
    rng = np.random.default_rng(2)
    gx = cka.gram_rbf(rng.normal(size=(12, 3)))
    gy = cka.gram_rbf(rng.normal(size=(12, 2)))
    inner = np.sum(cka.center_gram(gx, unbiased=True) * cka.center_gram(gy, unbiased=True))
    assert inner == pytest.approx(12 * 9 * cka.hsic_unbiased(gx, gy), rel=1e-10)


def test_rbf_with_wide_bandwidth_tends_to_linear():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(150, 5))
    y = x @ rng.normal(size=(5, 3)) + rng.normal(size=(150, 3))
    assert cka.rbf_cka(x, y, threshold=1e3) == pytest.approx(cka.linear_cka(x, y), abs=1e-6)


def test_rbf_gram_uses_median_distance():
    x = np.array([[0.0], [1.0], [3.0]])
    # squared distances: 0,1,9 / 1,0,4 / 9,4,0 -> median 1
    gram = cka.gram_rbf(x, threshold=1.0)
    assert gram[0, 2] == pytest.approx(np.exp(-9 / 2), rel=1e-12)
    assert gram[1, 2] == pytest.approx(np.exp(-4 / 2), rel=1e-12)


def test_cka_errors():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20, 3))
    with pytest.raises(SimilarityError, match=r"HSIC\(x, x\)"):
        cka.linear_cka(np.ones((20, 3)), x)
    with pytest.raises(SimilarityError, match="at least 4 examples"):
        cka.linear_cka(x[:3], x[:3], debiased=True)
    with pytest.raises(SimilarityError, match="symmetric"):
        cka.cka(rng.normal(size=(5, 5)), np.eye(5))
    with pytest.raises(SimilarityError, match="threshold"):
        cka.rbf_cka(x, x, threshold=0.0)
    with pytest.raises(SimilarityError, match="median"):
        cka.rbf_cka(np.ones((20, 2)), x)
    with pytest.raises(SimilarityError, match="differ in shape"):
        cka.cka(np.eye(4), np.eye(5))


# Registry completeness: every measure satisfies the known answers of a similarity index.


@pytest.fixture(scope="module")
def related_pair():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 6)) * np.linspace(0.5, 3.0, 6)
    y = x[:, :4] @ rng.normal(size=(4, 5)) + 0.7 * rng.normal(size=(300, 5))
    return x, y


def test_registry_lists_every_measure():
    assert set(measures.MEASURES.names()) >= {
        "cca_mean",
        "svcca_mean",
        "pwcca",
        "cka_linear",
        "cka_linear_debiased",
        "cka_rbf",
        "cka_rbf_debiased",
        "cka_minibatch",
    }
    assert set(measures.streaming_measure_names()) == {
        "cca_mean",
        "svcca_mean",
        "pwcca",
        "cka_linear",
        "cka_minibatch",
    }


@pytest.mark.parametrize("name", measures.MEASURES.names())
def test_measure_identity_and_invariances(name, related_pair):
    x, y = related_pair
    measure = measures.MEASURES.get(name)
    options = measures.MeasureOptions(svcca_dims=4)
    assert measure.compute(x, x, options) == pytest.approx(1.0, abs=1e-9)
    base = measure.compute(x, y, options)
    assert 0.0 < base < 1.0
    # Isotropic scaling, translation, and an orthogonal map of the second argument; PWCCA
    # weights by neurons (of y too, at equal sizes), so for it only a signed permutation.
    rotation, _ = np.linalg.qr(np.random.default_rng(6).normal(size=(5, 5)))
    if name == "pwcca":
        rotation = np.eye(5)[[2, 0, 4, 1, 3]] * np.array([1, -1, 1, -1, 1])
    moved = 4.0 * y @ rotation - 2.0
    assert measure.compute(x, moved, options) == pytest.approx(base, abs=1e-9)
    if measure.from_covariance is not None:
        cov = joint_covariance(x, y)
        assert measure.from_covariance(cov, options) == pytest.approx(base, abs=1e-12)


def test_measures_of_independent_noise_are_near_zero():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(1000, 4)), rng.normal(size=(1000, 4))
    values = measures.compute_measures(x, y)
    assert set(values) == set(measures.MEASURES.names())
    for name, value in values.items():
        assert abs(value) < 0.08, (name, value)


def test_measure_name_checks():
    x = np.random.default_rng(8).normal(size=(10, 2))
    with pytest.raises(ValueError, match="unknown similarity measure 'cca_max'"):
        measures.compute_measures(x, x, names=["cca_max"])
    with pytest.raises(ValueError, match="cannot be streamed"):
        measures.check_measure_names(["cka_rbf"], streaming=True)
    with pytest.raises(ValueError, match="no similarity measure"):
        measures.check_measure_names([])


def test_measures_from_covariance_marks_undefined_as_none():
    rng = np.random.default_rng(9)
    cov = joint_covariance(np.ones((10, 3)), rng.normal(size=(10, 2)))
    values = measures.measures_from_covariance(cov, names=["cca_mean", "cka_linear"])
    assert values == {"cca_mean": None, "cka_linear": None}
    with pytest.raises(ValueError, match="needs its streaming accumulator"):
        measures.measures_from_covariance(cov, names=["cka_minibatch"])


def test_minibatch_cka_measure_uses_the_minibatch_size():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(600, 5))
    y = x[:, :3] @ rng.normal(size=(3, 4)) + rng.normal(size=(600, 4))
    one = measures.MEASURES.get("cka_minibatch").compute(x, y, measures.MeasureOptions())
    assert one == pytest.approx(cka.linear_cka(x, y, debiased=True), rel=1e-10)
    small = measures.MeasureOptions(minibatch_size=100)
    expected = streaming.MinibatchCKA()
    for start in range(0, 600, 100):
        expected.update(x[start : start + 100], y[start : start + 100])
    got = measures.MEASURES.get("cka_minibatch").compute(x, y, small)
    assert got == pytest.approx(expected.value(), rel=1e-12)
