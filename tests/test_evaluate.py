"""T5: `transfusion-evaluate` on a workdir and on a SavedModel: AUROC/AUPRC with bootstrap CIs,
ROC PNG, JSON; bad input named."""

import json
import os
import shutil

import pytest
import test_train_helpers as helpers

from transfusion_tf.training import evaluation


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return helpers.tiny_dataset(tmp_path_factory), helpers.tiny_run(tmp_path_factory)


def test_workdir_evaluation_writes_json_png_and_cis(run, tmp_path):
    data, workdir = run
    report = evaluation.evaluate(
        dataset_dir=data,
        split="test",
        output_dir=str(tmp_path),
        workdir=workdir,
        bootstrap_samples=40,
        seed=1,
    )
    on_disk = json.loads((tmp_path / "evaluation_test.json").read_text())
    assert on_disk["auc"] == report["auc"]
    assert (tmp_path / "roc_test.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from transfusion_tf.training import metrics, predictions

    saved = predictions.load_predictions(str(tmp_path / "predictions_test.npz"))
    assert report["predictions"] == str(tmp_path / "predictions_test.npz")
    assert saved.num_examples == report["num_examples"] and saved.tasks == ("referable_dr",)
    again = metrics.auc_report(
        labels=saved.labels, scores=saved.scores, mask=saved.mask, tasks=saved.tasks
    )
    assert again["auc"]["referable_dr"] == pytest.approx(report["auc"]["referable_dr"])
    low, high = report["auc_ci"]["referable_dr"]
    assert low <= report["auc"]["referable_dr"] <= high
    assert report["bootstrap_samples"] == 40 and report["num_examples"] > 0
    assert report["auprc"]["referable_dr"] is not None
    again = evaluation.evaluate(
        dataset_dir=data,
        split="test",
        output_dir=str(tmp_path / "b"),
        workdir=workdir,
        bootstrap_samples=40,
        seed=1,
    )
    assert again["auc_ci"] == report["auc_ci"]


def test_saved_model_evaluation_equals_workdir_evaluation(run, tmp_path):
    from transfusion_tf.export import saved_model

    data, workdir = run
    path = saved_model.export_saved_model(
        workdir=workdir, export_dir=str(tmp_path / "sm"), name="tiny", version=1
    )
    kwargs = dict(dataset_dir=data, split="valid", bootstrap_samples=10)
    a = evaluation.evaluate(output_dir=str(tmp_path / "a"), workdir=workdir, **kwargs)
    b = evaluation.evaluate(output_dir=str(tmp_path / "b"), saved_model=path, **kwargs)
    assert a["auc"]["referable_dr"] == pytest.approx(b["auc"]["referable_dr"], abs=1e-9)


def test_bad_input_is_named(run, tmp_path):
    data, workdir = run
    base = dict(dataset_dir=data, split="test", output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="exactly one of --workdir and --saved_model"):
        evaluation.evaluate(**base)
    with pytest.raises(ValueError, match="--split='train2'"):
        evaluation.evaluate(**{**base, "split": "train2"}, workdir=workdir)
    with pytest.raises(FileNotFoundError, match="config.json"):
        evaluation.evaluate(**base, workdir=str(tmp_path / "none"))
    with pytest.raises(FileNotFoundError, match="--saved_model"):
        evaluation.evaluate(**base, saved_model=str(tmp_path))
    with pytest.raises(ValueError, match="--bootstrap_samples"):
        evaluation.evaluate(**base, workdir=workdir, bootstrap_samples=0)
    with pytest.raises(FileNotFoundError, match="dataset"):
        evaluation.evaluate(**{**base, "dataset_dir": str(tmp_path / "nodata")}, workdir=workdir)
    other = tmp_path / "renamed"
    shutil.copytree(data, other)
    info = json.loads((other / "dataset_info.json").read_text())
    info["tasks"] = ["Edema"]
    (other / "dataset_info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="predicts tasks"):
        evaluation.evaluate(**{**base, "dataset_dir": str(other)}, workdir=workdir)
    assert not os.path.exists(tmp_path / "evaluation_test.json")


@pytest.mark.slow
def test_evaluate_cli(run, tmp_path):
    data, workdir = run
    out = tmp_path / "cli"
    ok, bad = helpers.run_cli_batch(
        "evaluate",
        [
            [
                f"--workdir={workdir}",
                f"--dataset_dir={data}",
                "--split=valid",
                f"--output_dir={out}",
                "--bootstrap_samples=10",
            ],
            [f"--saved_model={tmp_path}", f"--dataset_dir={data}"],
        ],
    )
    assert ok["ok"], ok["error"]
    summary = json.loads(ok["stdout"])
    assert summary["num_examples"] > 0 and "referable_dr" in summary["auc_ci"]
    assert (out / "evaluation_valid.json").exists() and (out / "roc_valid.png").exists()
    assert bad["error"].startswith("UsageError") and "--output_dir" in bad["error"]
