"""Tests of transfusion_tf.report and `transfusion-report` on workdirs in the contract format."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import pytest

from transfusion_tf import config as config_lib
from transfusion_tf.report import ReportError, build_report, tables

TASKS = ["referable_dr"]


def make_workdir(root, name, *, init, seed, curve, thresholds=(0.8,), train_steps=None, **init_kw):
    """Writes config.json, results.json and eval_history.jsonl as transfusion-train does."""
    workdir = os.path.join(root, name)
    os.makedirs(workdir)
    steps = [100 * (i + 1) for i in range(len(curve))]
    cfg = config_lib.RunConfig(
        data=config_lib.DataConfig(dataset_dir="/data/fundus", image_size=32),
        model=config_lib.ModelConfig(name="cbr_tiny", num_tasks=1, image_size=32),
        init=config_lib.InitConfig(name=init, seed=seed, **init_kw),
        train=config_lib.TrainConfig(workdir=workdir, seed=seed, train_steps=steps[-1]),
    )
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(cfg.to_json())
    with open(os.path.join(workdir, "eval_history.jsonl"), "w") as f:
        for step, auc in zip(steps, curve, strict=True):
            row = {
                "step": step,
                "auc": {"referable_dr": auc},
                "auc_mean": auc,
                "auprc": {"referable_dr": auc - 0.1},
                "auprc_mean": auc - 0.1,
                "loss": 1.0 - auc,
            }
            f.write(json.dumps(row) + "\n")
    reached = {
        str(t): next((s for s, a in zip(steps, curve, strict=True) if a >= t), None)
        for t in thresholds
    }
    results = {
        "final_auc": {"referable_dr": curve[-1]},
        "final_auc_mean": curve[-1],
        "best_auc_mean": max(curve),
        "best_step": steps[curve.index(max(curve))],
        "steps_to_threshold": reached,
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
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f)
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
    assert steps["random"]["steps@0.8"] == pytest.approx(350.0)  # 300 and 400
    assert steps["random"]["reached@0.8"] == 2
    assert steps["meanvar (bn=identity)"]["steps@0.8"] == pytest.approx(200.0)
    assert steps["transfusion (upto=conv1)"]["reached@0.8"] == 0

    text = _read(report.markdown_path)
    assert "| fundus | cbr_tiny | random | 2 | 86.0 ± 1.4 |" in text
    assert "not reached (0/1)" in text
    assert "350 ± 71 (2/2)" in text
    with open(report.auc_csv) as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["init"] for r in csv_rows] == list(rows)
    assert float(csv_rows[0]["auc/referable_dr"]) == pytest.approx(0.86)
    for path in report.figures:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert any("convergence" in p for p in report.figures)
    assert any("steps_0_8" in p for p in report.figures)


def test_findings_are_computed_from_the_numbers(runs_root, tmp_path):
    report = build_report(workdirs=[runs_root], output_dir=str(tmp_path / "r"))
    meanvar = next(f for f in report.findings if "meanvar" in f)
    assert "150 steps sooner (43% fewer)" in meanvar
    assert "the same to 3 decimals" in meanvar  # 0.860 vs 0.860
    transfusion = next(f for f in report.findings if "transfusion" in f)
    assert "lower by 0.160, more than the seed spread" in transfusion
    assert "random reaches it in more seeds" in transfusion


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
    assert "report:" in proc.stdout and "sooner" in proc.stdout
    assert (out / "report.md").read_text().startswith("# Retina")


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
