"""Tests of transfusion_tf.report and `transfusion-report` on workdirs in the contract format."""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from transfusion_tf import config as config_lib
from transfusion_tf.report import ReportError, build_report, compare, tables
from transfusion_tf.training import metrics
from transfusion_tf.training import predictions as predictions_lib

TASKS = ["referable_dr"]


def make_workdir(
    root,
    name,
    *,
    init,
    seed,
    curve,
    thresholds=(0.8,),
    train_steps=None,
    steps=None,
    rule="first",
    legacy=False,
    predictions=None,
    test=None,
    **init_kw,
):
    """Writes config.json, results.json and eval_history.jsonl as transfusion-train does.

    `curve` is the validation mean AUC at `steps` (default 100, 200, ...); results.json's
    convergence keys come from the real metrics functions (`legacy`: as written before
    interpolation, censoring and the curve area were recorded). `predictions`: (labels, scores)
    [examples, tasks] saved as valid_predictions.npz; `test`: (test mean AUC, weights,
    optional (labels, scores)) saved as the evaluation of the test split.
    """
    workdir = os.path.join(root, name)
    os.makedirs(workdir)
    steps = list(steps or [100 * (i + 1) for i in range(len(curve))])
    cfg = config_lib.RunConfig(
        data=config_lib.DataConfig(dataset_dir="/data/fundus"),
        model=config_lib.ModelConfig(name="cbr_tiny", num_tasks=1, image_size=32),
        init=config_lib.InitConfig(name=init, seed=seed, **init_kw),
        train=config_lib.TrainConfig(
            workdir=workdir, seed=seed, train_steps=steps[-1], threshold_rule=rule
        ),
    )
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(cfg.to_json())
    history = [
        {
            "step": step,
            "auc": {"referable_dr": auc},
            "auc_mean": auc,
            "auprc": {"referable_dr": auc - 0.1},
            "auprc_mean": auc - 0.1,
            "loss": 1.0 - auc,
        }
        for step, auc in zip(steps, curve, strict=True)
    ]
    with open(os.path.join(workdir, "eval_history.jsonl"), "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in history)
    crossings = metrics.threshold_crossings(history, thresholds, rule=rule)
    results = {
        "final_auc": {"referable_dr": curve[-1]},
        "final_auc_mean": curve[-1],
        "best_auc_mean": max(curve),
        "best_step": steps[curve.index(max(curve))],
        "steps_to_threshold": {t: c["step"] for t, c in crossings.items()},
        "examples_per_second": 100.0,
        "wall_seconds": 3.0,
        "versions": {"tensorflow": "2.21.0"},
        "seed": seed,
        "source_sha256": None,
        "model": "cbr_tiny",
        "init": init,
        "tasks": TASKS,
        "train_steps": train_steps or steps[-1],
    }
    if not legacy:
        results.update(
            steps_to_threshold_interpolated={t: c["interpolated"] for t, c in crossings.items()},
            steps_to_threshold_censored={t: c["censored"] for t, c in crossings.items()},
            threshold_rule=rule,
            threshold_tasks=[],
            auc_curve_area=metrics.auc_curve_area(history),
        )
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f)
    if predictions is not None:
        labels, scores = predictions
        predictions_lib.save_predictions(
            os.path.join(workdir, predictions_lib.VALID_PREDICTIONS_FILE),
            labels=labels,
            scores=scores,
            mask=np.ones_like(labels),
            tasks=TASKS,
            step=steps[-1],
        )
    if test is not None:
        auc, weights, *scored = test
        os.makedirs(os.path.join(workdir, "evaluation"))
        with open(os.path.join(workdir, "evaluation", "evaluation_test.json"), "w") as f:
            json.dump({"auc_mean": auc, "tasks": TASKS, "source": {"weights": weights}}, f)
        if scored:
            labels, scores = scored[0]
            predictions_lib.save_predictions(
                os.path.join(workdir, "evaluation", "predictions_test.npz"),
                labels=labels,
                scores=scores,
                mask=np.ones_like(labels),
                tasks=TASKS,
            )
    return workdir


@pytest.fixture()
def runs_root(tmp_path):
    root = str(tmp_path / "runs")
    os.makedirs(root)
    make_workdir(root, "random_s0", init="random", seed=0, curve=[0.6, 0.7, 0.82, 0.85])
    make_workdir(root, "random_s1", init="random", seed=1, curve=[0.55, 0.72, 0.78, 0.87])
    make_workdir(root, "meanvar_s0", init="meanvar", seed=0, curve=[0.7, 0.81, 0.84, 0.86])
    make_workdir(root, "meanvar_s1", init="meanvar", seed=1, curve=[0.75, 0.83, 0.85, 0.86])
    make_workdir(
        root,
        "tf_s0",
        init="transfusion",
        seed=0,
        curve=[0.6, 0.7, 0.7, 0.7],
        transfuse_upto="conv1",
    )
    return root


def test_auc_and_steps_tables_aggregate_seeds(runs_root, tmp_path):
    out = str(tmp_path / "report")
    report = build_report(workdirs=[os.path.join(runs_root, "*")], output_dir=out)
    rows = {r["init"]: r for r in report.auc_rows}
    assert list(rows) == ["random", "meanvar (bn=identity)", "transfusion (upto=conv1)"]
    assert rows["random"]["seeds"] == 2
    assert rows["random"]["auc_mean"] == pytest.approx(0.86)
    assert rows["random"]["auc_mean_sd"] == pytest.approx(math.sqrt(2 * 0.01**2))
    assert rows["transfusion (upto=conv1)"]["auc_mean_sd"] == 0.0
    steps = {r["init"]: r for r in report.steps_rows}
    # interpolated crossings of 0.8: 200 + 100 * 0.10 / 0.12 and 300 + 100 * 0.02 / 0.09
    assert steps["random"]["steps@0.8"] == pytest.approx((283.333 + 322.222) / 2, abs=1e-2)
    assert steps["random"]["reached@0.8"] == 2 and steps["random"]["censored@0.8"] == 0
    assert steps["meanvar (bn=identity)"]["steps@0.8"] == pytest.approx(
        (100 + 100 * 0.1 / 0.11 + 100 + 100 * 0.05 / 0.08) / 2
    )
    transfusion = steps["transfusion (upto=conv1)"]
    assert transfusion["censored@0.8"] == 1 and transfusion["median_censored@0.8"]
    assert transfusion["steps@0.8"] == 400.0  # censored at train_steps
    assert steps["random"]["auc_curve_area"] == pytest.approx(
        np.mean([metrics.auc_curve_area(r.history) for r in _runs(runs_root, "random_*")])
    )

    text = _read(report.markdown_path)
    assert "| fundus | cbr_tiny | random | 2 | 86.0 ± 1.4 |" in text
    assert "| 303 (0/2 censored) |" in text
    assert "| >= 400 (1/1 censored) |" in text
    assert "| first, all tasks |" in text
    with open(report.auc_csv) as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["init"] for r in csv_rows] == list(rows)
    assert float(csv_rows[0]["auc/referable_dr"]) == pytest.approx(0.86)
    for path in report.figures:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert any("convergence" in p for p in report.figures)
    assert any("steps_0_8" in p for p in report.figures)


def _runs(root, pattern):
    return tables.find_runs([os.path.join(root, pattern)])[0]


def test_findings_are_computed_from_the_comparisons(runs_root, tmp_path):
    report = build_report(workdirs=[runs_root], output_dir=str(tmp_path / "r"))
    meanvar = next(f for f in report.findings if "meanvar" in f)
    assert meanvar.startswith(
        "**cbr_tiny on fundus** — meanvar (bn=identity) vs random (paired, 2 seeds)"
    )
    # final AUC: differences +0.01 and -0.01 over the two seeds
    assert (
        "final validation mean AUC: 0.000 [-0.010, 0.010]: no evidence of a difference" in meanvar
    )
    # steps: differences -92 and -160 over the two seeds; fewer steps is faster
    assert "steps to AUC 0.8: -126 steps [-160, -92]: lower steps: faster" in meanvar
    transfusion = next(f for f in report.findings if "transfusion" in f)
    # seed 0 only, while random has seeds 0 and 1: unpaired, and too few runs for a CI
    assert "vs random (unpaired, 2 vs 1 runs)" in transfusion
    assert "final validation mean AUC: -0.160 (no CI, n = 1): no evidence" in transfusion
    assert "seed spread" not in " ".join(report.findings)
    # the findings and the table come from the same rows
    text = _read(report.markdown_path)
    assert text.index("## Findings") < text.index("## Comparisons with `random`")
    assert text.index("## Comparisons with `random`") < text.index("## Final AUC")
    assert (
        "| meanvar (bn=identity) | steps to AUC 0.8 | -126 | [-160, -92] | lower steps: faster |"
        in (text)
    )


def _known_difference_root(tmp_path, *, offsets, seeds_other=None, init="imagenet"):
    """random runs of 5 seeds with varied curves and an `init` run per seed whose curve is the
    random curve of its seed plus `offsets[seed]` at every eval."""
    root = str(tmp_path / "runs")
    os.makedirs(root)
    rng = np.random.default_rng(0)
    curves = {}
    for seed in range(5):
        curves[seed] = list(np.round(np.sort(rng.uniform(0.55, 0.85, 4)), 4))
        make_workdir(root, f"random_s{seed}", init="random", seed=seed, curve=curves[seed])
    for i, seed in enumerate(seeds_other or range(5)):
        curve = [round(a + offsets[i], 4) for a in curves[seed % 5]]
        make_workdir(root, f"{init}_s{seed}", init=init, seed=seed, curve=curve)
    return root


def _rows(report, metric, init=None):
    return [
        r
        for r in report.comparison_rows
        if r["metric"] == metric and (init is None or r["init"] == init)
    ]


def test_paired_ci_of_a_known_difference(tmp_path):
    """imagenet is exactly +0.05 AUC over random at every eval of every seed."""
    root = _known_difference_root(tmp_path, offsets=[0.05] * 5)
    report = build_report(workdirs=[root], output_dir=str(tmp_path / "r"))
    for metric in ("valid_auc", "auc_curve_area"):
        (row,) = _rows(report, metric)
        assert row["paired"] and row["n_pairs"] == 5 and row["baseline"] == "random"
        assert row["mean_diff"] == pytest.approx(0.05, abs=1e-9)
        assert row["ci_low"] == pytest.approx(0.05, abs=1e-9)
        assert row["ci_high"] == pytest.approx(0.05, abs=1e-9)
        assert row["verdict"] == "higher"
    (steps,) = _rows(report, "steps@0.8")
    assert steps["verdict"] in ("lower", "no evidence") and steps["mean_diff"] < 0
    finding = report.findings[0]
    assert "imagenet vs random (paired, 5 seeds)" in finding
    assert "final validation mean AUC: +0.050 [0.050, 0.050]: higher" in finding
    assert "validation AUC averaged over training: +0.050 [0.050, 0.050]: higher" in finding


def test_zero_mean_noise_gives_no_evidence(tmp_path):
    root = _known_difference_root(tmp_path, offsets=[0.03, -0.03, 0.02, -0.02, 0.0])
    report = build_report(workdirs=[root], output_dir=str(tmp_path / "r"))
    (row,) = _rows(report, "valid_auc")
    assert row["mean_diff"] == pytest.approx(0.0, abs=1e-9)
    assert row["ci_low"] < 0 < row["ci_high"]
    assert row["verdict"] == "no evidence"
    assert "final validation mean AUC: 0.000" in report.findings[0]
    assert "no evidence of a difference" in report.findings[0]


def test_runs_without_same_seed_partners_are_compared_unpaired(tmp_path):
    root = _known_difference_root(tmp_path, offsets=[0.05] * 3, seeds_other=[10, 11, 12])
    report = build_report(workdirs=[root], output_dir=str(tmp_path / "r"))
    (row,) = _rows(report, "valid_auc")
    assert not row["paired"] and row["n_pairs"] == 0
    assert (row["n_base"], row["n_other"]) == (5, 3)
    assert row["detail"] == "no same-seed partners"
    assert row["ci_low"] is not None
    assert "(unpaired, 5 vs 3 runs)" in report.findings[0]
    with open(report.comparisons_csv) as f:
        (csv_row,) = [r for r in csv.DictReader(f) if r["metric"] == "valid_auc"]
    assert csv_row["paired"] == "false" and csv_row["n_pairs"] == "0"
    text = _read(report.markdown_path)
    assert "| unpaired, 5 vs 3 runs |" in text


def test_partners_of_shared_seeds_pair_and_the_rest_is_left_out(tmp_path):
    root = _known_difference_root(tmp_path, offsets=[0.05] * 3, seeds_other=[0, 1, 2])
    report = build_report(workdirs=[root], output_dir=str(tmp_path / "r"))
    (row,) = _rows(report, "valid_auc")
    assert row["paired"] and row["n_pairs"] == 3 and row["verdict"] == "higher"
    assert "seeds [3, 4] of the baseline" in row["detail"]


def test_comparisons_csv_has_the_contract_columns(runs_root, tmp_path):
    report = build_report(workdirs=[runs_root], output_dir=str(tmp_path / "r"))
    with open(report.comparisons_csv) as f:
        reader = csv.reader(f)
        header = next(reader)
        body = list(reader)
    assert header[:10] == [
        "dataset",
        "model",
        "init",
        "baseline",
        "metric",
        "n_pairs",
        "mean_diff",
        "ci_low",
        "ci_high",
        "verdict",
    ]
    assert "paired" in header[10:]
    assert len(body) == 2 * 3  # 2 inits x (valid AUC, steps to 0.8, curve area)
    assert {r[4] for r in body} == {"valid_auc", "steps@0.8", "auc_curve_area"}
    assert {r[9] for r in body} <= {"higher", "lower", "no evidence"}


def _scores(rng, labels, noise):
    return labels + rng.normal(size=labels.shape) * noise


def test_final_aucs_resample_the_saved_predictions(tmp_path):
    """With per-example predictions the CI resamples images too; test AUC is compared when the
    runs were evaluated on the test split."""
    root = str(tmp_path / "runs")
    os.makedirs(root)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (300, 1)).astype(np.float64)
    test_labels = rng.integers(0, 2, (200, 1)).astype(np.float64)
    for seed in range(3):
        for init, noise in (("random", 2.0), ("imagenet", 0.5)):
            scores = _scores(rng, labels, noise)
            test_scores = _scores(rng, test_labels, noise)
            valid_auc = metrics.auc_report(labels=labels, scores=scores, mask=None, tasks=TASKS)
            test_auc = metrics.auc_report(
                labels=test_labels, scores=test_scores, mask=None, tasks=TASKS
            )
            make_workdir(
                root,
                f"{init}_s{seed}",
                init=init,
                seed=seed,
                curve=[0.5, 0.6, valid_auc["auc_mean"]],
                predictions=(labels, scores),
                test=(test_auc["auc_mean"], "best", (test_labels, test_scores)),
            )
    report = build_report(workdirs=[root], output_dir=str(tmp_path / "r"), bootstrap_samples=300)
    (valid,) = _rows(report, "valid_auc")
    assert valid["images_resampled"] and valid["paired"] and valid["n_pairs"] == 3
    assert valid["verdict"] == "higher" and valid["ci_low"] < valid["mean_diff"] < valid["ci_high"]
    assert "seeds and evaluation images resampled" in valid["detail"]
    runs = {r.init: [] for r in _runs(root, "*")}
    for r in _runs(root, "*"):
        runs[r.init].append(r.results["final_auc_mean"])
    assert valid["mean_diff"] == pytest.approx(
        np.mean(runs["imagenet"]) - np.mean(runs["random"]), abs=1e-6
    )
    (test,) = _rows(report, "test_auc")
    assert test["images_resampled"] and test["verdict"] == "higher"
    assert test["detail"].startswith("test split, best weights")
    assert "test mean AUC (best weights): +0." in report.findings[0]
    # without the predictions files: the same point estimate, seeds resampled only
    for path in glob.glob(os.path.join(root, "*", "valid_predictions.npz")):
        os.remove(path)
    again = build_report(workdirs=[root], output_dir=str(tmp_path / "r2"), bootstrap_samples=300)
    (seeds_only,) = _rows(again, "valid_auc")
    assert not seeds_only["images_resampled"]
    assert seeds_only["mean_diff"] == pytest.approx(valid["mean_diff"], abs=1e-6)


def test_censoring_in_the_steps_table_median_and_count(tmp_path):
    root = str(tmp_path / "runs")
    os.makedirs(root)
    # random: 1 of 3 seeds never reaches 0.8; gabor: 2 of 3 (the median is censored)
    for seed, curve in enumerate([[0.5, 0.9, 0.9], [0.5, 0.7, 0.9], [0.5, 0.6, 0.7]]):
        make_workdir(root, f"random_s{seed}", init="random", seed=seed, curve=curve)
    for seed, curve in enumerate([[0.5, 0.9, 0.9], [0.5, 0.6, 0.7], [0.5, 0.6, 0.6]]):
        make_workdir(root, f"gabor_s{seed}", init="gabor", seed=seed, curve=curve)
    report = build_report(workdirs=[root], output_dir=str(tmp_path / "r"))
    steps = {r["init"]: r for r in report.steps_rows}
    # random crossings: 175, 250 (200 + 100 * 0.1 / 0.2), censored at 300 -> median 250
    assert steps["random"]["steps@0.8"] == pytest.approx(250.0)
    assert steps["random"]["censored@0.8"] == 1 and not steps["random"]["median_censored@0.8"]
    assert steps["gabor"]["steps@0.8"] == 300.0 and steps["gabor"]["median_censored@0.8"]
    text = _read(report.markdown_path)
    assert "| 250 (1/3 censored) |" in text
    assert "| >= 300 (2/3 censored) |" in text
    # paired steps: gabor - random = 0, +50 (300 - 250), 0 (both censored)
    (row,) = _rows(report, "steps@0.8")
    assert row["mean_diff"] == pytest.approx(50 / 3) and row["censored_pairs"] == 2
    assert "2 of 3 pairs censored at train steps" in row["detail"]


def test_censored_median_of_an_even_number_of_seeds():
    assert tables.censored_median([(100.0, False), (300.0, True)]) == (200.0, True)
    assert tables.censored_median([(100.0, False), (120.0, False), (300.0, True)]) == (
        120.0,
        False,
    )
    assert tables.censored_median([(300.0, False), (300.0, True)]) == (300.0, True)
    assert tables.censored_median([]) == (None, False)


def test_results_recorded_before_interpolation_are_still_reported(tmp_path):
    """Old results.json: only steps_to_threshold (null = never reached), no curve area."""
    root = str(tmp_path / "runs")
    os.makedirs(root)
    for seed in range(2):
        make_workdir(root, f"r{seed}", init="random", seed=seed, curve=[0.5, 0.9], legacy=True)
        make_workdir(root, f"g{seed}", init="gabor", seed=seed, curve=[0.5, 0.6], legacy=True)
    report = build_report(workdirs=[root], output_dir=str(tmp_path / "r"))
    steps = {r["init"]: r for r in report.steps_rows}
    assert steps["random"]["steps@0.8"] == 200.0  # the eval step, not interpolated
    assert steps["gabor"]["censored@0.8"] == 2
    assert steps["random"]["auc_curve_area"] == pytest.approx(0.7)  # from the history
    (row,) = _rows(report, "auc_curve_area")
    assert row["mean_diff"] == pytest.approx(0.55 - 0.7)


def test_baseline_init_is_a_choice(runs_root, tmp_path):
    report = build_report(
        workdirs=[runs_root], output_dir=str(tmp_path / "r"), baseline_init="meanvar (bn=identity)"
    )
    assert {r["init"] for r in report.comparison_rows} == {"random", "transfusion (upto=conv1)"}
    assert {r["baseline"] for r in report.comparison_rows} == {"meanvar (bn=identity)"}
    assert "## Comparisons with `meanvar (bn=identity)`" in _read(report.markdown_path)
    # random is slower than meanvar: the same pairs, the sign and the words turn around
    (steps,) = _rows(report, "steps@0.8", init="random")
    assert steps["mean_diff"] == pytest.approx(126.07, abs=0.01)
    assert steps["verdict"] == "higher"
    assert compare.verdict_words(steps) == "higher steps: slower"
    with pytest.raises(ReportError, match="--baseline_init='resnet' matches no run"):
        build_report(
            workdirs=[runs_root],
            output_dir=str(tmp_path / "x"),
            baseline_init="resnet",
            require_baseline=True,
        )
    with pytest.raises(ReportError, match="--baseline_init must name an init"):
        build_report(workdirs=[runs_root], output_dir=str(tmp_path / "x"), baseline_init="")
    with pytest.raises(ReportError, match="--bootstrap_samples must be >= 1"):
        build_report(workdirs=[runs_root], output_dir=str(tmp_path / "x"), bootstrap_samples=0)


def test_no_baseline_is_said(tmp_path):
    root = str(tmp_path / "runs")
    os.makedirs(root)
    make_workdir(root, "g", init="gabor", seed=0, curve=[0.5, 0.9])
    report = build_report(workdirs=[root], output_dir=str(tmp_path / "r"))
    assert report.findings == ("**cbr_tiny on fundus**: no `random` runs to compare against.",)


def test_mean_curve_averages_over_seeds(runs_root):
    runs, _ = tables.find_runs([os.path.join(runs_root, "random_*")])
    from transfusion_tf.report import figures

    steps, means, sds = figures.mean_curve(runs)
    assert steps.tolist() == [100, 200, 300, 400]
    assert means.tolist() == pytest.approx([0.575, 0.71, 0.80, 0.86])
    assert sds[0] == pytest.approx(math.sqrt(2 * 0.025**2))


def test_unfinished_run_is_skipped_with_reason(runs_root, tmp_path):
    os.remove(os.path.join(runs_root, "tf_s0", "results.json"))
    report = build_report(workdirs=[runs_root], output_dir=str(tmp_path / "r"))
    assert len(report.skipped) == 1 and "tf_s0" in report.skipped[0]
    assert "unfinished" in _read(report.markdown_path)


def test_runs_with_warnings_are_marked(runs_root, tmp_path):
    path = os.path.join(runs_root, "tf_s0", "results.json")
    with open(path) as f:
        results = json.load(f)
    message = "the validation loss rose from 0.69 at the init to 3e+12 at step 400"
    results["warnings"] = [{"code": "diverged", "message": message}]
    with open(path, "w") as f:
        json.dump(results, f)
    text = _read(build_report(workdirs=[runs_root], output_dir=str(tmp_path / "r")).markdown_path)
    assert "**1 of 5 runs finished with warnings** (diverged)" in text
    (line,) = [line for line in text.splitlines() if "tf_s0`" in line]
    assert line.endswith(f" — **warning**: {message}")
    assert "**warning**" not in "".join(line for line in text.splitlines() if "random_s0`" in line)


def test_analysis_dir_figures_are_included(runs_root, tmp_path):
    adir = tmp_path / "analysis_compare"
    adir.mkdir()
    (adir / "fig2.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (adir / "similarity.csv").write_text("a,b\n1,2\n")
    out = tmp_path / "r"
    report = build_report(workdirs=[runs_root], output_dir=str(out), analysis_dirs=[str(adir)])
    assert (out / "figures" / "analysis" / "analysis_compare" / "fig2.png").exists()
    text = _read(report.markdown_path)
    assert "figures/analysis/analysis_compare/fig2.png" in text
    assert "similarity.csv" in text


def test_pattern_matching_nothing_is_an_error(tmp_path):
    with pytest.raises(ReportError, match="matches nothing"):
        build_report(workdirs=[str(tmp_path / "nope*")], output_dir=str(tmp_path / "r"))


def test_directory_without_runs_is_an_error(tmp_path):
    with pytest.raises(ReportError, match="no finished training run"):
        build_report(workdirs=[str(tmp_path)], output_dir=str(tmp_path / "r"))


def test_missing_analysis_dir_is_an_error(runs_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        build_report(
            workdirs=[runs_root],
            output_dir=str(tmp_path / "r"),
            analysis_dirs=[str(tmp_path / "nope")],
        )


def test_corrupt_results_name_the_file(runs_root):
    path = os.path.join(runs_root, "random_s0", "results.json")
    with open(path, "w") as f:
        f.write("{not json")
    with pytest.raises(ReportError, match="random_s0/results.json"):
        tables.load_run(os.path.join(runs_root, "random_s0"))


def test_results_without_auc_name_the_file(runs_root):
    path = os.path.join(runs_root, "random_s0", "results.json")
    with open(path, "w") as f:
        json.dump({"seed": 0}, f)
    with pytest.raises(ReportError, match="final_auc_mean"):
        tables.load_run(os.path.join(runs_root, "random_s0"))


def test_bad_config_names_the_file(runs_root):
    path = os.path.join(runs_root, "random_s0", "config.json")
    with open(path, "w") as f:
        json.dump({"data": {}, "colour": 1}, f)
    with pytest.raises(ReportError, match="random_s0/config.json"):
        tables.load_run(os.path.join(runs_root, "random_s0"))


def test_bad_history_line_names_the_file(runs_root):
    path = os.path.join(runs_root, "random_s0", "eval_history.jsonl")
    with open(path, "a") as f:
        f.write("oops\n")
    with pytest.raises(ReportError, match="eval_history.jsonl:5"):
        tables.load_run(os.path.join(runs_root, "random_s0"))


def test_missing_workdir_and_results(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tables.load_run(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        tables.load_run(str(tmp_path / "empty"))


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "transfusion_tf.cli.report", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_writes_report(runs_root, tmp_path):
    out = tmp_path / "cli"
    proc = _cli(f"--workdirs={runs_root}/*", f"--output_dir={out}", "--title=Retina")
    assert proc.returncode == 0, proc.stderr
    assert "report:" in proc.stdout and "faster" in proc.stdout
    assert (out / "report.md").read_text().startswith("# Retina")


def test_cli_baseline_init_and_its_bad_values(runs_root, tmp_path):
    out = tmp_path / "cli"
    proc = _cli(
        f"--workdirs={runs_root}/*",
        f"--output_dir={out}",
        "--baseline_init=meanvar (bn=identity)",
        "--bootstrap_samples=100",
        "--bootstrap_seed=3",
    )
    assert proc.returncode == 0, proc.stderr
    assert "random vs meanvar (bn=identity)" in proc.stdout
    with open(out / "comparisons.csv") as f:
        assert {r["baseline"] for r in csv.DictReader(f)} == {"meanvar (bn=identity)"}
    for flag, needle in (
        ("--baseline_init=resnet", "--baseline_init='resnet' matches no run; the inits found"),
        ("--baseline_init=", "--baseline_init must name an init"),
        ("--bootstrap_samples=0", "--bootstrap_samples must be >= 1"),
    ):
        proc = _cli(f"--workdirs={runs_root}/*", f"--output_dir={tmp_path / 'bad'}", flag)
        assert proc.returncode != 0, flag
        assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_cli_bad_pattern_is_a_usage_error(tmp_path):
    proc = _cli(f"--workdirs={tmp_path}/nothing*", f"--output_dir={tmp_path / 'o'}")
    assert proc.returncode != 0
    assert "matches nothing" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_transfer_from_a_workdir_is_labelled_with_its_source(tmp_path):
    root = str(tmp_path / "runs")
    os.makedirs(root)
    make_workdir(
        root, "t", init="imagenet", seed=0, curve=[0.5, 0.9], source_weights="/x/runs/src/seed0"
    )
    make_workdir(root, "i", init="imagenet", seed=0, curve=[0.5, 0.9], source_weights="imagenet")
    runs, _ = tables.find_runs([root])
    assert sorted(r.init for r in runs) == ["imagenet", "transfer (source=src/seed0)"]
