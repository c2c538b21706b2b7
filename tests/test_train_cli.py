"""`transfusion-train` end to end through its CLI: every init strategy, ResNet50, mirrored,
bad flags, NaN loss, a finished workdir, a conflicting workdir and determinism.

All CLI invocations of this module run in one subprocess (TensorFlow imported once) through
the CLI's `main`, exactly as the console script calls it; one more test runs the real console
entry point for its exit status.
"""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import test_train_helpers as helpers

WORKDIR_FILES = (
    "config.json",
    "init_report.json",
    "eval_history.jsonl",
    "results.json",
    "valid_predictions.npz",
    "weights/init.weights.h5",
    "weights/final.weights.h5",
    "weights/best.weights.h5",
    "checkpoints/checkpoint",
    "tensorboard",
)
RESULT_KEYS = (
    "final_auc",
    "final_auc_mean",
    "best_auc_mean",
    "best_step",
    "steps_to_threshold",
    "steps_to_threshold_interpolated",
    "steps_to_threshold_censored",
    "threshold_rule",
    "threshold_tasks",
    "auc_curve_area",
    "examples_per_second",
    "wall_seconds",
    "versions",
    "seed",
    "source_sha256",
    "model",
    "init",
    "tasks",
    "train_steps",
)
INITS = {
    "imagenet": [],
    "meanvar": ["--bn_policy=identity"],
    "transfusion": ["--transfuse_upto=conv1"],
    "gabor": [],
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Runs every CLI invocation of this module in one subprocess; returns name -> record."""
    data = helpers.tiny_dataset(tmp_path_factory)
    natural = helpers.tiny_dataset(tmp_path_factory, kind="natural")  # 12 one-hot classes
    root = Path(helpers.shared_root(tmp_path_factory)) / "train_cli"
    src = str(root / "random")

    def flags(name, *extra):
        return helpers.train_flags(data, str(root / name), *extra)

    runs = {
        "random": flags("random", "--init=random", "--auc_thresholds=0.01,0.999"),
        "random_again": flags("random", "--init=random", "--auc_thresholds=0.01,0.999"),
        "conflict": flags("random", "--init=random", "--learning_rate=0.2"),
    }
    for init, extra in INITS.items():
        source = [] if init == "gabor" else [f"--source_weights={src}"]
        runs[init] = flags(init, f"--init={init}", *source, *extra)
    # Seed-1 partners of random and gabor (for the report's pairing), thresholding by the
    # `first` rule and a named task.
    for init in ("random", "gabor"):
        runs[f"{init}_s1"] = flags(
            f"{init}_s1",
            f"--init={init}",
            "--seed=1",
            "--auc_thresholds=0.01,0.999",
            "--threshold_rule=first",
            "--threshold_tasks=referable_dr",
        )
    runs["mirrored"] = flags("mirrored", "--strategy=mirrored", "--train_steps=2")
    runs["mixed_float16"] = flags("mixed_float16", "--precision=mixed_float16", "--train_steps=2")
    runs.update(
        bad_model=flags("bad_model", "--model=cbr_huge"),
        bad_init=flags("bad_init", "--init=imagenet_plus"),
        bad_dataset=helpers.train_flags(str(root / "no_such_dataset"), str(root / "x")),
        bad_batch=flags("bad_batch", "--strategy=mirrored", "--batch_size=3"),
        bad_steps=flags("bad_steps", "--train_steps=0"),
        bad_schedule=flags("bad_schedule", "--lr_schedule=linear"),
        bad_widths=flags("bad_widths", "--widths=8,wide"),
        bad_source=flags("bad_source", "--init=imagenet", f"--source_weights={root / 'none'}"),
        bad_rule=flags("bad_rule", "--threshold_rule=median"),
        bad_tasks=flags("bad_tasks", "--threshold_tasks=referable_dr,Edema"),
        repeated_tasks=flags("repeated_tasks", "--threshold_tasks=referable_dr,referable_dr"),
        nan=flags("nan", "--learning_rate=1e30", "--optimizer=sgd", "--train_steps=6"),
        det_a=flags("det_a", "--deterministic", "--seed=3"),
        det_b=flags("det_b", "--deterministic", "--seed=3"),
        softmax=helpers.train_flags(
            natural, str(root / "softmax"), "--train_steps=8", "--eval_every_steps=4"
        ),
        bad_loss=flags("bad_loss", "--loss=hinge"),
        softmax_multilabel=flags("softmax_multilabel", "--loss=softmax"),
        subset_s1=flags("subset_s1", "--train_examples=10", "--seed=1"),
        subset_s2=flags("subset_s2", "--train_examples=10", "--seed=2", "--init=gabor"),
        subset_other=flags("subset_other", "--train_examples=10", "--seed=1", "--subset_seed=7"),
        bad_subset_seed=flags("bad_subset_seed", "--train_examples=10", "--subset_seed=-1"),
    )

    def build(path):
        records = helpers.run_cli_batch("train", list(runs.values()), two_cpu_devices=True)
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "records.json"), "w") as f:
            json.dump(dict(zip(runs, records, strict=True)), f)

    path = helpers.build_once(tmp_path_factory, "train_cli_records", "records.json", build)
    with open(os.path.join(path, "records.json")) as f:
        records = json.load(f)
    for name, rec in records.items():
        print(name, "seconds (wall, cpu):", rec.get("seconds"))
    return {"root": root, "data": data, "natural": natural, **records}


def _results(batch, name):
    rec = batch[name]
    assert rec["ok"], rec["error"]
    with open(batch["root"] / name / "results.json") as f:
        return json.load(f)


@pytest.mark.slow
@pytest.mark.parametrize("init", ["random", *INITS])
def test_each_init_trains_and_fills_the_workdir(batch, init):
    results = _results(batch, init)
    workdir = batch["root"] / init
    for name in WORKDIR_FILES:
        assert (workdir / name).exists(), name
    assert set(RESULT_KEYS) <= set(results)
    assert results["train_steps"] == 4 and results["init"] == init
    assert results["tasks"] == ["referable_dr"]
    history = [json.loads(x) for x in (workdir / "eval_history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history] == [0, 2, 4]  # the init is evaluated too
    for record in history:
        assert {"step", "auc", "auc_mean", "auprc", "auprc_mean", "loss"} <= set(record)
        assert 0.0 <= record["auc_mean"] <= 1.0
    assert results["final_auc_mean"] == history[-1]["auc_mean"]
    assert results["best_auc_mean"] == max(r["auc_mean"] for r in history)
    report = json.loads((workdir / "init_report.json").read_text())
    hows = {row["how"] for row in report["rows"]}
    assert "new_head" in hows
    config = json.loads((workdir / "config.json").read_text())
    assert config["init"]["name"] == init and config["model"]["widths"] == [8, 16]
    assert config["train"]["threshold_rule"] == "sustained"  # the default
    assert config["train"]["threshold_tasks"] == []
    assert results["threshold_rule"] == "sustained" and results["threshold_tasks"] == []
    assert 0.0 <= results["auc_curve_area"] <= 1.0
    if init == "random":
        # every AUC is >= 0.01 from the step-0 eval on: crossed at step 0, nothing to interpolate
        assert results["steps_to_threshold"]["0.01"] == 0
        assert results["steps_to_threshold_interpolated"]["0.01"] == 0.0
        assert results["steps_to_threshold_censored"]["0.01"] is False
        assert results["steps_to_threshold"]["0.999"] is None
        assert results["steps_to_threshold_interpolated"]["0.999"] is None
        assert results["steps_to_threshold_censored"]["0.999"] is True
    if init in ("imagenet", "transfusion", "meanvar"):
        assert results["source_sha256"] and len(results["source_sha256"]) == 64
        assert {"copied", "meanvar"} & hows


@pytest.mark.slow
def test_threshold_flags_are_recorded_and_applied(batch):
    results = _results(batch, "random_s1")
    config = json.loads((batch["root"] / "random_s1" / "config.json").read_text())
    assert config["train"]["threshold_rule"] == "first"
    assert config["train"]["threshold_tasks"] == ["referable_dr"]
    assert results["threshold_rule"] == "first"
    assert results["threshold_tasks"] == ["referable_dr"]
    assert results["steps_to_threshold"] == {"0.01": 0, "0.999": None}
    assert results["steps_to_threshold_censored"] == {"0.01": False, "0.999": True}


@pytest.mark.slow
def test_final_validation_predictions_are_saved(batch):
    from transfusion_tf.training import metrics, predictions

    results = _results(batch, "random")
    saved = predictions.load_predictions(str(batch["root"] / "random" / "valid_predictions.npz"))
    assert saved.tasks == ("referable_dr",) and saved.step == 4
    assert saved.example_id.size == saved.num_examples > 0
    again = metrics.auc_report(
        labels=saved.labels, scores=saved.scores, mask=saved.mask, tasks=saved.tasks
    )
    assert again["auc_mean"] == pytest.approx(results["final_auc_mean"], abs=1e-6)


@pytest.mark.slow
def test_report_cli_pairs_trained_runs_by_seed(batch, tmp_path):
    """transfusion-report over real workdirs: --baseline_init, pairs by seed, resamples images."""
    import csv
    import subprocess
    import sys

    root = batch["root"]
    for name in ("random", "random_s1", "gabor", "gabor_s1"):
        _results(batch, name)
    workdirs = ",".join(str(root / n) for n in ("random", "random_s1", "gabor", "gabor_s1"))
    out = tmp_path / "report"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "transfusion_tf.cli.report",
            f"--workdirs={workdirs}",
            f"--output_dir={out}",
            "--baseline_init=gabor",
            "--bootstrap_samples=200",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=helpers.env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "comparisons.csv") as f:
        rows = {r["metric"]: r for r in csv.DictReader(f)}
    for metric in ("valid_auc", "auc_curve_area"):
        row = rows[metric]
        assert (row["init"], row["baseline"], row["paired"], row["n_pairs"]) == (
            "random",
            "gabor",
            "true",
            "2",
        )
        assert float(row["ci_low"]) <= float(row["mean_diff"]) <= float(row["ci_high"])
        assert row["verdict"] in ("higher", "lower", "no evidence")
    assert rows["valid_auc"]["images_resampled"] == "true"
    assert "random vs gabor" in proc.stdout
    text = (out / "report.md").read_text()
    assert text.index("## Comparisons with `gabor`") < text.index("## Final AUC")

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "transfusion_tf.cli.report",
            f"--workdirs={workdirs}",
            f"--output_dir={tmp_path / 'bad'}",
            "--baseline_init=imagenet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=helpers.env(),
    )
    assert proc.returncode != 0
    assert "--baseline_init='imagenet' matches no run" in proc.stderr
    assert "random, gabor" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_resnet50_one_step(tmp_path_factory, tmp_path):
    data = helpers.tiny_dataset(tmp_path_factory)
    argv = [
        f"--dataset_dir={data}",
        f"--workdir={tmp_path / 'resnet50'}",
        "--model=resnet50",
        "--image_size=32",
        "--batch_size=4",
        "--train_steps=1",
        "--eval_every_steps=1",
        "--steps_per_loop=1",
        "--momentum=0",
        "--learning_rate=0.001",
    ]
    (rec,) = helpers.run_cli_batch("train", [argv])
    assert rec["ok"], rec["error"]
    results = json.loads((tmp_path / "resnet50" / "results.json").read_text())
    assert results["train_steps"] == 1 and results["model"] == "resnet50"
    assert (tmp_path / "resnet50" / "weights" / "best.weights.h5").exists()


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus(batch):
    results = _results(batch, "mirrored")
    assert results["strategy"] == "mirrored" and results["num_replicas"] == 2
    assert results["train_steps"] == 2
    assert 0.0 <= results["final_auc_mean"] <= 1.0


@pytest.mark.slow
def test_mixed_float16_with_loss_scaling(batch):
    results = _results(batch, "mixed_float16")
    assert results["precision"] == "mixed_float16" and results["train_steps"] == 2
    assert 0.0 <= results["final_auc_mean"] <= 1.0


@pytest.mark.slow
def test_finished_workdir_is_reported_not_retrained(batch):
    first = _results(batch, "random")
    again = batch["random_again"]
    assert again["ok"], again["error"]
    assert json.loads(again["stdout"])["final_auc_mean"] == first["final_auc_mean"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("conflict", "--workdir="),
        ("bad_model", "--model='cbr_huge'"),
        ("bad_init", "--init='imagenet_plus'"),
        ("bad_dataset", "--dataset_dir"),
        ("bad_batch", "--batch_size=3"),
        ("bad_steps", "--train_steps"),
        ("bad_schedule", "--lr_schedule"),
        ("bad_widths", "--widths"),
        ("bad_source", "none"),
        ("bad_loss", "--loss"),
        ("softmax_multilabel", "--loss=softmax needs a single-label dataset"),
        ("bad_subset_seed", "--subset_seed must be >= 0; got -1"),
        ("bad_rule", "--threshold_rule=median"),
        ("bad_tasks", "--threshold_tasks names tasks ['Edema']"),
        ("repeated_tasks", "--threshold_tasks names ['referable_dr'] more than once"),
    ],
)
def test_bad_flags_are_usage_errors_naming_the_flag(batch, name, needle):
    rec = batch[name]
    assert not rec["ok"]
    assert rec["error"].startswith(("UsageError", "FlagError")), rec["error"]
    assert needle in rec["error"]
    assert "Traceback" not in rec["error"]


@pytest.mark.slow
def test_nan_loss_stops_with_a_clear_message(batch):
    rec = batch["nan"]
    assert rec["exit_code"] == 1
    assert re.search(r"training loss became (nan|-?inf)\b", rec["error"].lower()), rec["error"]
    assert not (batch["root"] / "nan" / "results.json").exists()


@pytest.mark.slow
def test_deterministic_runs_give_identical_weights(batch):
    from transfusion_tf import workdir as workdir_lib

    _results(batch, "det_a")
    _results(batch, "det_b")
    _, a = workdir_lib.load_model(str(batch["root"] / "det_a"))
    _, b = workdir_lib.load_model(str(batch["root"] / "det_b"))
    for wa, wb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
    _, init = workdir_lib.load_model(str(batch["root"] / "det_a"), weights="init")
    assert any(
        not np.array_equal(wa.numpy(), wi.numpy())
        for wa, wi in zip(a.weights, init.weights, strict=True)
    )


@pytest.mark.slow
def test_console_entry_point_exits_nonzero_without_traceback(tmp_path):
    proc = helpers.run_cli("train", ["--dataset_dir", str(tmp_path / "missing"), "--workdir", "w"])
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "--dataset_dir" in err and "Traceback" not in err
    assert not os.path.exists("w")


@pytest.mark.slow
def test_softmax_source_training_end_to_end(batch):
    """A single-label dataset trains with a softmax under --loss=auto; top-1/top-5 recorded."""
    from tensorboard.backend.event_processing import event_accumulator

    results = _results(batch, "softmax")
    workdir = batch["root"] / "softmax"
    config = json.loads((workdir / "config.json").read_text())
    assert config["train"]["loss"] == "softmax"  # auto, resolved and recorded
    assert results["loss_function"] == "softmax" and len(results["tasks"]) == 12
    history = [json.loads(x) for x in (workdir / "eval_history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history] == [0, 4, 8]  # the init is evaluated too
    for record in history:
        assert 0.0 <= record["top1_accuracy"] <= record["top5_accuracy"] <= 1.0
        assert np.isfinite(record["loss"]) and 0.0 <= record["auc_mean"] <= 1.0
    assert results["final_top1_accuracy"] == history[-1]["top1_accuracy"]
    assert results["final_top5_accuracy"] == history[-1]["top5_accuracy"]
    acc = event_accumulator.EventAccumulator(str(workdir / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["tensors"])
    assert {"eval/top1_accuracy", "eval/top5_accuracy", "eval/loss", "train/loss"} <= tags
    # The sigmoid runs record their loss and no accuracy.
    sigmoid = _results(batch, "random")
    assert sigmoid["loss_function"] == "sigmoid" and sigmoid["final_top1_accuracy"] is None


@pytest.mark.slow
def test_softmax_eval_loss_is_the_training_loss_of_the_final_weights(batch):
    """eval_history's loss = the softmax training loss of the final weights on the split."""
    import tensorflow as tf

    from transfusion_tf import workdir as workdir_lib
    from transfusion_tf.data import pipeline
    from transfusion_tf.training import losses

    workdir = str(batch["root"] / "softmax")
    cfg, model = workdir_lib.load_model(workdir)
    assert cfg.train.loss == "softmax"
    valid = pipeline.build_dataset(
        dataset_dir=batch["natural"],
        split="valid",
        batch_size=64,
        image_size=cfg.model.image_size,
        channels=cfg.model.channels,
        training=False,
    )
    (whole,) = list(valid)  # one batch: the whole split
    logits = model(whole["image"], training=False)
    want = losses.step_loss(
        "softmax",
        labels=whole["labels"],
        logits=logits,
        mask=whole["mask"],
        global_batch_size=int(tf.shape(logits)[0]),
    )
    final = workdir_lib.read_history(workdir)[-1]
    assert final["loss"] == pytest.approx(float(want), rel=1e-4)


@pytest.mark.slow
def test_subset_seed_alone_picks_the_training_images(batch):
    """Two seeds (and inits) share the subset of one --subset_seed; another draws others."""
    from transfusion_tf.data import pipeline

    s1, s2, other = (_results(batch, n) for n in ("subset_s1", "subset_s2", "subset_other"))
    root = batch["root"]
    ids = {n: (root / n / "train_subset.txt").read_text() for n in ("subset_s1", "subset_s2")}
    want = pipeline.train_subset_ids(batch["data"], num_examples=10, subset_seed=0)
    assert ids["subset_s1"] == ids["subset_s2"] == "".join(i.decode() + "\n" for i in want)
    assert s1["train_subset_sha256"] == s2["train_subset_sha256"] is not None
    assert other["train_subset_sha256"] != s1["train_subset_sha256"]
    config = json.loads((root / "subset_other" / "config.json").read_text())
    assert config["data"]["subset_seed"] == 7 and config["data"]["train_examples"] == 10
    assert json.loads((root / "subset_s1" / "config.json").read_text())["data"]["subset_seed"] == 0
    assert _results(batch, "random")["train_subset_sha256"] is None


def test_flags_are_the_config_fields():
    """Every config field is set by exactly one flag (or derived); each flag's default, help
    and list values are its fields'; config field names in messages read as flags."""
    import dataclasses

    from absl import flags

    from transfusion_tf import config
    from transfusion_tf.cli import train

    set_by = [path for flag in train.FLAG_TABLE for path in flag.fields]
    assert len(set_by) == len(set(set_by))
    every = {
        f"{section}.{f.name}"
        for section, cls in train.SECTIONS.items()
        for f in dataclasses.fields(cls)
    }
    assert set(set_by) | set(train.DERIVED) == every and not set(set_by) & set(train.DERIVED)
    for flag in train.FLAG_TABLE:
        defined = flags.FLAGS[flag.name]
        for path in flag.fields:
            cls, name, _, default = train.field_spec(path)
            if isinstance(default, tuple):
                assert defined.default == [str(v) for v in default], path
            else:
                assert defined.default == (default if default != "" else None), path
            assert config.field_help(cls, name) in defined.help or len(flag.fields) > 1, path
    assert train.in_flag_terms("TrainConfig.learning_rate must be > 0") == (
        "--learning_rate must be > 0"
    )
    assert train.in_flag_terms("ModelConfig.name='x'; ModelConfig.num_tasks=2") == (
        "--model='x'; ModelConfig.num_tasks=2"
    )


def test_flag_settings_build_the_default_config():
    """With no flag given, the flags set every field to its config default (required paths:
    None, which `validate` reports as missing)."""
    import copy
    import dataclasses

    from absl import flags

    from transfusion_tf.cli import train

    fv = copy.deepcopy(flags.FLAGS)
    fv.unparse_flags()
    fv(["transfusion-train"])
    settings = train.flag_settings(fv)
    for section, cls in train.SECTIONS.items():
        defaults = {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}
        for name, value in settings[section].items():
            assert value == (None if defaults[name] == "" else defaults[name]), (section, name)
