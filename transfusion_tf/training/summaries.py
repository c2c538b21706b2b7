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

HPARAM_METRIC = "eval/auc_mean"


def conv1_kernel(model: keras.Model, layer_names: tuple[str, ...] = ()) -> np.ndarray | None:
    """The first 4-D conv kernel [kh, kw, in, out] among `layer_names` (else the whole model)."""
    candidates = [model.get_layer(n) for n in layer_names] if layer_names else model.layers
    for layer in candidates:
        for weight in layer.weights:
            if len(weight.shape) == 4 and "kernel" in weight.name:
                return np.asarray(weight.numpy(), dtype=np.float32)
    return None


def filter_grid(kernel: np.ndarray, *, max_filters: int = 64, scale: int = 4) -> np.ndarray:
    """Tiles conv filters into one image.

    Args:
      kernel: [kh, kw, in_channels, out_channels]; the first 3 input channels are shown as RGB
        (1 channel as gray), each filter min-max normalised to [0, 1].
      max_filters: at most this many filters are drawn.
      scale: nearest-neighbour upscaling so small kernels are visible.

    Returns:
      float32 [1, height, width, 3] in [0, 1].
    """
    kh, kw, cin, cout = kernel.shape
    k = kernel[:, :, :3, :max_filters]
    if cin == 1:
        k = np.repeat(k, 3, axis=2)
    elif cin == 2:
        k = np.concatenate([k, k[:, :, :1]], axis=2)
    n = k.shape[-1]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.ones((rows * (kh + 1) + 1, cols * (kw + 1) + 1, 3), np.float32)
    for i in range(n):
        f = k[..., i]
        lo, hi = f.min(), f.max()
        f = (f - lo) / (hi - lo) if hi > lo else np.full_like(f, 0.5)
        r, c = divmod(i, cols)
        grid[1 + r * (kh + 1) : 1 + r * (kh + 1) + kh, 1 + c * (kw + 1) : 1 + c * (kw + 1) + kw] = f
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    return grid[None]


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
