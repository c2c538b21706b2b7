"""Backups for resume (SPEC T4) and the Keras weights files of a workdir (SPEC T1).

`checkpoints/` holds tf.train.CheckpointManager backups of model + optimizer (the optimizer's
`iterations` is the step counter). A checkpoint's index file is only updated once its data is
complete, so a run killed at any moment resumes from the last complete backup. Under
multi-worker training every worker must take part in a save; non-chief workers write to a
private temporary directory that is deleted afterwards.

`weights/*.weights.h5` are Keras 3 `save_weights` files of the model `models.build_model`
builds from `config.json`; they are written to a temporary name and renamed, so a reader never
sees a half-written file.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import keras
import tensorflow as tf
from absl import logging

from transfusion_tf import workdir as workdir_lib
from transfusion_tf.workdir import write_text_atomic  # noqa: F401  (the trainer's text writer)


class BackupManager:
    """Saves and restores model, optimizer and step counter under `<workdir>/checkpoints`.

    `step` is the trainer's own step counter (int64 variable), not `optimizer.iterations`,
    which a loss-scale optimizer does not advance on skipped float16 steps.
    """

    def __init__(
        self,
        *,
        workdir: str,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        step: tf.Variable,
        chief: bool = True,
        worker_id: int = 0,
        max_to_keep: int = 2,
    ) -> None:
        self._chief = chief
        directory = os.path.join(workdir, workdir_lib.CHECKPOINTS_DIR)
        if not chief:
            directory = tempfile.mkdtemp(prefix=f"transfusion_worker{worker_id}_")
        self._directory = directory
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, directory=directory, max_to_keep=max_to_keep
        )
        self._chief_manager = self.manager
        if not chief:
            # Non-chief workers restore from the chief's directory (shared filesystem).
            self._chief_manager = tf.train.CheckpointManager(
                tf.train.Checkpoint(model=model, optimizer=optimizer, step=step),
                directory=os.path.join(workdir, workdir_lib.CHECKPOINTS_DIR),
                max_to_keep=max_to_keep,
            )

    @property
    def latest(self) -> str | None:
        """Path prefix of the newest complete backup, or None."""
        return self._chief_manager.latest_checkpoint

    def restore_latest(self) -> bool:
        """Restores the newest backup if any; True when something was restored."""
        latest = self.latest
        if latest is None:
            return False
        self._chief_manager.checkpoint.restore(latest).assert_existing_objects_matched()
        logging.info("restored backup %s", latest)
        return True

    def save(self, step: int) -> None:
        """Writes a backup at `step` (every worker must call this under multi-worker)."""
        path = self.manager.save(checkpoint_number=step)
        if self._chief:
            logging.info("saved backup %s", path)

    def close(self) -> None:
        """Deletes a non-chief worker's temporary directory."""
        if not self._chief:
            shutil.rmtree(self._directory, ignore_errors=True)


def save_weights_atomic(model: keras.Model, path: str) -> None:
    """`model.save_weights(path)` through a temporary file and a rename."""
    if not path.endswith(".weights.h5"):
        raise ValueError(f"weights file names must end with .weights.h5; got {path}")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path[: -len(".weights.h5")] + ".tmp.weights.h5"
    model.save_weights(tmp)
    os.replace(tmp, path)
