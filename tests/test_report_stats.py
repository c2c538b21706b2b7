"""report.stats on hand-made numbers whose answer is known: verdicts, paired and unpaired
bootstrap CIs, the weighted (resampled) AUC and the paired AUC difference over images."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from transfusion_tf.report import stats


def test_verdict_is_read_off_the_ci():
    assert stats.verdict(ci_low=0.01, ci_high=0.2) == "higher"
    assert stats.verdict(ci_low=-0.2, ci_high=-0.01) == "lower"
    assert stats.verdict(ci_low=-0.01, ci_high=0.2) == "no evidence"
    assert stats.verdict(ci_low=0.0, ci_high=0.2) == "no evidence"  # touching 0 is not above it
    assert stats.verdict(ci_low=None, ci_high=None) == "no evidence"


def test_paired_constant_difference_has_a_tight_ci():
    base = np.array([0.80, 0.83, 0.78, 0.90, 0.85])
    got = stats.paired_difference(base=base, other=base + 0.05, num_resamples=500)
    assert got.mean_diff == pytest.approx(0.05)
    assert got.ci_low == pytest.approx(0.05) and got.ci_high == pytest.approx(0.05)
    assert (got.verdict, got.n_pairs, got.paired) == ("higher", 5, True)
    lower = stats.paired_difference(base=base, other=base - 0.02, num_resamples=500)
    assert lower.verdict == "lower" and lower.mean_diff == pytest.approx(-0.02)


def test_pairing_cancels_the_seed_spread():
    """A large spread across seeds shared by both inits does not hide a small constant gain."""
    base = np.array([0.60, 0.90, 0.70, 0.95, 0.65, 0.85])
    paired = stats.paired_difference(base=base, other=base + 0.01)
    unpaired = stats.unpaired_difference(base=base, other=base + 0.01)
    assert paired.verdict == "higher"
    assert unpaired.verdict == "no evidence"
    assert unpaired.mean_diff == pytest.approx(0.01) and unpaired.n_pairs == 0


def test_zero_mean_noise_is_no_evidence():
    base = np.array([0.80, 0.81, 0.79, 0.82, 0.80, 0.78])
    noise = np.array([0.02, -0.02, 0.01, -0.01, 0.015, -0.015])
    got = stats.paired_difference(base=base, other=base + noise, seed=3)
    assert got.mean_diff == pytest.approx(0.0, abs=1e-12)
    assert got.ci_low < 0 < got.ci_high
    assert got.verdict == "no evidence"


def test_percentile_interval_on_two_pairs():
    """Two pairs with differences 0 and 1: a replicate's mean is 0, 0.5 or 1 (p = 1/4, 1/2, 1/4),
    so the 95 % percentile interval is [0, 1]."""
    got = stats.paired_difference(base=[0.0, 0.0], other=[0.0, 1.0], num_resamples=4000)
    assert got.mean_diff == 0.5
    assert (got.ci_low, got.ci_high) == (0.0, 1.0)


def test_fewer_than_two_pairs_has_no_ci():
    got = stats.paired_difference(base=[0.8], other=[0.9])
    assert got.mean_diff == pytest.approx(0.1)
    assert (got.ci_low, got.ci_high, got.verdict, got.n_pairs) == (None, None, "no evidence", 1)
    one_side = stats.unpaired_difference(base=[0.8, 0.81], other=[0.9])
    assert one_side.ci_low is None and one_side.verdict == "no evidence"
    assert (one_side.n_base, one_side.n_other) == (2, 1)


def test_unpaired_difference_of_means():
    got = stats.unpaired_difference(base=[0.70, 0.72, 0.71], other=[0.80, 0.81], num_resamples=800)
    assert got.mean_diff == pytest.approx(0.805 - 0.71)
    assert 0.07 < got.ci_low <= got.mean_diff <= got.ci_high < 0.12
    assert got.verdict == "higher" and not got.paired


def test_resampling_is_seeded():
    rng = np.random.default_rng(0)
    base, other = rng.random(10), rng.random(10)
    a = stats.paired_difference(base=base, other=other, seed=1, num_resamples=100)
    b = stats.paired_difference(base=base, other=other, seed=1, num_resamples=100)
    c = stats.paired_difference(base=base, other=other, seed=2, num_resamples=100)
    assert a == b and (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_resamples"):
        stats.paired_difference(base=[1, 2], other=[1, 2], num_resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        stats.unpaired_difference(base=[1, 2], other=[1, 2], confidence=1.0)
    with pytest.raises(ValueError, match="differ in length"):
        stats.paired_difference(base=[1, 2], other=[1])
    with pytest.raises(ValueError, match="NaN"):
        stats.paired_difference(base=[1, float("nan")], other=[1, 2])


def test_weighted_auc_equals_the_auc_of_the_resampled_images():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(size=300) + labels, 1)  # rounding makes ties
    assert stats.weighted_auc(labels=labels, scores=scores, weights=np.ones(300))[0] == (
        pytest.approx(roc_auc_score(labels, scores))
    )
    draws = [rng.integers(0, 300, 300) for _ in range(3)]
    weights = np.stack([np.bincount(d, minlength=300) for d in draws])
    got = stats.weighted_auc(labels=labels, scores=scores, weights=weights)
    want = [roc_auc_score(labels[d], scores[d]) for d in draws]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    one_class = stats.weighted_auc(
        labels=labels, scores=scores, weights=np.where(labels == 1, 1.0, 0.0)[None]
    )
    assert np.isnan(one_class[0])


def test_mean_auc_skips_masked_labels_and_undefined_tasks():
    labels = np.array([[1, 0], [0, 0], [1, 0], [0, 0]], dtype=float)
    scores = np.array([[0.9, 0.1], [0.1, 0.2], [0.2, 0.3], [0.8, 0.4]])
    mask = np.array([[1, 1], [1, 1], [1, 1], [0, 1]], dtype=float)
    # task 0 over the first three examples: positives 0.9, 0.2 vs negative 0.1 -> AUC 1.0;
    # task 1 has one class only and is left out of the mean.
    got = stats.mean_auc(labels=labels, scores=scores, mask=mask, weights=np.ones((1, 4)))
    assert got[0] == pytest.approx(1.0)


def _scored(labels, scores):
    return stats.ScoredRun(labels=labels, scores=scores, mask=np.ones_like(labels))


def test_paired_auc_difference_of_identical_scores_is_exactly_zero():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, (200, 2)).astype(float)
    runs = [_scored(labels, labels + rng.normal(size=(200, 2))) for _ in range(3)]
    got = stats.paired_auc_difference(base=runs, other=runs, num_resamples=300)
    assert (got.mean_diff, got.ci_low, got.ci_high) == (0.0, 0.0, 0.0)
    assert got.verdict == "no evidence" and got.images_resampled and got.n_pairs == 3


def test_paired_auc_difference_resamples_images_and_seeds():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, (400, 1)).astype(float)
    base = [_scored(labels, labels + rng.normal(size=(400, 1)) * 2.0) for _ in range(3)]
    other = [_scored(labels, labels + rng.normal(size=(400, 1)) * 0.5) for _ in range(3)]
    got = stats.paired_auc_difference(base=base, other=other, num_resamples=400, seed=0)
    full = np.mean(
        [
            roc_auc_score(labels[:, 0], o.scores[:, 0])
            - roc_auc_score(labels[:, 0], b.scores[:, 0])
            for b, o in zip(base, other, strict=True)
        ]
    )
    assert got.mean_diff == pytest.approx(full)
    assert 0 < got.ci_low < got.mean_diff < got.ci_high and got.verdict == "higher"
    # resampling the images widens the CI over resampling the three seeds' AUCs alone
    seeds_only = stats.paired_difference(
        base=[roc_auc_score(labels[:, 0], b.scores[:, 0]) for b in base],
        other=[roc_auc_score(labels[:, 0], o.scores[:, 0]) for o in other],
        num_resamples=400,
    )
    assert got.ci_high - got.ci_low > seeds_only.ci_high - seeds_only.ci_low
    one = stats.paired_auc_difference(base=base[:1], other=other[:1])
    assert one.ci_low is None and one.verdict == "no evidence" and one.n_pairs == 1


def test_paired_auc_difference_needs_the_same_images():
    labels = np.array([[0.0], [1.0], [0.0], [1.0]])
    a = _scored(labels, np.array([[0.1], [0.9], [0.2], [0.8]]))
    b = _scored(1 - labels, a.scores)
    with pytest.raises(ValueError, match="pair 0"):
        stats.paired_auc_difference(base=[a], other=[b])
