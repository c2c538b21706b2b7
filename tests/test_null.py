"""Permutation nulls of similarity values (transfusion_tf.analysis.null, SPEC A5)."""

import json
import os

import numpy as np
import pytest

from transfusion_tf.analysis import activations as act
from transfusion_tf.analysis import analyses, cca, measures, null
from transfusion_tf.analysis.streaming import CovarianceAccumulator

STREAMING = ["cca_mean", "svcca_mean", "pwcca", "cka_linear"]


def test_derangement_has_no_fixed_point_and_is_seeded():
    for n in (2, 3, 10):
        for seed in range(20):
            perm = null.derangement(np.random.default_rng(seed), n)
            assert sorted(perm) == list(range(n))
            assert not np.any(perm == np.arange(n))
    a = null.derangement(np.random.default_rng([1, 2]), 50)
    np.testing.assert_array_equal(a, null.derangement(np.random.default_rng([1, 2]), 50))
    with pytest.raises(ValueError, match="at least 2"):
        null.derangement(np.random.default_rng(0), 1)


def test_group_derangement_moves_whole_images():
    perm = null.group_derangement(np.random.default_rng(3), rows=12, rows_per_group=3)
    groups = perm.reshape(4, 3)
    for g, block in enumerate(groups):
        assert block[0] % 3 == 0 and block[0] // 3 != g
        np.testing.assert_array_equal(block, block[0] + np.arange(3))
    with pytest.raises(ValueError, match="rows per image"):
        null.group_derangement(np.random.default_rng(0), rows=10, rows_per_group=3)


def test_summary_and_rule():
    summary = null.summarize([0.30, 0.32, 0.31, None])
    assert summary["permutations"] == 3
    assert summary["mean"] == pytest.approx(0.31)
    assert summary["sd"] == pytest.approx(0.01)
    assert null.above_chance(0.35, summary) is True  # 4 sd above
    assert null.above_chance(0.335, summary) is False  # 2.5 sd above
    assert null.above_chance(None, summary) is None
    assert null.summarize([0.3]) == {"mean": None, "sd": None, "permutations": 1}
    assert null.above_chance(0.9, null.summarize([])) is None
    assert null.datapoints_per_feature(2000, 256, 256) == pytest.approx(2000 / 512)


def _write(tmp_path, name, array):
    path = os.path.join(tmp_path, name)
    np.save(path, array)
    return path


def test_independent_arrays_sit_at_their_null(tmp_path):
    """The issue's example: 2,000 x 256 independent normals look 'similar' (~0.31) by chance."""
    rng = np.random.default_rng(0)
    a = _write(tmp_path, "a.npy", rng.normal(size=(2000, 256)))
    b = _write(tmp_path, "b.npy", rng.normal(size=(2000, 256)))
    payload = analyses.analyze_arrays(
        a_path=a,
        b_path=b,
        output_dir=str(tmp_path / "out"),
        measures=STREAMING,
        null_permutations=8,
    )
    assert payload["cca_mean"] == pytest.approx(0.307, abs=0.01)
    for m in STREAMING:
        summary = payload["null"][m]
        assert summary["permutations"] == 8
        assert abs(payload[m] - summary["mean"]) < 4 * summary["sd"] + 1e-12
        assert payload["above_chance"][m] is False
    assert payload["null"]["cca_mean"]["mean"] == pytest.approx(payload["cca_mean"], abs=0.005)
    assert payload["datapoints_per_feature"] == pytest.approx(2000 / 512)
    with open(tmp_path / "out" / "similarity.json") as f:
        on_disk = json.load(f)
    assert on_disk["null"] == payload["null"]
    assert on_disk["above_chance"] == payload["above_chance"]


def test_related_arrays_stand_above_chance(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1000, 64))
    y = x[:, :32] @ rng.normal(size=(32, 48)) + 2.0 * rng.normal(size=(1000, 48))
    payload = analyses.analyze_arrays(
        a_path=_write(tmp_path, "x.npy", x),
        b_path=_write(tmp_path, "y.npy", y),
        output_dir=str(tmp_path / "out"),
        null_permutations=5,
        max_gram_examples=400,
    )
    for m in measures.MEASURES.names():
        assert payload["above_chance"][m] is True, m
        assert payload[m] > payload["null"][m]["mean"]


def test_rows_per_image_shuffles_images_not_rows(tmp_path):
    """Rows of an image share an image effect in both arrays: a row shuffle would break it,
    an image shuffle keeps the within-image structure out of the null as it should."""
    rng = np.random.default_rng(2)
    images, positions = 200, 4
    shared = np.repeat(rng.normal(size=(images, 8)), positions, axis=0)
    x = shared @ rng.normal(size=(8, 16)) + rng.normal(size=(images * positions, 16))
    y = rng.normal(size=(images * positions, 16))  # unrelated to x
    y_path = _write(tmp_path, "y.npy", y)
    x_path = _write(tmp_path, "x.npy", x)
    payload = analyses.analyze_arrays(
        a_path=x_path,
        b_path=y_path,
        output_dir=str(tmp_path / "img"),
        measures=["cca_mean"],
        null_permutations=6,
        rows_per_image=positions,
    )
    assert payload["above_chance"]["cca_mean"] is False
    assert payload["rows_per_image"] == positions
    with pytest.raises(ValueError, match="rows_per_image=3"):
        analyses.analyze_arrays(
            a_path=x_path, b_path=y_path, output_dir=str(tmp_path / "bad"), rows_per_image=3
        )
    with pytest.raises(ValueError, match="null_permutations=1"):
        analyses.analyze_arrays(
            a_path=x_path, b_path=y_path, output_dir=str(tmp_path / "bad"), null_permutations=1
        )


def test_no_null_when_disabled(tmp_path):
    rng = np.random.default_rng(3)
    payload = analyses.analyze_arrays(
        a_path=_write(tmp_path, "a.npy", rng.normal(size=(100, 4))),
        b_path=_write(tmp_path, "b.npy", rng.normal(size=(100, 4))),
        output_dir=str(tmp_path / "out"),
        measures=["cca_mean"],
        null_permutations=0,
    )
    assert payload["null"]["cca_mean"] == {"mean": None, "sd": None, "permutations": 0}
    assert payload["above_chance"]["cca_mean"] is None


def _conv_batches(rng, *, images, batch, hw, c_a, c_b):
    """Two related conv maps [images, hw, hw, c] cut into image batches."""
    latent = rng.normal(size=(images, hw, hw, 6))
    a = latent @ rng.normal(size=(6, c_a)) + 0.5 * rng.normal(size=(images, hw, hw, c_a))
    b = latent @ rng.normal(size=(6, c_b)) + 0.5 * rng.normal(size=(images, hw, hw, c_b))
    starts = list(range(0, images, batch))
    return a, b, [(s, a[s : s + batch], b[s : s + batch]) for s in starts]


@pytest.mark.parametrize("max_positions", [16, 5])
def test_streamed_null_equals_in_memory_null(max_positions):
    """Accumulated per batch (shared yy or not) = the measures of the concatenated null rows."""
    rng = np.random.default_rng(4)
    spec = act.ActivationSpec(max_positions=max_positions, null_permutations=3, seed=7)
    _, _, batches = _conv_batches(rng, images=20, batch=6, hw=4, c_a=5, c_b=7)
    real = CovarianceAccumulator(5, 7)
    stream = None
    xs, ys, nulls = [], [], [[] for _ in range(3)]
    for first, a, b in batches:
        perms = act.null_permutations(spec=spec, first_image=first, batch=a.shape[0])
        rows = act.paired_rows(a, b, spec=spec, first_image=first, permutations=perms)
        assert rows.same_rows == (max_positions >= 16)
        if stream is None:
            stream = null.NullCovariance(5, 7, permutations=3, shared_y=rows.same_rows)
        real.update(rows.x, rows.y)
        stream.update(rows.x, rows.nulls)
        xs.append(rows.x)
        ys.append(rows.y)
        for k in range(3):
            nulls[k].append(rows.nulls[k])
    x = np.concatenate(xs)
    options = measures.MeasureOptions(svcca_dims=3)
    for k, cov in enumerate(stream.covariances(real.covariance())):
        expected = cca.joint_covariance(x, np.concatenate(nulls[k]))
        np.testing.assert_allclose(cov.xy, expected.xy, atol=1e-9)
        np.testing.assert_allclose(cov.yy, expected.yy, atol=1e-9)
        for m in STREAMING:
            fn = measures.MEASURES.get(m).from_covariance
            assert fn(cov, options) == pytest.approx(fn(expected, options), abs=1e-9)


def test_null_rows_are_the_shuffled_images_at_the_same_positions():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(3, 4, 4, 2))
    b = rng.normal(size=(3, 4, 4, 2))
    spec = act.ActivationSpec(max_positions=5, seed=1)
    perm = np.array([2, 0, 1])
    rows = act.paired_rows(a, b, spec=spec, first_image=10, permutations=[perm])
    flat_b = b.reshape(3, 16, 2)
    for i in range(3):
        keep = act.position_indices(seed=1, image_index=10 + i, positions=16, cap=5)
        np.testing.assert_array_equal(rows.y[i * 5 : (i + 1) * 5], flat_b[i, keep])
        np.testing.assert_array_equal(rows.nulls[0][i * 5 : (i + 1) * 5], flat_b[perm[i], keep])
    assert rows.same_rows is False
    pooled = act.paired_rows(
        a, b, spec=act.ActivationSpec(conv_policy="pool"), first_image=0, permutations=[perm]
    )
    np.testing.assert_array_equal(pooled.nulls[0], b.mean(axis=(1, 2))[perm])


def test_a_last_batch_of_one_image_joins_the_one_before():
    batches = [np.zeros((4, 2)), np.ones((4, 2)), np.full((1, 2), 2.0)]
    merged = list(act._without_singleton_tail(iter(batches)))
    assert [b.shape[0] for b in merged] == [4, 5]
    assert [b.shape[0] for b in act._without_singleton_tail(iter(batches[:2]))] == [4, 4]


def test_spec_rejects_one_permutation():
    with pytest.raises(ValueError, match="null_permutations=1"):
        act.ActivationSpec(null_permutations=1)
