"""Per-example predictions files: `valid_predictions.npz` of a workdir and the evaluations'.

The trainer saves its final validation predictions next to `results.json`; `transfusion-evaluate`
saves `predictions_<split>.npz` next to `evaluation_<split>.json`. `transfusion-report` reads
them to resample evaluation images when it compares runs (SPEC X3). A file holds numpy arrays
only (no pickled objects): `labels`, `scores`, `mask` [examples, tasks] float32,
`example_id` [examples] unicode (empty when the dataset has no ids), `tasks` [tasks] unicode
and `step` (the training step of the weights, -1 when unknown).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import zipfile
from collections.abc import Sequence

import numpy as np

from transfusion_tf.workdir import VALID_PREDICTIONS_FILE  # noqa: F401  (re-exported)

_KEYS = ("labels", "scores", "mask", "example_id", "tasks", "step")


@dataclasses.dataclass(frozen=True)
class Predictions:
    """Scores of one model on one split: arrays [examples, tasks] (ids: [examples])."""

    labels: np.ndarray
    scores: np.ndarray
    mask: np.ndarray
    example_id: np.ndarray
    tasks: tuple[str, ...]
    step: int = -1

    @property
    def num_examples(self) -> int:
        return int(self.labels.shape[0])

    def same_examples(self, other: Predictions) -> bool:
        """Whether both hold the same examples in the same order (ids, labels and mask)."""
        if self.labels.shape != other.labels.shape or self.tasks != other.tasks:
            return False
        ids = self.example_id, other.example_id
        if ids[0].size and ids[1].size and not np.array_equal(*ids):
            return False
        return bool(
            np.array_equal(self.labels, other.labels) and np.array_equal(self.mask, other.mask)
        )


def _ids(example_id: np.ndarray | Sequence | None, num_examples: int) -> np.ndarray:
    if example_id is None or len(example_id) == 0:
        return np.array([], dtype=str)
    ids = [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in example_id]
    if len(ids) != num_examples:
        raise ValueError(f"{len(ids)} example ids for {num_examples} examples")
    return np.array(ids, dtype=str)


def save_predictions(
    path: str,
    *,
    labels: np.ndarray,
    scores: np.ndarray,
    mask: np.ndarray,
    tasks: Sequence[str],
    example_id: np.ndarray | Sequence | None = None,
    step: int = -1,
) -> str:
    """Writes a predictions file atomically (temporary name, then rename); returns `path`.

    Args:
      path: the `.npz` file to write.
      labels, scores, mask: [examples, tasks] arrays.
      tasks: the task names, in column order.
      example_id: [examples] ids (bytes or str), or None.
      step: the training step of the weights that produced the scores.
    """
    labels = np.asarray(labels, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    mask = np.asarray(mask, dtype=np.float32)
    if labels.ndim != 2 or labels.shape != scores.shape or labels.shape != mask.shape:
        raise ValueError(
            "labels, scores and mask must all be [examples, tasks]; got "
            f"{labels.shape}, {scores.shape}, {mask.shape}"
        )
    if labels.shape[1] != len(tasks):
        raise ValueError(f"{labels.shape[1]} label columns but {len(tasks)} task names")
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".predictions-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                labels=labels,
                scores=scores,
                mask=mask,
                example_id=_ids(example_id, labels.shape[0]),
                tasks=np.array(list(tasks), dtype=str),
                step=np.array(int(step), dtype=np.int64),
            )
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load_predictions(path: str) -> Predictions:
    """Reads a predictions file (no pickle); ValueError names the file when it is malformed."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _KEYS if k not in data.files]
            if missing:
                raise ValueError(f"missing arrays {missing}")
            out = Predictions(
                labels=data["labels"].astype(np.float64),
                scores=data["scores"].astype(np.float64),
                mask=data["mask"].astype(np.float64),
                example_id=data["example_id"],
                tasks=tuple(str(t) for t in data["tasks"]),
                step=int(data["step"]),
            )
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a predictions file ({err})") from None
    if (
        out.labels.ndim != 2
        or out.labels.shape != out.scores.shape
        or out.labels.shape != out.mask.shape
        or out.labels.shape[1] != len(out.tasks)
    ):
        raise ValueError(f"{path}: labels, scores, mask and tasks have inconsistent shapes")
    return out
