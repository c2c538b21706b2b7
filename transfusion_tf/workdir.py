"""The run record: every file and folder name of a `transfusion-train` workdir, defined once.

A workdir holds:
  config.json            the resolved RunConfig (written when training starts)
  init_report.json       how every variable was initialised (SPEC I6)
  weights/{init,final,best}.weights.h5
                         weights at step 0, at the end, and at the best validation AUC
  checkpoints/           backups for resume
  tensorboard/           TensorBoard logs
  eval_history.jsonl     one validation record per eval
  results.json           the run's results (see `training.trainer`)
  train_subset.txt       ids of the --train_examples subset, when there is one
  valid_predictions.npz  final validation probabilities, labels and mask (`training.predictions`)
  evaluation/            `transfusion-evaluate`'s default output (where the report looks):
                         evaluation_<split>.json, roc_<split>.png, predictions_<split>.npz
Every module that reads or writes a workdir takes these names from here, and reads the files
through the readers below, so a bad file gets one error wherever it is read: `WorkdirError`
(a `ValueError`) naming the file, or `MissingFileError` (also a `FileNotFoundError`) when a
file the caller needs is absent. Writers go through a temporary file and a rename, so a reader
never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

from absl import logging

if TYPE_CHECKING:  # the config and Keras load only when a run is read
    import keras

    from transfusion_tf import config as config_lib

CONFIG_FILE = "config.json"
INIT_REPORT_FILE = "init_report.json"
HISTORY_FILE = "eval_history.jsonl"
RESULTS_FILE = "results.json"
TRAIN_SUBSET_FILE = "train_subset.txt"
VALID_PREDICTIONS_FILE = "valid_predictions.npz"
CHECKPOINTS_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
EVALUATION_DIR = "evaluation"
WEIGHTS_DIR = "weights"
WEIGHTS = {
    which: os.path.join(WEIGHTS_DIR, f"{which}.weights.h5") for which in ("init", "final", "best")
}
INIT_WEIGHTS, FINAL_WEIGHTS, BEST_WEIGHTS = WEIGHTS["init"], WEIGHTS["final"], WEIGHTS["best"]


WEIGHT_CHOICES = ("final", "best", "init")


def evaluation_report_file(split: str) -> str:
    """The JSON report `transfusion-evaluate` writes for `split` (in its output directory)."""
    return f"evaluation_{split}.json"


def evaluation_roc_file(split: str) -> str:
    """The ROC figure `transfusion-evaluate` writes for `split`."""
    return f"roc_{split}.png"


def evaluation_predictions_file(split: str) -> str:
    """The predictions file `transfusion-evaluate` writes for `split` (`training.predictions`)."""
    return f"predictions_{split}.npz"


class WorkdirError(ValueError):
    """A workdir holds a bad file (the message names it) or lacks what the caller needs."""


class MissingFileError(WorkdirError, FileNotFoundError):
    """A file of the run record that the caller needs is absent (the message names it)."""


def weights_path(workdir: str, which: str) -> str:
    """Path of a workdir's `which` ("init", "final", "best") weights; ValueError for another."""
    if which not in WEIGHTS:
        raise ValueError(f"weights={which!r}: choose one of {', '.join(WEIGHT_CHOICES)}")
    return os.path.join(workdir, WEIGHTS[which])


def existing_weights(workdir: str, which: str) -> str:
    """`weights_path`, checked: MissingFileError naming the file when the run has not saved it."""
    path = weights_path(workdir, which)
    if not os.path.isfile(path):
        raise MissingFileError(
            f"{path} not found: workdir {workdir!r} has no {which} weights "
            "(has its training run finished?)"
        )
    return path


def versions() -> dict[str, str]:
    """Library versions, as a run's `results.json` and an export's provenance record them."""
    import platform

    import keras
    import numpy as np
    import sklearn
    import tensorflow as tf

    import transfusion_tf

    return {
        "transfusion_tf": transfusion_tf.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "python": platform.python_version(),
    }


def sha256(path: str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- writers -------------------------------------------------------------------------------


def write_text_atomic(path: str, text: str) -> None:
    """Writes a text file through a temporary file and a rename."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json_atomic(path: str, payload: Any, *, indent: int | None = 2) -> None:
    """Writes `payload` as JSON (sorted keys, trailing newline) through a rename."""
    write_text_atomic(path, json.dumps(payload, indent=indent, sort_keys=True) + "\n")


def append_history(workdir: str, record: dict[str, Any]) -> None:
    """Appends one eval record to `eval_history.jsonl` as one whole line."""
    with open(os.path.join(workdir, HISTORY_FILE), "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


# --- readers -------------------------------------------------------------------------------


def read_json(path: str) -> Any:
    """A JSON file; MissingFileError if absent, WorkdirError naming the file if not JSON."""
    if not os.path.isfile(path):
        raise MissingFileError(f"{path} not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise WorkdirError(f"{path}: not valid JSON ({err})") from err


def parse_config(text: str, *, path: str = CONFIG_FILE) -> config_lib.RunConfig:
    """A `config.json`'s text (read from `path`, named in errors) as a RunConfig.

    It holds the resolved loss; one without (from before the loss was recorded, read as
    "auto") trained with per-task sigmoids. One written before `image_size` had a single owner
    holds it under "data" too: it is dropped there when it equals the model's, and a
    WorkdirError naming `path` says so when the two disagree.
    """
    from transfusion_tf import config as config_lib

    raw = json.loads(text)
    data = raw.get("data") if isinstance(raw, dict) else None
    if isinstance(data, dict) and "image_size" in data:
        legacy = data.pop("image_size")
        model = raw.get("model")
        model_size = (model if isinstance(model, dict) else {}).get(
            "image_size", config_lib.ModelConfig.image_size
        )
        if legacy != model_size:
            raise WorkdirError(
                f"{path}: data.image_size={legacy} and model.image_size={model_size} disagree; "
                "a run has one input size (model.image_size)"
            )
    cfg = config_lib.RunConfig.from_dict(raw)
    if cfg.train.loss == "auto":
        cfg = cfg.replace(train=cfg.train.replace(loss="sigmoid"))
    return cfg


def read_config(workdir: str) -> config_lib.RunConfig:
    """The RunConfig of `<workdir>/config.json`.

    Raises MissingFileError when absent (not a `transfusion-train` workdir) and WorkdirError
    naming the file when it is not a run configuration.
    """
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise MissingFileError(f"{path} not found: {workdir} is not a transfusion-train workdir")
    try:
        with open(path, encoding="utf-8") as f:
            return parse_config(f.read(), path=path)
    except WorkdirError:
        raise
    except (ValueError, TypeError) as err:
        raise WorkdirError(f"{path} is not a valid run configuration: {err}") from err


def read_results(workdir: str) -> dict[str, Any] | None:
    """`results.json` (None while the run is unfinished); WorkdirError naming a bad file."""
    path = os.path.join(workdir, RESULTS_FILE)
    if not os.path.exists(path):
        return None
    results = read_json(path)
    if not isinstance(results, dict):
        raise WorkdirError(f"{path}: not a JSON object")
    return results


def read_init_report(workdir: str) -> dict[str, Any] | None:
    """`init_report.json` (None when the run has none); WorkdirError naming a bad file."""
    path = os.path.join(workdir, INIT_REPORT_FILE)
    return read_json(path) if os.path.exists(path) else None


def read_history(workdir: str) -> list[dict[str, Any]]:
    """The eval records of `eval_history.jsonl`, in file order (empty list if none).

    A last line without its newline that does not parse was cut by a kill while being written
    (the trainer appends whole lines): it is dropped with a warning, and the trainer writes that
    eval again when it resumes. Any other line that is not a JSON object with a "step" raises
    WorkdirError naming `file:line`, so a damaged record is never read as a shorter one.
    """
    path = os.path.join(workdir, HISTORY_FILE)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    records = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if lineno == len(lines):  # no newline after it: cut while being appended
                logging.warning("%s:%d: dropping a line cut while being written", path, lineno)
                break
            raise WorkdirError(f"{path}:{lineno}: not valid JSON ({err})") from err
        if not isinstance(record, dict) or "step" not in record:
            raise WorkdirError(f"{path}:{lineno}: record has no 'step'")
        records.append(record)
    return records


def build_model(cfg: config_lib.RunConfig, *, image_size: int | None = None) -> keras.Model:
    """The model a RunConfig describes, as the trainer builds it, randomly initialised.

    The model maps float32 images [B, S, S, C] to logits [B, T]; S is `image_size`, by default
    the configured one.
    """
    from transfusion_tf.models import registry as model_registry

    m = cfg.model
    return model_registry.build_model(
        m.name,
        num_tasks=m.num_tasks,
        image_size=m.image_size if image_size is None else image_size,
        channels=m.channels,
        widths=m.widths,
        width_multiplier=m.width_multiplier,
    )


def load_model(workdir: str, *, weights: str = "final") -> tuple[config_lib.RunConfig, keras.Model]:
    """Rebuilds a run's model from `config.json` and loads its `weights` weights.

    Returns:
      (config, model): the model maps float32 [B, S, S, C] to logits [B, T]. WorkdirError
      naming the weights file when it does not fit the configured model.
    """
    cfg = read_config(workdir)
    path = existing_weights(workdir, weights)
    model = build_model(cfg)
    _load_weights_file(model, path)
    return cfg, model


def load_weights(model: keras.Model, workdir: str, *, weights: str) -> None:
    """Loads a run's `weights` weights into `model` (built by `build_model` from its config).

    MissingFileError when the run has not saved them, WorkdirError naming the file when they do
    not fit the model.
    """
    _load_weights_file(model, existing_weights(workdir, weights))


def _load_weights_file(model: keras.Model, path: str) -> None:
    try:
        model.load_weights(path)
    except (ValueError, OSError) as err:
        raise WorkdirError(f"{path}: cannot load into {model.name} ({err})") from err
