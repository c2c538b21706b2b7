"""The TFRecord schema of a dataset (SPEC D1): feature keys and Example build/parse.

One `tf.train.Example` per image holds the encoded image (PNG 8/16-bit or JPEG), its height,
width and channels, a stable example id, a patient id (for leakage-free splits), a float label
vector `[num_tasks]` and a float mask vector `[num_tasks]` (1 = label known, 0 = unknown).

In a single-label dataset (`dataset_info.json` "single_label": true) the tasks are mutually
exclusive classes and every label vector is one-hot: every label known, exactly one positive
(>= 0.5). `is_one_hot` is that test, shared by the writer (which checks it before recording
the field), the softmax loss and the top-k accuracy (which leave other examples out).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

SCHEMA_VERSION = 1

IMAGE_KEY = "image/encoded"
HEIGHT_KEY = "image/height"
WIDTH_KEY = "image/width"
CHANNELS_KEY = "image/channels"
EXAMPLE_ID_KEY = "example/id"
PATIENT_ID_KEY = "patient/id"
LABELS_KEY = "labels"
MASK_KEY = "mask"


def is_one_hot(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """bool [N]: rows of labels/mask [N, T] with every label known and exactly one positive."""
    labels, mask = np.asarray(labels), np.asarray(mask)
    known = np.all(mask > 0, axis=-1)
    return known & (np.sum((labels >= 0.5) & (mask > 0), axis=-1) == 1)


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _floats(values: Sequence[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def make_example(
    *,
    image_bytes: bytes,
    height: int,
    width: int,
    channels: int,
    example_id: str,
    patient_id: str,
    labels: Sequence[float],
    mask: Sequence[float],
) -> tf.train.Example:
    """Builds one Example; `labels` and `mask` are per-task vectors [num_tasks] of equal length."""
    if len(labels) != len(mask):
        raise ValueError(
            f"example {example_id!r}: {len(labels)} labels but {len(mask)} mask entries"
        )
    if not example_id:
        raise ValueError("example_id must be a non-empty string")
    if min(height, width, channels) <= 0:
        raise ValueError(f"example {example_id!r}: bad image size {height}x{width}x{channels}")
    if any(m not in (0.0, 1.0) for m in mask):
        raise ValueError(f"example {example_id!r}: mask values must be 0 or 1, got {list(mask)}")
    feature = {
        IMAGE_KEY: _bytes(bytes(image_bytes)),
        HEIGHT_KEY: _int(height),
        WIDTH_KEY: _int(width),
        CHANNELS_KEY: _int(channels),
        EXAMPLE_ID_KEY: _bytes(example_id.encode("utf-8")),
        PATIENT_ID_KEY: _bytes(str(patient_id).encode("utf-8")),
        LABELS_KEY: _floats(labels),
        MASK_KEY: _floats(mask),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def feature_spec(num_tasks: int) -> dict[str, tf.io.FixedLenFeature]:
    """The parsing spec of a dataset with `num_tasks` tasks."""
    return {
        IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        HEIGHT_KEY: tf.io.FixedLenFeature([], tf.int64),
        WIDTH_KEY: tf.io.FixedLenFeature([], tf.int64),
        CHANNELS_KEY: tf.io.FixedLenFeature([], tf.int64),
        EXAMPLE_ID_KEY: tf.io.FixedLenFeature([], tf.string),
        PATIENT_ID_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
        LABELS_KEY: tf.io.FixedLenFeature([num_tasks], tf.float32),
        MASK_KEY: tf.io.FixedLenFeature([num_tasks], tf.float32),
    }


def parse_example(serialized: tf.Tensor, *, num_tasks: int) -> dict[str, tf.Tensor]:
    """Parses one serialized Example (scalar string) into named tensors.

    Returns "image_bytes" (string), "height"/"width"/"channels" (int64), "example_id" and
    "patient_id" (string), "labels" and "mask" (float32 [num_tasks]).
    """
    parsed = tf.io.parse_single_example(serialized, feature_spec(num_tasks))
    return {
        "image_bytes": parsed[IMAGE_KEY],
        "height": parsed[HEIGHT_KEY],
        "width": parsed[WIDTH_KEY],
        "channels": parsed[CHANNELS_KEY],
        "example_id": parsed[EXAMPLE_ID_KEY],
        "patient_id": parsed[PATIENT_ID_KEY],
        "labels": parsed[LABELS_KEY],
        "mask": parsed[MASK_KEY],
    }


def parse_labels(serialized: tf.Tensor, *, num_tasks: int) -> dict[str, tf.Tensor]:
    """Parses only the id, labels and mask of a batch of serialized Examples [B] (no image)."""
    spec = {
        EXAMPLE_ID_KEY: tf.io.FixedLenFeature([], tf.string),
        LABELS_KEY: tf.io.FixedLenFeature([num_tasks], tf.float32),
        MASK_KEY: tf.io.FixedLenFeature([num_tasks], tf.float32),
    }
    parsed = tf.io.parse_example(serialized, spec)
    return {
        "example_id": parsed[EXAMPLE_ID_KEY],
        "labels": parsed[LABELS_KEY],
        "mask": parsed[MASK_KEY],
    }
