"""SavedModel export of a finished run (SPEC T6), in TF-Serving layout `<export_dir>/<name>/<N>/`.

Signatures:
- `serving_default`: `image_bytes` string [B] (encoded PNG 8/16-bit or JPEG, any size) ->
  {"probabilities": float32 [B, T]}: per-task sigmoids for a run trained with the sigmoid loss,
  a softmax over the T classes (rows sum to 1) for a softmax-trained run (the run's
  `train.loss`, recorded as "loss" in `assets/provenance.json`). Decoding and preprocessing call
  `transfusion_tf.data.preprocess.decode_and_preprocess`, the function the training input
  pipeline uses, so serving and training never drift.
- `serving_images`: `images` float32 [B, S, S, C], already preprocessed exactly as that function
  returns them (scaled, resized to S = image_size, normalised by the model's preprocess mode;
  see `assets/preprocessing.json`) -> {"probabilities": float32 [B, T]}.

`assets/` holds `tasks.txt` (one task per line, in output order), `preprocessing.json`,
`config.json` (the run's resolved configuration), `provenance.json` (model, init, source and
weights SHA-256, library versions, results), `init_report_summary.txt` and
`dataset_info.json` (the training dataset's summary).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from typing import Any

import keras
import tensorflow as tf
from absl import logging

from transfusion_tf import workdir as workdir_lib
from transfusion_tf.training import losses, trainer

SIGNATURE_BYTES = "serving_default"
SIGNATURE_IMAGES = "serving_images"
PROBABILITIES = {
    "sigmoid": "one sigmoid per task (multi-label)",
    "softmax": "softmax over the tasks as mutually exclusive classes (rows sum to 1)",
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ExportError(ValueError):
    """An export request that cannot be honoured (message names the flag or path)."""


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ServingModule(tf.Module):
    """A run's model with its two serving functions (see module docstring)."""

    def __init__(
        self,
        model: keras.Model,
        *,
        image_size: int,
        channels: int,
        preprocess_mode: str,
        loss: str = "sigmoid",
        assets: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        from transfusion_tf.data import preprocess

        self.model = model
        self._decode = preprocess.decode_and_preprocess
        self._image_size = image_size
        self._channels = channels
        self._mode = preprocess_mode
        self._loss = loss
        self.asset_files = {k: tf.saved_model.Asset(v) for k, v in (assets or {}).items()}
        image_spec = tf.TensorSpec([image_size, image_size, channels], tf.float32)
        self.serve_bytes = tf.function(
            self._serve_bytes,
            input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
        )
        self.serve_images = tf.function(
            self._serve_images,
            input_signature=[
                tf.TensorSpec([None, image_size, image_size, channels], tf.float32, name="images")
            ],
        )
        self._image_spec = image_spec

    def _probabilities(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = self.model(images, training=False)
        return {"probabilities": losses.probabilities(logits, loss=self._loss)}

    def _serve_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        images = tf.map_fn(
            lambda encoded: self._decode(
                encoded,
                image_size=self._image_size,
                channels=self._channels,
                mode=self._mode,
            ),
            image_bytes,
            fn_output_signature=self._image_spec,
        )
        return self._probabilities(images)

    def _serve_images(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._probabilities(images)


def _next_version(model_dir: str) -> int:
    if not os.path.isdir(model_dir):
        return 1
    versions = [int(d) for d in os.listdir(model_dir) if d.isdigit()]
    return max(versions, default=0) + 1


def export_saved_model(
    *,
    workdir: str,
    export_dir: str,
    name: str,
    version: int | None = None,
    weights: str = "final",
) -> str:
    """Exports the run in `workdir` to `<export_dir>/<name>/<version>/`; returns that path.

    Args:
      workdir: a finished `transfusion-train` workdir.
      export_dir: the TF-Serving model base directory (e.g. `savedmodels`).
      name: model name (letters, digits, `_.-`).
      version: positive integer; None picks one more than the highest existing version.
      weights: which weights of the run to export: "final", "best" or "init".

    Raises:
      ExportError for a bad name/version or an existing target, FileNotFoundError for a missing
      workdir file.
    """
    from transfusion_tf.models import registry as model_registry

    if not _NAME_RE.match(name or ""):
        raise ExportError(f"--name={name!r} must be letters, digits, '_', '.' or '-'")
    model_dir = os.path.join(export_dir, name)
    if version is None:
        version = _next_version(model_dir)
    if version < 1:
        raise ExportError(f"--version={version} must be a positive integer")
    target = os.path.join(model_dir, str(version))
    if os.path.exists(target):
        raise ExportError(f"{target} already exists; choose another --version")

    cfg, model = workdir_lib.load_model(workdir, weights=weights)
    weights_path = workdir_lib.weights_path(workdir, weights)
    mode = model_registry.default_preprocess_mode(cfg.model.name)
    results = _optional_json(os.path.join(workdir, workdir_lib.RESULTS_FILE))
    init_report = _optional_json(os.path.join(workdir, workdir_lib.INIT_REPORT_FILE))
    dataset_info = _dataset_info(cfg.data.dataset_dir)
    tasks = (results or {}).get("tasks") or (dataset_info or {}).get("tasks")
    if not tasks:
        raise FileNotFoundError(
            f"cannot find the task names: neither {workdir}/results.json nor the dataset "
            f"{cfg.data.dataset_dir} is readable"
        )

    staging = tempfile.mkdtemp(prefix="export_assets_")
    try:
        files = {
            "tasks": ("tasks.txt", "".join(f"{t}\n" for t in tasks)),
            "preprocessing": (
                "preprocessing.json",
                _dumps(
                    {
                        "image_size": cfg.model.image_size,
                        "channels": cfg.model.channels,
                        "mode": mode,
                        "function": "transfusion_tf.data.preprocess.decode_and_preprocess",
                        "signatures": {
                            SIGNATURE_BYTES: "image_bytes: string [B] encoded PNG/JPEG",
                            SIGNATURE_IMAGES: (
                                f"images: float32 [B, {cfg.model.image_size}, "
                                f"{cfg.model.image_size}, {cfg.model.channels}] as returned by "
                                "decode_and_preprocess"
                            ),
                        },
                    }
                ),
            ),
            "config": ("config.json", cfg.to_json() + "\n"),
            "provenance": (
                "provenance.json",
                _dumps(
                    {
                        "model": cfg.model.name,
                        "loss": cfg.train.loss,
                        "probabilities": PROBABILITIES[cfg.train.loss],
                        "init": cfg.init.to_dict(),
                        "source_file": (init_report or {}).get("source_file"),
                        "source_sha256": (init_report or {}).get("source_sha256"),
                        "weights": weights,
                        "weights_sha256": _sha256(weights_path),
                        "run": os.path.basename(os.path.normpath(workdir)),
                        "results": results,
                        "export_versions": trainer.versions(),
                    }
                ),
            ),
            "init_report_summary": ("init_report_summary.txt", _init_summary(init_report)),
        }
        if dataset_info is not None:
            files["dataset_info"] = ("dataset_info.json", _dumps(dataset_info))
        assets = {}
        for key, (filename, text) in files.items():
            path = os.path.join(staging, filename)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            assets[key] = path
        module = ServingModule(
            model,
            image_size=cfg.model.image_size,
            channels=cfg.model.channels,
            preprocess_mode=mode,
            loss=cfg.train.loss,
            assets=assets,
        )
        os.makedirs(model_dir, exist_ok=True)
        partial = tempfile.mkdtemp(prefix=f".{version}.partial-", dir=model_dir)
        try:
            tf.saved_model.save(
                module,
                partial,
                signatures={
                    SIGNATURE_BYTES: module.serve_bytes,
                    SIGNATURE_IMAGES: module.serve_images,
                },
            )
            os.replace(partial, target)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logging.info("exported %s (%s weights) to %s", workdir, weights, target)
    return target


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def _optional_json(path: str) -> Any:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _dataset_info(dataset_dir: str) -> dict[str, Any] | None:
    from transfusion_tf.data import info as info_lib

    try:
        return info_lib.load_dataset_info(dataset_dir)
    except (FileNotFoundError, ValueError):
        logging.warning("dataset %s is not readable; exporting without its summary", dataset_dir)
        return None


def _init_summary(report: dict[str, Any] | None) -> str:
    """A short text of the init report: counts of how each variable was set, and the source."""
    if not report:
        return "no init report\n"
    counts: dict[str, int] = {}
    for row in report.get("rows", []):
        counts[row.get("how", "?")] = counts.get(row.get("how", "?"), 0) + 1
    lines = [
        f"init: {report.get('init', report.get('strategy', ''))}",
        f"source_file: {report.get('source_file')}",
        f"source_sha256: {report.get('source_sha256')}",
    ]
    lines += [f"{how}: {n} variables" for how, n in sorted(counts.items())]
    return "\n".join(lines) + "\n"


def load_tasks(saved_model_dir: str) -> list[str]:
    """Task names of an exported model, from `assets/tasks.txt`."""
    path = os.path.join(saved_model_dir, "assets", "tasks.txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: not a transfusion-export SavedModel")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def load_loss(saved_model_dir: str) -> str:
    """The loss an exported model was trained with ("sigmoid" or "softmax").

    From `assets/provenance.json`; exports from before the loss was recorded are "sigmoid".
    """
    path = os.path.join(saved_model_dir, "assets", "provenance.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: not a transfusion-export SavedModel")
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("loss", "sigmoid")


def load_preprocessing(saved_model_dir: str) -> dict[str, Any]:
    """Preprocessing settings of an exported model, from `assets/preprocessing.json`."""
    path = os.path.join(saved_model_dir, "assets", "preprocessing.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: not a transfusion-export SavedModel")
    with open(path, encoding="utf-8") as f:
        return json.load(f)
