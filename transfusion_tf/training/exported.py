"""The layout of a `transfusion-export` SavedModel, and reading one back to evaluate it.

`export.saved_model` writes `<export_dir>/<name>/<N>/` with these names; `training.evaluation`
scores such a directory through `load_exported`. A SavedModel holds:
  saved_model.pb, variables/   the serving module (signatures below)
  assets/tasks.txt             one task name per line, in output order
  assets/preprocessing.json    image_size, channels, preprocess mode of the serving input
  assets/config.json           the run's resolved configuration
  assets/provenance.json       model, loss, init, source and weights SHA-256, versions, results
  assets/init_report_summary.txt, assets/dataset_info.json
Signatures: `serving_default` (`image_bytes` string [B]) and `serving_images` (`images`
float32 [B, S, S, C], preprocessed), both -> {"probabilities": float32 [B, T]}.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from transfusion_tf import workdir as workdir_lib

SIGNATURE_BYTES = "serving_default"
SIGNATURE_IMAGES = "serving_images"
PROBABILITIES_KEY = "probabilities"
SAVED_MODEL_FILE = "saved_model.pb"
ASSETS_DIR = "assets"
TASKS_FILE = "tasks.txt"
PREPROCESSING_FILE = "preprocessing.json"
CONFIG_FILE = workdir_lib.CONFIG_FILE
PROVENANCE_FILE = "provenance.json"
INIT_SUMMARY_FILE = "init_report_summary.txt"
DATASET_INFO_FILE = "dataset_info.json"


def _asset(saved_model_dir: str, name: str) -> str:
    """Path of an asset; FileNotFoundError naming it when the directory is not an export."""
    path = os.path.join(saved_model_dir, ASSETS_DIR, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: not a transfusion-export SavedModel")
    return path


def load_tasks(saved_model_dir: str) -> list[str]:
    """Task names of an exported model, from `assets/tasks.txt`."""
    with open(_asset(saved_model_dir, TASKS_FILE), encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def load_loss(saved_model_dir: str) -> str:
    """The loss an exported model was trained with ("sigmoid" or "softmax").

    From `assets/provenance.json`; exports from before the loss was recorded are "sigmoid".
    """
    return workdir_lib.read_json(_asset(saved_model_dir, PROVENANCE_FILE)).get("loss", "sigmoid")


def load_preprocessing(saved_model_dir: str) -> dict[str, Any]:
    """Preprocessing settings of an exported model, from `assets/preprocessing.json`."""
    return workdir_lib.read_json(_asset(saved_model_dir, PREPROCESSING_FILE))


@dataclasses.dataclass(frozen=True)
class Exported:
    """An exported model read back: `predict` maps float32 images [B, S, S, C], preprocessed
    as `preprocessing` says, to probabilities [B, T] (T = len(tasks))."""

    predict: Callable[[tf.Tensor], tf.Tensor]
    preprocessing: dict[str, Any]
    tasks: list[str]
    loss: str


def load_exported(saved_model_dir: str) -> Exported:
    """Loads a `transfusion-export` SavedModel's `serving_images` signature and its assets.

    Raises FileNotFoundError naming `--saved_model` or the asset that is missing.
    """
    if not os.path.isfile(os.path.join(saved_model_dir, SAVED_MODEL_FILE)):
        raise FileNotFoundError(f"--saved_model: no {SAVED_MODEL_FILE} in {saved_model_dir}")
    tasks = load_tasks(saved_model_dir)
    preprocessing = load_preprocessing(saved_model_dir)
    loss = load_loss(saved_model_dir)
    fn = tf.saved_model.load(saved_model_dir).signatures[SIGNATURE_IMAGES]

    def predict(images: tf.Tensor) -> tf.Tensor:
        return fn(images=images)[PROBABILITIES_KEY]

    return Exported(predict=predict, preprocessing=preprocessing, tasks=tasks, loss=loss)
