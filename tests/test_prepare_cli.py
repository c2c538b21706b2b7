"""`transfusion-prepare` and `transfusion-synth` as users run them (subprocesses): a raw layout
converted on 2 workers with its summary, the synthetic format, and bad flags / input turned
into one-line errors with a non-zero exit (those fail before TensorFlow is imported)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def run(module, *args):
    return subprocess.run(
        [sys.executable, "-m", f"transfusion_tf.cli.{module}", *args],
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
        timeout=300,
    )


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_raw")
    done = run(
        "synth",
        "--layout=chexpert",
        f"--output_dir={root}",
        "--num_examples=15",
        "--image_size=16",
        "--seed=5",
    )
    assert done.returncode == 0, done.stderr
    assert "convert with: transfusion-prepare --format=chexpert --input=" in done.stdout
    return root / "CheXpert-v1.0-small"


def test_prepare_end_to_end_on_two_workers(raw, tmp_path):
    out = tmp_path / "ds"
    done = run(
        "prepare",
        "--format=chexpert",
        f"--input={raw}",
        f"--output_dir={out}",
        "--workers=2",
        "--image_size=12",
        "--strict",
        "--uncertain_policy=ones",
        "--num_shards=2",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"dataset written to {out}" in done.stdout
    assert "positives / labelled" in done.stdout and "skipped inputs: 0" in done.stdout
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["label_policy"] == {"uncertain": "ones", "blank": "negative"}
    assert info["conversion"]["options"]["image_size"] == 12
    assert sum(s["num_examples"] for s in info["splits"].values()) == 15
    assert info["splits"]["train"]["num_shards"] == 2
    again = run("prepare", "--format=chexpert", f"--input={raw}", f"--output_dir={out}")
    assert again.returncode == 1 and "--overwrite" in again.stderr


def test_prepare_synthetic(tmp_path):
    done = run(
        "prepare",
        "--format=synthetic",
        "--synthetic_kind=cxr",
        "--num_examples=12",
        "--image_size=16",
        f"--output_dir={tmp_path}",
        "--workers=1",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert info["source_format"] == "synthetic_cxr" and len(info["tasks"]) == 5


def _one_line_error(done, *needles):
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


def test_bad_flags_and_input_exit_non_zero(raw, tmp_path):
    out = f"--output_dir={tmp_path / 'out'}"
    _one_line_error(run("prepare", "--format=dicomdir", "--input=x", out), "--format")
    _one_line_error(run("prepare", "--format=eyepacs", out), "--input is required")
    _one_line_error(
        run("prepare", "--format=aptos", f"--input={raw}", out, "--valid_fraction=1.5"),
        "valid_fraction",
    )
    missing = tmp_path / "nowhere"
    _one_line_error(run("prepare", "--format=eyepacs", f"--input={missing}", out), str(missing))
    _one_line_error(
        run("prepare", "--format=chexpert", f"--input={raw}", out, "--tasks=Nodule"),
        "unknown task(s) ['Nodule']",
    )
    _one_line_error(run("synth", "--layout=dicom", out, "--num_examples=0"), "num_examples")


def test_strict_fails_on_a_skipped_input_without_writing(raw, tmp_path):
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    (root / "train.csv").write_text(
        (raw / "train.csv").read_text() + "../../escape.jpg,Male,40,Frontal,AP" + "," * 14 + "\n"
    )
    (root / "train").symlink_to(raw / "train")
    out = tmp_path / "out"
    done = run("prepare", "--format=chexpert", f"--input={root}", f"--output_dir={out}", "--strict")
    _one_line_error(done, "skipped under --strict", "escapes the dataset root")
    assert not (out / "dataset_info.json").exists()


def test_console_script_is_installed(tmp_path):
    script = Path(sys.executable).parent / "transfusion-prepare"
    done = subprocess.run(
        [str(script), "--format=folder", f"--input={tmp_path}", f"--output_dir={tmp_path}/o"],
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
        timeout=120,
    )
    _one_line_error(done, "no images found")
