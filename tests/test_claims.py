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


def _runs(steps_by_seed: dict[int, float]) -> list:
    """Stand-ins for RunRecords: a seed and steps to the threshold `steps@0.8` (not censored)."""

    class Run:
        def __init__(self, seed, steps):
            self.seed = seed
            self.results = {
                "steps_to_threshold": {"steps@0.8": steps},
                "steps_to_threshold_interpolated": {"steps@0.8": steps},
                "train_steps": 600,
            }

    return [Run(seed, steps) for seed, steps in steps_by_seed.items()]


def _transfusion_row(random, transfer, partial):
    groups = {
        ("d", "m", "random"): _runs(dict(enumerate(random))),
        ("d", "m", "transfer"): _runs(dict(enumerate(transfer))),
        ("d", "m", "transfusion (upto=conv1)"): _runs(dict(enumerate(partial))),
    }
    return claims.transfusion_claim(
        groups,
        threshold="steps@0.8",
        transfusion_init="transfusion (upto=conv1)",
        transfer_init="transfer",
        num_resamples=500,
    )


def test_transfusion_claim_is_a_fraction_when_transfer_is_faster():
    row = _transfusion_row(
        random=[300, 310, 290, 305, 295], transfer=[200, 215, 190, 200, 195], partial=[220] * 5
    )
    assert row.unit == "fraction" and row.difference == pytest.approx(80 / 100, abs=0.02)
    assert row.verdict == "higher" and row.ci_low > claims.MOST


def test_transfusion_claim_without_a_transfer_speed_up_compares_with_transfer():
    """Transfer no faster than random: the fraction is undefined, and the row tests the
    transfusion against transfer itself, with a CI and a verdict."""
    row = _transfusion_row(
        random=[300, 310, 290, 305, 295], transfer=[305, 300, 300, 310, 290], partial=[250] * 5
    )
    assert row.unit == "steps" and "undefined" in row.measure
    assert row.difference == pytest.approx(250 - 301)
    assert row.ci_low is not None and row.ci_high < 0 and row.verdict == "lower"


def _payload(rr: dict[str, list[float]], rt: dict[str, list[float]], *, names=True) -> dict:
    """Pairs of 3 random runs (r0-r1, r0-r2, r1-r2) and of them with 2 transfer runs."""
    runs = {
        "random_vs_random": [("r0", "r1"), ("r0", "r2"), ("r1", "r2")],
        "random_vs_transfer": [(r, t) for r in ("r0", "r1", "r2") for t in ("t0", "t1")],
    }
    pairs = []
    for kind, values in (("random_vs_random", rr), ("random_vs_transfer", rt)):
        for i, (a, b) in enumerate(runs[kind][: len(values["conv1"])]):
            pair = {"kind": kind, "units": {u: {"pwcca": v[i]} for u, v in values.items()}}
            if names:
                init_b = "random" if kind == "random_vs_random" else "imagenet"
                pair.update(run_a=a, run_b=b, init_a="random", init_b=init_b)
            pairs.append(pair)
    return {"primary_measure": "pwcca", "pairs": pairs}


def test_representation_claim_follows_the_pairs():
    # rt pairs as alike as rr at conv1, much less alike at conv4: the gap grows upwards
    rng = np.random.default_rng(0)
    payload = _payload(
        rr={"conv1": [0.9, 0.91, 0.89], "conv4": [0.6, 0.62, 0.61]},
        rt={"conv1": list(0.9 + 0.01 * rng.standard_normal(6)), "conv4": [0.4, 0.41] * 3},
    )
    row = claims.representation_claim(payload, num_resamples=500)
    rt = payload["pairs"][3:]
    rt1 = np.mean([p["units"]["conv1"]["pwcca"] for p in rt])
    assert row.difference == pytest.approx((0.61 - 0.405) - (0.9 - rt1))
    assert row.verdict == "higher" and row.ci_low > 0 and "CI over runs" in row.n
    same = _payload(
        rr={"conv1": [0.9, 0.8, 0.85], "conv4": [0.6, 0.5, 0.55]},
        rt={"conv1": [0.9, 0.8, 0.85, 0.9, 0.8, 0.85], "conv4": [0.6, 0.5, 0.55] * 2},
    )
    assert claims.representation_claim(same, num_resamples=200).verdict == "no evidence"
    assert claims.representation_claim(None).verdict == "no evidence"


def test_representation_claim_resamples_runs_not_pairs():
    """All the spread of the rt pairs comes from which transfer run they hold (t0: 0.4, t1:
    0.2 at conv4). Resampling runs draws t0 or t1 for both of a draw's slots a quarter of the
    time each, so its CI spans [0.2, 0.4]; resampling the 6 pairs as if independent gives a
    narrower one."""
    rr = {"conv1": [0.9, 0.9, 0.9], "conv4": [0.6, 0.6, 0.6]}
    rt = {"conv1": [0.9] * 6, "conv4": [0.4, 0.2] * 3}  # r0-t0, r0-t1, r1-t0, ...
    by_run = claims.representation_claim(_payload(rr, rt), num_resamples=2000)
    by_pair = claims.representation_claim(_payload(rr, rt, names=False), num_resamples=2000)
    assert by_run.difference == pytest.approx(by_pair.difference) == pytest.approx(0.3)
    assert "optimistic" in by_pair.measure and "optimistic" not in by_run.measure
    assert (by_run.ci_low, by_run.ci_high) == pytest.approx((0.2, 0.4))
    assert by_pair.ci_high - by_pair.ci_low < 0.18


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
