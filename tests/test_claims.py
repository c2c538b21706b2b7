"""Tests of the claims table (report.claims) and the conv1 orientation score."""

from __future__ import annotations

import numpy as np
import pytest

from transfusion_tf.analysis import orientation
from transfusion_tf.init import gabor as gabor_lib
from transfusion_tf.report import claims


def test_recovered_fraction_is_a_ratio_of_paired_speed_ups():
    value, low, high = claims.recovered_fraction(
        random_steps=[100, 110, 90, 105],
        transfer_steps=[50, 60, 40, 55],
        partial_steps=[70, 80, 60, 75],
        num_resamples=500,
    )
    assert value == pytest.approx(0.6)
    assert low == pytest.approx(0.6) and high == pytest.approx(0.6)  # constant speed-ups
    # transfer no faster than random: no speed-up to recover
    assert claims.recovered_fraction(
        random_steps=[50, 50], transfer_steps=[60, 55], partial_steps=[40, 40]
    ) == (None, None, None)
    with pytest.raises(ValueError, match="one value per seed"):
        claims.recovered_fraction(random_steps=[1], transfer_steps=[1, 2], partial_steps=[1])


def _payload(rr: dict[str, list[float]], rt: dict[str, list[float]]) -> dict:
    pairs = []
    for kind, values in (("random_vs_random", rr), ("random_vs_transfer", rt)):
        for i in range(len(values["conv1"])):
            pairs.append({"kind": kind, "units": {u: {"pwcca": v[i]} for u, v in values.items()}})
    return {"primary_measure": "pwcca", "pairs": pairs}


def test_representation_claim_follows_the_pairs():
    # rt pairs as alike as rr at conv1, much less alike at conv4: the gap grows upwards
    payload = _payload(
        rr={"conv1": [0.9, 0.91, 0.89], "conv4": [0.6, 0.62, 0.61]},
        rt={"conv1": [0.9, 0.9, 0.91, 0.89], "conv4": [0.4, 0.41, 0.42, 0.40]},
    )
    row = claims.representation_claim(payload, num_resamples=500)
    assert row.difference == pytest.approx((0.61 - 0.4075) - (0.9 - 0.9))
    assert row.verdict == "higher" and row.ci_low > 0
    same = _payload(
        rr={"conv1": [0.9, 0.8], "conv4": [0.6, 0.5]},
        rt={"conv1": [0.9, 0.8], "conv4": [0.6, 0.5]},
    )
    assert claims.representation_claim(same, num_resamples=200).verdict == "no evidence"
    assert claims.representation_claim(None).verdict == "no evidence"


def test_model_size_row_says_not_tested_without_two_sizes():
    row = claims.model_size_claim(None)
    assert row.verdict == claims.NOT_TESTED
    assert "not tested" in claims.markdown([row])
    row = claims.model_size_claim(
        {"small": [0.5, 0.6, 0.55], "large": [0.2, 0.25, 0.22]},
        smaller="small",
        larger="large",
        num_resamples=500,
    )
    assert row.verdict == "lower" and row.difference == pytest.approx(0.22333 - 0.55, abs=1e-4)


def test_orientation_selectivity_separates_gabor_from_noise():
    bank, _ = gabor_lib.gabor_bank(kernel_size=5, in_channels=3, out_channels=8)
    noise = np.random.default_rng(0).normal(size=(5, 5, 3, 8))
    assert orientation.summary(bank)["orientation_selectivity"] > 0.6
    assert orientation.summary(noise)["orientation_selectivity"] < 0.3
    with pytest.raises(ValueError, match="conv kernel"):
        orientation.orientation_selectivity(np.zeros((5, 5, 3)))


def test_small_gabor_bank_spans_several_wavelengths():
    _, params = gabor_lib.gabor_bank(kernel_size=5, in_channels=3, out_channels=8)
    assert len({p.wavelength for p in params}) == gabor_lib.MIN_WAVELENGTHS
    assert len({p.theta for p in params}) >= 4
