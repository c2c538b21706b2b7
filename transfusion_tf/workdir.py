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
  evaluation/            `transfusion-evaluate`'s default output (where the report looks)
Every module that reads or writes a workdir takes these names from here.
"""

from __future__ import annotations

import os

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


def weights_path(workdir: str, which: str) -> str:
    """Path of a workdir's `which` ("init", "final", "best") weights; ValueError for another."""
    if which not in WEIGHTS:
        raise ValueError(f"weights={which!r}: choose one of {', '.join(WEIGHTS)}")
    return os.path.join(workdir, WEIGHTS[which])
