"""T6: `transfusion-export` SavedModel: both signatures, assets, equality with the Keras model in
a fresh process on raw PNG (8/16-bit) and JPEG bytes, `saved_model_cli show --all`, bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import test_train_helpers as helpers

from transfusion_tf import workdir as workdir_lib
from transfusion_tf.data import encode, preprocess
from transfusion_tf.export import saved_model
from transfusion_tf.training import trainer

# Loads the SavedModel in a fresh process, runs serving_default on the given encoded images,
# then runs `saved_model_cli show --all` on it.
_FRESH = r"""
import json, sys
import numpy as np, tensorflow as tf
path, blobs = sys.argv[1], json.load(open(sys.argv[2]))
loaded = tf.saved_model.load(path)
fn = loaded.signatures["serving_default"]
probs = fn(image_bytes=tf.constant([bytes.fromhex(b) for b in blobs]))["probabilities"]
print("PROBS " + json.dumps(probs.numpy().tolist()), flush=True)
from tensorflow.python.tools import saved_model_cli
sys.argv = ["saved_model_cli", "show", "--dir", path, "--all"]
saved_model_cli.main()
"""


def _images():
    rng = np.random.default_rng(1)
    rgb8 = rng.integers(0, 256, size=(40, 36, 3), dtype=np.uint8)
    gray16 = (rng.random((30, 30, 1)) * 65535).astype(np.uint16)
    jpeg_src = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    return [
        encode.encode_png(rgb8),
        encode.encode_png(gray16),
        encode.encode_jpeg(jpeg_src),
    ]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    workdir = helpers.tiny_run(tmp_path_factory)
    export_dir = str(tmp_path_factory.mktemp("savedmodels"))
    path = saved_model.export_saved_model(
        workdir=workdir, export_dir=export_dir, name="tiny", version=3
    )
    return workdir, export_dir, path


def _keras_probabilities(workdir, blobs):
    cfg, model = workdir_lib.load_model(workdir)
    images = tf.stack(
        [
            preprocess.decode_and_preprocess(
                tf.constant(b),
                image_size=cfg.model.image_size,
                channels=cfg.model.channels,
                mode="unit",
            )
            for b in blobs
        ]
    )
    return tf.sigmoid(model(images, training=False)).numpy(), images.numpy()


@pytest.mark.slow
def test_fresh_process_matches_keras_and_cli_lists_signatures(exported, tmp_path):
    workdir, _, path = exported
    assert path.endswith(os.path.join("tiny", "3"))
    blobs = _images()
    blob_file = tmp_path / "blobs.json"
    blob_file.write_text(json.dumps([b.hex() for b in blobs]))
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH, path, str(blob_file)],
        capture_output=True,
        text=True,
        env=helpers.env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    probs_line = next(x for x in proc.stdout.splitlines() if x.startswith("PROBS "))
    want, _ = _keras_probabilities(workdir, blobs)
    np.testing.assert_allclose(np.array(json.loads(probs_line[6:])), want, atol=1e-5)
    cli = proc.stdout
    assert "signature_def['serving_default']" in cli
    assert "signature_def['serving_images']" in cli
    assert "image_bytes" in cli and "probabilities" in cli


def test_image_signature_and_assets(exported):
    workdir, _, path = exported
    loaded = tf.saved_model.load(path)
    blobs = _images()
    want, images = _keras_probabilities(workdir, blobs)
    got = loaded.signatures["serving_images"](images=tf.constant(images))["probabilities"]
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    assets = os.path.join(path, "assets")
    assert saved_model.load_tasks(path) == ["referable_dr"]
    prep = saved_model.load_preprocessing(path)
    assert prep["image_size"] == helpers.IMAGE_SIZE and prep["mode"] == "unit"
    with open(os.path.join(assets, "provenance.json")) as f:
        provenance = json.load(f)
    assert provenance["model"] == "cbr_tiny" and len(provenance["weights_sha256"]) == 64
    assert os.path.exists(os.path.join(assets, "dataset_info.json"))
    assert os.path.exists(os.path.join(assets, "config.json"))
    with open(os.path.join(assets, "init_report_summary.txt")) as f:
        assert "random" in f.read()


def test_export_bad_input(exported, tmp_path):
    workdir, export_dir, _ = exported
    with pytest.raises(saved_model.ExportError, match="already exists"):
        saved_model.export_saved_model(
            workdir=workdir, export_dir=export_dir, name="tiny", version=3
        )
    with pytest.raises(saved_model.ExportError, match="--name"):
        saved_model.export_saved_model(workdir=workdir, export_dir=export_dir, name="../x")
    with pytest.raises(saved_model.ExportError, match="--version"):
        saved_model.export_saved_model(
            workdir=workdir, export_dir=export_dir, name="tiny", version=0
        )
    with pytest.raises(FileNotFoundError, match="config.json"):
        saved_model.export_saved_model(
            workdir=str(tmp_path / "nowhere"), export_dir=export_dir, name="tiny"
        )
    with pytest.raises(FileNotFoundError, match="not a transfusion-export SavedModel"):
        saved_model.load_tasks(str(tmp_path))


@pytest.mark.slow
def test_export_cli(exported, tmp_path):
    workdir, _, _ = exported
    args = [f"--workdir={workdir}", "--name=tiny", f"--export_dir={tmp_path}"]
    first, second, bad = helpers.run_cli_batch(
        "export", [args, [*args, "--version=1"], [*args[:-1], "--name=a/b"]]
    )
    assert first["ok"], first["error"]
    assert first["stdout"].strip() == str(tmp_path / "tiny" / "1")
    assert (tmp_path / "tiny" / "1" / "saved_model.pb").exists()
    assert second["error"].startswith("UsageError") and "already exists" in second["error"]
    assert bad["error"].startswith("UsageError") and "--name" in bad["error"]


@pytest.mark.slow
def test_softmax_run_exports_softmax_probabilities(tmp_path_factory, tmp_path):
    """A softmax-trained run serves a softmax over its classes; evaluation reads the loss."""
    from transfusion_tf.training import evaluation

    natural = helpers.tiny_dataset(tmp_path_factory, kind="natural")
    workdir = str(tmp_path / "softmax_run")
    trainer.train_and_evaluate(
        helpers.tiny_config(natural, workdir, train_steps=2, eval_every_steps=2)
    )
    path = saved_model.export_saved_model(
        workdir=workdir, export_dir=str(tmp_path / "savedmodels"), name="natural", version=1
    )
    cfg, model = workdir_lib.load_model(workdir)
    assert cfg.train.loss == "softmax" and saved_model.load_loss(path) == "softmax"
    images = np.random.default_rng(0).random((3, helpers.IMAGE_SIZE, helpers.IMAGE_SIZE, 3))
    images = tf.constant(images, tf.float32)
    loaded = tf.saved_model.load(path)
    got = loaded.signatures["serving_images"](images=images)["probabilities"].numpy()
    want = tf.nn.softmax(model(images, training=False)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    blobs = [encode.encode_png((np.asarray(i) * 255).astype(np.uint8)) for i in images]
    served = loaded.signatures["serving_default"](image_bytes=tf.constant(blobs))["probabilities"]
    np.testing.assert_allclose(served.numpy().sum(axis=1), 1.0, atol=1e-5)
    with open(os.path.join(path, "assets", "provenance.json")) as f:
        assert json.load(f)["loss"] == "softmax"
    for source in ({"saved_model": path}, {"workdir": workdir}):
        report = evaluation.evaluate(
            dataset_dir=natural,
            split="test",
            output_dir=str(tmp_path / "eval"),
            bootstrap_samples=5,
            **source,
        )
        assert report["loss_function"] == "softmax"
        assert 0.0 <= report["top1_accuracy"] <= report["top5_accuracy"] <= 1.0
