"""Known-answer tests of CCA, SVCCA and PWCCA (transfusion_tf.analysis.cca)."""

import numpy as np
import pytest

from transfusion_tf.analysis import cca
from transfusion_tf.analysis.common import SimilarityError


def centred_orthonormal(rng, n, m):
    """[n, m] with orthonormal columns, each orthogonal to the all-ones vector."""
    g = rng.normal(size=(n, m))
    q, _ = np.linalg.qr(g - g.mean(axis=0))
    return q


def known_pair(rng, *, n=500, rhos=(0.9, 0.6, 0.3), extra_x=0):
    """x, y whose sample canonical correlations are exactly `rhos`.

    x = Qx A (Qx: k + extra_x orthonormal latent columns), y = Y0 B, where column i of Y0 is
    rho_i Q_i + sqrt(1 - rho_i^2) Q'_i. Returns x, y, A.
    """
    k = len(rhos)
    q = centred_orthonormal(rng, n, 2 * k + extra_x)
    latent_x = np.concatenate([q[:, :k], q[:, 2 * k :]], axis=1)
    rhos = np.asarray(rhos)
    y0 = q[:, :k] * rhos + q[:, k : 2 * k] * np.sqrt(1 - rhos**2)
    a = rng.normal(size=(k + extra_x, k + extra_x))
    b = rng.normal(size=(k, k))
    return latent_x @ a + 5.0, y0 @ b - 3.0, a


def test_canonical_correlations_known_answer():
    rng = np.random.default_rng(0)
    x, y, _ = known_pair(rng)
    result = cca.cca(x, y)
    np.testing.assert_allclose(result.correlations, [0.9, 0.6, 0.3], atol=1e-10)
    assert result.mean == pytest.approx(0.6, abs=1e-10)


def test_canonical_variates_are_orthonormal_and_correlate_by_rho():
    rng = np.random.default_rng(1)
    x, y, _ = known_pair(rng)
    result = cca.cca(x, y)
    hx = (x - x.mean(0)) @ result.x_weights
    hy = (y - y.mean(0)) @ result.y_weights
    np.testing.assert_allclose(hx.T @ hx, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(np.diag(hx.T @ hy), [0.9, 0.6, 0.3], atol=1e-9)


def test_matches_qr_based_cca():
    """Björck-Golub: canonical correlations = singular values of Qx^T Qy."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 7)) @ rng.normal(size=(7, 7))
    y = x[:, :4] @ rng.normal(size=(4, 5)) + rng.normal(size=(300, 5))
    qx, _ = np.linalg.qr(x - x.mean(0))
    qy, _ = np.linalg.qr(y - y.mean(0))
    expected = np.linalg.svd(qx.T @ qy, compute_uv=False)
    np.testing.assert_allclose(cca.cca(x, y).correlations, expected, atol=1e-10)


def test_identical_inputs_give_one():
    x = np.random.default_rng(3).normal(size=(200, 6))
    assert cca.cca(x, x).mean == pytest.approx(1.0, abs=1e-10)
    assert cca.svcca(x, x, dims=3).mean == pytest.approx(1.0, abs=1e-10)
    assert cca.pwcca(x, x).value == pytest.approx(1.0, abs=1e-10)


def test_invariances():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 6)) * np.arange(1, 7)
    y = x[:, :3] @ rng.normal(size=(3, 5)) + rng.normal(size=(400, 5))
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    invertible = rng.normal(size=(6, 6))
    base = cca.cca(x, y).correlations
    np.testing.assert_allclose(cca.cca(x @ invertible + 2.0, y).correlations, base, atol=1e-9)
    np.testing.assert_allclose(cca.cca(x, y * 7.0).correlations, base, atol=1e-9)
    # SVCCA: orthogonal maps and isotropic scaling (principal directions rotate along).
    for moved in (3.5 * x @ rotation, x @ rotation - 1.0):
        assert cca.svcca(moved, y, dims=4).mean == pytest.approx(
            cca.svcca(x, y, dims=4).mean, abs=1e-9
        )
    # PWCCA weighted by x sums |projections| over x's neurons: invariant to isotropic scaling,
    # shifts, permuting and sign-flipping neurons, but not to rotations of x.
    signed_permutation = np.eye(6)[rng.permutation(6)] * np.array([1, -1, 1, 1, -1, 1])

    def by_x(a, b):
        return cca.pwcca(a, b, weighting="x").value

    for moved in (3.5 * x + 1.0, x @ signed_permutation, x):
        assert by_x(moved, 2.0 * y) == pytest.approx(by_x(x, y), abs=1e-9)
    assert abs(by_x(x @ rotation, y) - by_x(x, y)) > 1e-4
    # The default weights by the side with fewer neurons (y's 5), so rotating x leaves it.
    assert cca.pwcca(x @ rotation, y).value == pytest.approx(cca.pwcca(x, y).value, abs=1e-9)


def test_independent_noise_is_near_zero():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(20000, 4)), rng.normal(size=(20000, 4))
    assert cca.cca(x, y).mean < 0.03
    assert cca.pwcca(x, y).value < 0.03


def test_svcca_equals_cca_of_svd_reduced_activations():
    """The SVCCA recipe: keep the top-k left singular directions (scaled), then CCA."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(500, 12)) @ rng.normal(size=(12, 12))
    y = x[:, :6] @ rng.normal(size=(6, 9)) + rng.normal(size=(500, 9))

    def reduce(a, k):
        u, s, _ = np.linalg.svd(a - a.mean(0), full_matrices=False)
        return u[:, :k] * s[:k]

    result = cca.svcca(x, y, dims=5)
    assert (result.x_dims, result.y_dims) == (5, 5)
    np.testing.assert_allclose(
        result.correlations, cca.cca(reduce(x, 5), reduce(y, 5)).correlations, atol=1e-10
    )


def test_svcca_kept_variance_fraction():
    rng = np.random.default_rng(7)
    scales = np.array([10.0, 5.0, 1.0, 0.1, 0.01])
    x = centred_orthonormal(rng, 300, 5) * scales
    y = rng.normal(size=(300, 3))
    variance = scales**2 / np.sum(scales**2)
    # Top-2 holds 99.20% of the variance: 0.99 keeps 2 directions, 0.995 keeps 3.
    assert np.sum(variance[:2]) == pytest.approx(0.99198, abs=1e-4)
    assert cca.svcca(x, y, dims=0.99).x_dims == 2
    assert cca.svcca(x, y, dims=0.995).x_dims == 3
    assert cca.svcca(x, y, dims=1.0).x_dims == 5
    assert cca.svcca(x, y, dims=50).x_dims == 5  # more than the rank: all directions


@pytest.mark.parametrize("dims", [0, -2, 0.0, 1.5, "3", True])
def test_svcca_bad_dims(dims):
    x = np.random.default_rng(0).normal(size=(50, 4))
    with pytest.raises(SimilarityError, match="SVCCA"):
        cca.svcca(x, x, dims=dims)


def test_pwcca_known_answer_and_unwhitened_weighting_differs():
    """alpha_i = sum_j |<h_i, x_j>| = sum_j |A_ij| when x = Q A with orthonormal Q.

    google/svcca's compute_pwcca projects onto activations rotated by u without the
    Sigma_xx^(-1/2) whitening (re-orthonormalised by QR); on non-white x that is another number.
    """
    rng = np.random.default_rng(8)
    rhos = np.array([0.95, 0.7, 0.4, 0.1])
    x, y, a = known_pair(rng, rhos=tuple(rhos))
    alpha = np.sum(np.abs(a[:4]), axis=1)
    expected = float(np.sum(alpha * rhos) / np.sum(alpha))
    result = cca.pwcca(x, y, weighting="x")
    assert result.value == pytest.approx(expected, abs=1e-10)
    np.testing.assert_allclose(result.weights, alpha / alpha.sum(), atol=1e-10)

    xc, yc = x - x.mean(0), y - y.mean(0)

    def inv_sqrt(m):
        w, v = np.linalg.eigh(m)
        return v @ np.diag(w**-0.5) @ v.T

    sxx, syy, sxy = xc.T @ xc, yc.T @ yc, xc.T @ yc
    u, s, _ = np.linalg.svd(inv_sqrt(sxx) @ sxy @ inv_sqrt(syy))
    unwhitened = xc @ u  # rotated by u, never multiplied by inv_sqrt(sxx)
    p, _ = np.linalg.qr(unwhitened)
    weights = np.sum(np.abs(p.T @ xc), axis=1)
    s = np.concatenate([s, np.zeros(len(weights) - len(s))])
    unwhitened_value = float(np.sum(weights * s) / np.sum(weights))
    assert abs(unwhitened_value - expected) > 1e-3


def test_pwcca_first_argument_with_more_neurons():
    """google/svcca raises IndexError here; weighting="x" uses x's canonical variates."""
    rng = np.random.default_rng(9)
    rhos = np.array([0.9, 0.5, 0.2])
    x, y, a = known_pair(rng, rhos=tuple(rhos), extra_x=4)
    assert x.shape[1] > y.shape[1]
    alpha = np.sum(np.abs(a[:3]), axis=1)
    result = cca.pwcca(x, y, weighting="x")
    assert result.weights.shape == (3,)
    assert result.value == pytest.approx(float(np.sum(alpha * rhos) / alpha.sum()), abs=1e-10)


def test_pwcca_does_not_depend_on_argument_order():
    """Morcos et al.'s rule: the side with fewer neurons; equal sizes: mean of both sides."""
    rng = np.random.default_rng(19)
    x = rng.normal(size=(300, 6))
    y = x[:, :4] @ rng.normal(size=(4, 6)) + rng.normal(size=(300, 6))
    both = cca.pwcca(x, y)
    assert both.value == pytest.approx(cca.pwcca(y, x).value, abs=1e-12)
    one_sided = [cca.pwcca(x, y, weighting=side).value for side in ("x", "y")]
    assert abs(one_sided[0] - one_sided[1]) > 1e-4  # the order would matter without the rule
    assert both.value == pytest.approx(np.mean(one_sided), abs=1e-12)
    fewer = y[:, :4]
    assert cca.pwcca(x, fewer).value == pytest.approx(
        cca.pwcca(x, fewer, weighting="y").value, abs=1e-12
    )
    assert cca.pwcca(fewer, x).value == pytest.approx(cca.pwcca(x, fewer).value, abs=1e-12)
    with pytest.raises(SimilarityError, match="weighting"):
        cca.pwcca(x, y, weighting="left")


def test_decompositions_are_cached_by_content():
    """A second covariance with the same xx/yy reuses their whiteners; 1 and 1.0 dims differ."""
    rng = np.random.default_rng(20)
    x, y = rng.normal(size=(200, 5)), rng.normal(size=(200, 5))
    cov = cca.joint_covariance(x, y)
    first = cca.cca_from_covariance(cov)
    again = cca.cca_from_covariance(cca.joint_covariance(x, y))
    assert again is first
    assert cca.cca_from_covariance(cov, x_dims=1, y_dims=1).x_dims == 1
    assert cca.cca_from_covariance(cov, x_dims=1.0, y_dims=1.0).x_dims == 5
    permuted = cca.JointCovariance(n=cov.n, xx=cov.xx, yy=cov.yy, xy=-cov.xy)
    np.testing.assert_allclose(
        cca.cca_from_covariance(permuted).correlations, first.correlations, atol=1e-12
    )
    assert not first.correlations.flags.writeable


def test_zero_variance_neurons_are_ignored():
    rng = np.random.default_rng(10)
    x, y, _ = known_pair(rng)
    padded = np.concatenate([x[:, :2], np.full((x.shape[0], 3), 4.0), x[:, 2:]], axis=1)
    np.testing.assert_allclose(cca.cca(padded, y).correlations, [0.9, 0.6, 0.3], atol=1e-10)
    assert cca.pwcca(padded, y).value == pytest.approx(cca.pwcca(x, y).value, abs=1e-10)
    assert cca.svcca(padded, y, dims=2).mean == pytest.approx(
        cca.svcca(x, y, dims=2).mean, abs=1e-10
    )


def test_collinear_neurons_are_ignored():
    rng = np.random.default_rng(11)
    x, y, _ = known_pair(rng)
    duplicated = np.concatenate([x, x[:, :2] * 3.0 - x[:, 2:3]], axis=1)
    np.testing.assert_allclose(cca.cca(duplicated, y).correlations, [0.9, 0.6, 0.3], atol=1e-9)


@pytest.mark.parametrize("side", ["x", "y"])
def test_all_directions_pruned_is_a_clear_error(side):
    varying = np.random.default_rng(12).normal(size=(40, 3))
    constant = np.ones((40, 5))
    x, y = (constant, varying) if side == "x" else (varying, constant)
    for fn in (cca.cca, cca.svcca, cca.pwcca):
        with pytest.raises(SimilarityError, match=f"^{side}: .*zero variance"):
            fn(x, y)


@pytest.mark.parametrize(
    "x, y, message",
    [
        (np.zeros(10), np.zeros((10, 2)), "2-D"),
        (np.ones((10, 2)), np.ones((9, 2)), "same number of examples"),
        (np.full((10, 2), np.nan), np.ones((10, 2)), "NaN"),
        (np.ones((1, 2)), np.ones((1, 2)), "at least 2 examples"),
        (np.ones((5, 0)), np.ones((5, 2)), "no features"),
    ],
)
def test_bad_activations(x, y, message):
    with pytest.raises(SimilarityError, match=message):
        cca.cca(x, y)
