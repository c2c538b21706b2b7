"""TensorBoard records of a run under `<workdir>/tensorboard` (SPEC T7), with stable names.

Scalars: `train/loss`, `train/learning_rate`, `eval/auc/<task>`, `eval/auc_mean`,
`eval/auprc/<task>`, `eval/auprc_mean`, `eval/loss`, `perf/images_per_second`; softmax runs
also `eval/top1_accuracy` and `eval/top5_accuracy` (more than 5 classes).
HParams plugin: model, init, transfuse_upto, lr, dataset, seed (metric `eval/auc_mean`), so the
runs of a grid compare in one table. Images: `filters/conv1` (conv1 kernels as a grid) at init
and at each eval. Text: `init/report` (the init report summary).
Keras' TensorBoard callback fails on vector metrics, so per-task scalars are written here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from transfusion_tf import workdir as workdir_lib
from transfusion_tf.tiling import filter_grid

HPARAM_METRIC = "eval/auc_mean"


def conv1_kernel(model: keras.Model, layer_names: tuple[str, ...] = ()) -> np.ndarray | None:
    """The first 4-D conv kernel [kh, kw, in, out] among `layer_names` (else the whole model)."""
    candidates = [model.get_layer(n) for n in layer_names] if layer_names else model.layers
    for layer in candidates:
        for weight in layer.weights:
            if len(weight.shape) == 4 and "kernel" in weight.name:
                return np.asarray(weight.numpy(), dtype=np.float32)
    return None


class RunSummaries:
    """Writes a run's TensorBoard events; a no-op writer on non-chief workers."""

    def __init__(self, workdir: str, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._writer = (
            tf.summary.create_file_writer(os.path.join(workdir, workdir_lib.TENSORBOARD_DIR))
            if enabled
            else tf.summary.create_noop_writer()
        )

    def scalars(self, step: int, values: Mapping[str, float | None]) -> None:
        """Writes every defined value; `None` (an undefined AUC) is skipped."""
        with self._writer.as_default(step=step):
            for tag, value in values.items():
                if value is not None and math.isfinite(value):
                    tf.summary.scalar(tag, float(value))

    def eval_scalars(self, step: int, report: Mapping[str, Any]) -> None:
        """Writes one eval record: `eval/auc/<task>`, `eval/auc_mean`, AUPRC, loss, top-k."""
        values: dict[str, float | None] = {}
        for task, value in report["auc"].items():
            values[f"eval/auc/{task}"] = value
        for task, value in report["auprc"].items():
            values[f"eval/auprc/{task}"] = value
        values["eval/auc_mean"] = report["auc_mean"]
        values["eval/auprc_mean"] = report["auprc_mean"]
        if report.get("loss") is not None:
            values["eval/loss"] = report["loss"]
        for key in ("top1_accuracy", "top5_accuracy"):
            if key in report:
                values[f"eval/{key}"] = report[key]
        self.scalars(step, values)

    def hparams(self, hparams: Mapping[str, Any], *, trial_id: str) -> None:
        """Records the run's hyper-parameters for the HParams dashboard."""
        clean = {k: ("none" if v is None else v) for k, v in hparams.items()}
        with self._writer.as_default(step=0):
            hp.hparams_config(
                hparams=[hp.HParam(k) for k in clean],
                metrics=[hp.Metric(HPARAM_METRIC, display_name="validation mean AUC")],
            )
            hp.hparams(clean, trial_id=trial_id)

    def filters(self, step: int, kernel: np.ndarray | None, *, tag: str = "filters/conv1") -> None:
        """Writes conv1 kernels [kh, kw, in, out] as an image grid."""
        if kernel is None:
            return
        with self._writer.as_default(step=step):
            tf.summary.image(tag, filter_grid(kernel), step=step, max_outputs=1)

    def text(self, step: int, tag: str, text: str) -> None:
        """Writes a Markdown text summary (shown preformatted)."""
        with self._writer.as_default(step=step):
            tf.summary.text(tag, "```\n" + text + "\n```", step=step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()
