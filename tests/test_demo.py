"""End-to-end test of `transfusion-demo --quick` and the demo's bad inputs."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from transfusion_tf import demo
from transfusion_tf.report import compare


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    summary = demo.run_demo(
        output_dir=str(root / "out"), export_dir=str(root / "savedmodels"), quick=True
    )
    return root, summary


@pytest.mark.slow
def test_quick_demo_end_to_end(quick_demo):
    root, summary = quick_demo
    out = root / "out"
    settings = demo.demo_settings(quick=True)
    labels = [t.label for t in demo.target_inits(settings, source_workdir="", stats_file="")]
    assert labels == [
        "random",
        "transfer",
        "meanvar",
        "transfusion_conv1",
        "transfusion_conv2",
        "gabor",
    ]
    # every run finished and logged to TensorBoard under one root
    for label in labels:
        for seed in settings.seeds:
            workdir = out / "runs" / "quick" / f"fundus_{label}_s{seed}"
            results = json.loads((workdir / "results.json").read_text())
            assert results["train_steps"] == settings.target_steps
            assert glob.glob(str(workdir / "tensorboard" / "events.out.tfevents.*"))
    source = out / "runs" / "quick" / "source_photo_cbr_tiny"
    assert (source / "weights" / "final.weights.h5").exists()
    # the single-label source task trains with a softmax (--loss=auto), as on ImageNet
    source_results = json.loads((source / "results.json").read_text())
    assert source_results["loss_function"] == "softmax"
    assert source_results["final_top1_accuracy"] is not None
    assert summary["source_loss_function"] == "softmax"
    # Mean Var's statistics: one mean and variance per weight of the source model
    stats = json.loads((out / "source_stats_quick.json").read_text())
    assert stats["layers"] and "conv1" in " ".join(stats["layers"])
    for tensors in stats["layers"].values():
        for tensor in tensors:
            assert tensor["var"] >= 0 and np.isfinite(tensor["mean"]) and tensor["shape"]
    # transfer copied the source, meanvar used its statistics file
    report = json.loads(
        (out / "runs" / "quick" / "fundus_transfer_s0" / "init_report.json").read_text()
    )
    hows = {row["how"] for row in report["rows"]}
    assert "copied" in hows and "new_head" in hows
    report = json.loads(
        (out / "runs" / "quick" / "fundus_meanvar_s0" / "init_report.json").read_text()
    )
    assert "meanvar" in {row["how"] for row in report["rows"]}

    # the SavedModel of the best run loads in this process and serves probabilities
    import tensorflow as tf

    path = summary["saved_model"]
    assert path == str(root / "savedmodels" / "demo" / "1")
    loaded = tf.saved_model.load(path)
    encoded = demo._test_image_bytes(
        glob.glob(str(out / "data" / "synthetic_fundus_*"))[0], count=3
    )
    probs = next(iter(loaded.signatures["serving_default"](tf.constant(encoded)).values())).numpy()
    assert probs.shape == (3, 1) and np.all((probs >= 0) & (probs <= 1))

    # analyses and the report
    for mode in ("compare", "init_vs_final", "filters", "weight_change"):
        assert glob.glob(str(out / "analysis" / "quick" / mode / "*.png")), mode
    text = (out / "report.md").read_text()
    assert "stand-in for ImageNet" in text
    assert "## Test split" in text and "## Steps to AUC threshold" in text
    assert "## Comparisons with `random`" in text and (out / "comparisons.csv").exists()
    assert "figures/analysis/compare/" in text
    # the report leads with the claims table, and says each thing once
    assert text.index("## Claims of the paper, tested here") < text.index("## Comparisons")
    assert summary["claims_markdown"] in text
    assert "## Findings" not in text and "## What this demo cannot show" in text
    assert text.count("## Test split") == 1
    assert "orientation selectivity" in text and "pilot random-init run" in text
    assert (out / "auc.csv").exists() and (out / "demo.json").exists()
    # TensorBoard: a run per training run named dataset/model/init/seed, and the report's run
    summaries = out / "runs" / "quick" / "summary"
    assert summary["tensorboard_summaries"] == str(summaries)
    named = glob.glob(str(summaries / "*" / "cbr_tiny" / "random" / "seed_0" / "events.*"))
    assert named and glob.glob(str(summaries / "report" / "events.*"))
    per_run = glob.glob(str(summaries / "*" / "*" / "*" / "seed_*" / "events.*"))
    assert len(per_run) == len(labels) * len(settings.seeds)


@pytest.mark.slow
def test_claims_follow_the_numbers(quick_demo):
    """The claims table is built from the paired comparisons and the runs, not a fixed text."""
    _, summary = quick_demo
    claims = summary["claims"]
    assert [c["claim"] for c in claims] == [
        "Final AUC with and without transfer",
        "Mean Var converges faster than random",
        "Transfusion of the lowest unit recovers most of transfer's speed-up",
        "Gabor conv1 helps",
        "Transfer and random representations differ more in higher layers",
        "Larger models change less during training",
    ]
    allowed = {"higher", "lower", "no evidence"}
    assert all(c["verdict"] in allowed for c in claims[:5])
    assert claims[5]["verdict"] == "not tested in this mode"
    rows = {(r["init"].split(" ")[0], r["metric"]): r for r in summary["comparisons"]}
    row = rows["transfer", "test_auc"]
    assert claims[0]["difference"] == pytest.approx(row["mean_diff"])
    assert claims[0]["verdict"] == row["verdict"]
    # every seed of both inits is evaluated: paired over all seeds, so the mean paired
    # difference is the difference of the test means
    assert row["paired"] and row["n_pairs"] == len(demo.demo_settings(quick=True).seeds)
    test = {r["init"]: r for r in summary["test"]}
    delta = test["transfer"]["auc_mean"] - test["random"]["auc_mean"]
    assert row["mean_diff"] == pytest.approx(delta, abs=1e-6)
    # thresholds come from the pilot's plateau and every target run reports them
    thresholds = summary["thresholds"]
    assert tuple(thresholds) == demo.thresholds_from_plateau(summary["pilot_plateau"])
    steps = rows["meanvar", compare.steps_metric(demo.metric_key(thresholds[-1]))]
    assert claims[1]["difference"] == pytest.approx(steps["mean_diff"])
    assert len(summary["conv1_filters"]) == 3


@pytest.mark.slow
def test_full_mode_stages_at_quick_sizes(tmp_path):
    """`--full`'s extra runs feed the model-size and small-data claims (quick sizes)."""
    settings = dataclasses.replace(
        demo.demo_settings(quick=True),
        mode="full",
        cut_points=("conv1",),
        large_widths=(16, 32, 64, 128),
        small_train_examples=60,
    )
    summary = demo.run_demo(
        output_dir=str(tmp_path / "out"), export_dir=str(tmp_path / "sm"), settings=settings
    )
    claims = {c["claim"]: c for c in summary["claims"]}
    size = claims["Larger models change less during training"]
    assert size["verdict"] in {"higher", "lower", "no evidence"}
    assert size["difference"] is not None and np.isfinite(size["difference"])
    small = claims["Transfer helps more with little data"]
    assert small["verdict"] in {"higher", "lower", "no evidence"}
    test = summary["test_auc_by_run"]
    gains = [
        (test[f"small_transfer_s{s}"] - test[f"small_random_s{s}"])
        - (test[f"transfer_s{s}"] - test[f"random_s{s}"])
        for s in settings.seeds
    ]
    assert small["difference"] == pytest.approx(np.mean(gains), abs=1e-6)
    runs = tmp_path / "out" / "runs" / "full"
    for seed in settings.seeds:
        for name in ("large_random", "small_random", "small_transfer"):
            assert (runs / f"{name}_s{seed}" / "results.json").exists()
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Model size" in text and "Small-data regime" in text
    with pytest.raises(ValueError, match="DemoSettings.mode"):
        demo.run_demo(
            output_dir=str(tmp_path / "x"),
            export_dir=str(tmp_path / "y"),
            settings=dataclasses.replace(settings, mode="huge"),
        )


def test_settings_and_seed_override():
    quick = demo.demo_settings(quick=True)
    default = demo.demo_settings(quick=False)
    full = demo.demo_settings(full=True)
    assert len(quick.seeds) >= 2 and len(default.seeds) >= 5
    assert quick.target_steps < default.target_steps
    # --full: the default design plus a model >= 4x larger and a small-data regime
    assert (
        dataclasses.replace(full, mode="default", large_widths=None, small_train_examples=None)
        == default
    )
    large = sum(w * w for w in full.large_widths) / sum(w * w for w in full.widths)
    assert large >= 4 and full.small_train_examples < default.fundus_examples
    assert demo.run_count(full) > demo.run_count(default) > demo.run_count(quick)
    with pytest.raises(ValueError, match="--quick and --full"):
        demo.demo_settings(quick=True, full=True)
    assert demo.demo_settings(quick=True, seeds=[3, 4, 5]).seeds == (3, 4, 5)
    with pytest.raises(ValueError, match="--seeds"):
        demo.demo_settings(quick=True, seeds=[])
    with pytest.raises(ValueError, match="pilot"):
        demo.demo_settings(quick=True, seeds=[quick.pilot_seed])


def test_plateau_slope_and_thresholds():
    history = [{"step": s, "auc_mean": min(0.9, 0.5 + s / 100)} for s in range(0, 101, 10)]
    level, slope = demo.plateau_and_slope(history)
    assert level == pytest.approx(0.9) and slope == pytest.approx(0.0, abs=1e-9)
    rising = [{"step": s, "auc_mean": 0.5 + s / 1000} for s in range(0, 101, 10)]
    assert demo.plateau_and_slope(rising)[1] == pytest.approx(0.1)
    assert demo.thresholds_from_plateau(0.9) == (0.8, 0.86)
    with pytest.raises(RuntimeError, match="chance"):
        demo.thresholds_from_plateau(0.52)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "transfusion_tf.cli.demo", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )


def test_cli_bad_seeds_and_arguments(tmp_path):
    proc = _cli("--seeds=a,b", f"--output_dir={tmp_path}")
    assert proc.returncode != 0 and "--seeds must be integers" in proc.stderr
    proc = _cli("extra", f"--output_dir={tmp_path}")
    assert proc.returncode != 0 and "unexpected arguments: extra" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not os.listdir(tmp_path)


def test_source_quality_sentence_follows_the_auc():
    assert "close to chance" in demo.source_quality({"final_auc_mean": 0.52})
    assert "0.520" in demo.source_quality({"final_auc_mean": 0.52})
    assert "learned features" in demo.source_quality({"final_auc_mean": 0.83})
    assert "weak features" in demo.source_quality({"final_auc_mean": 0.65})
    assert "undefined" in demo.source_quality({"final_auc_mean": None})
