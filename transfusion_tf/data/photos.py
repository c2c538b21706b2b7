"""`photo_patches`: a source task cut from real photographs that ship with scikit-learn.

No download: `sklearn.datasets.load_sample_images()` bundles two colour photographs
(`china.jpg`, a temple with trees and sky, and `flower.jpg`), 427 x 640 px each. Each
photograph is cut into a `GRID` (rows x columns) of regions; a class is one region of one
photograph (24 classes), and an example is a random square crop centred in that region (side
`CROP_RANGE` of the photograph's height, so crops of neighbouring regions overlap), resized to
the dataset's image size. Half of the crops are turned to grey and the rest have their colour
channels rescaled at random, and every crop gets a random brightness and contrast, so a region
is told apart by its edges and textures rather than by its colour alone: the task a CBR model
learns oriented, multi-frequency conv1 filters from, as models trained on ImageNet do
(`transfusion_tf.analysis.orientation` measures it). This is the demo's stand-in for
ImageNet pretraining beside the fully synthetic `synthetic_natural`.

Every example is its own "patient"; the split is `data.splits.split_by_patient`'s.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from transfusion_tf.data import atomic
from transfusion_tf.data import writer as writer_lib
from transfusion_tf.data.encode import encode_png
from transfusion_tf.data.splits import split_by_patient

PHOTOS = ("china", "flower")
GRID = (3, 4)  # regions per photograph: rows, columns
CROP_RANGE = (0.12, 0.3)  # crop side as a fraction of the photograph's height
CLASSES = tuple(
    f"{photo}_r{row}c{col}" for photo in PHOTOS for row in range(GRID[0]) for col in range(GRID[1])
)
SOURCE_FORMAT = "photo_patches"


@functools.lru_cache(maxsize=1)
def photographs() -> tuple[np.ndarray, ...]:
    """The bundled photographs as float32 [427, 640, 3] in [0, 1], in `PHOTOS` order."""
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    by_name = {
        name.rsplit("/", 1)[-1].split(".")[0]: image
        for name, image in zip(bunch.filenames, bunch.images, strict=True)
    }
    return tuple(np.asarray(by_name[p], np.float32) / 255.0 for p in PHOTOS)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """Area-averaged resize of float [h, w, 3] to [size, size, 3] (PIL's box filter)."""
    from PIL import Image

    channels = [
        np.asarray(
            Image.fromarray(image[:, :, c], mode="F").resize((size, size), Image.Resampling.BOX)
        )
        for c in range(image.shape[2])
    ]
    return np.stack(channels, axis=-1)


def photo_patch(rng: np.random.Generator, *, size: int, cls: int) -> np.ndarray:
    """A crop of class `cls` (a region of a photograph), uint8 [size, size, 3]."""
    if cls not in range(len(CLASSES)):
        raise ValueError(f"photo_patches class must be 0..{len(CLASSES) - 1}, got {cls}")
    rows, cols = GRID
    photo = photographs()[cls // (rows * cols)]
    row, col = divmod(cls % (rows * cols), cols)
    height, width = photo.shape[:2]
    side = int(round(rng.uniform(*CROP_RANGE) * height))
    # The crop's centre lies in the region; the crop itself stays inside the photograph.
    cy = rng.uniform(row * height / rows, (row + 1) * height / rows)
    cx = rng.uniform(col * width / cols, (col + 1) * width / cols)
    top = int(np.clip(round(cy - side / 2), 0, height - side))
    left = int(np.clip(round(cx - side / 2), 0, width - side))
    crop = _resize(photo[top : top + side, left : left + side], size)
    if rng.random() < 0.5:
        crop = np.repeat(crop @ np.array([0.299, 0.587, 0.114], np.float32)[:, None], 3, axis=2)
    else:
        crop = crop * rng.uniform(0.7, 1.3, 3).astype(np.float32)
    mean = crop.mean()
    crop = (crop - mean) * rng.uniform(0.6, 1.4) + mean + rng.uniform(-0.15, 0.15)
    return (np.clip(crop, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _example(index: int, *, seed: int, size: int, tasks: Sequence[str]) -> dict[str, Any]:
    """Example `index` of the dataset of `seed`: classes balanced by index."""
    cls = index % len(CLASSES)
    image = photo_patch(np.random.default_rng([seed, 4, index]), size=size, cls=cls)
    return {
        "image_bytes": encode_png(image),
        "height": size,
        "width": size,
        "channels": 3,
        "example_id": f"{SOURCE_FORMAT}/s{seed}/{index:07d}",
        "patient_id": f"patch{index:07d}",
        "labels": [float(CLASSES[cls] == t) for t in tasks],
        "mask": [1.0] * len(tasks),
    }


def write_photo_dataset(
    *,
    output_dir: str,
    num_examples: int,
    image_size: int = 32,
    seed: int = 0,
    valid_fraction: float = 0.2,
    test_fraction: float = 0.2,
    num_shards: int = 2,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Writes `num_examples` photo-patch examples (PNG) as a dataset; returns its info.

    The dataset is single-label over `CLASSES`, written into a staging folder and published
    when complete, like every converter's output (`data.atomic`).
    """
    if num_examples < len(CLASSES):
        raise ValueError(f"num_examples must be >= {len(CLASSES)} (one per class)")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    ids = [f"patch{i:07d}" for i in range(num_examples)]
    assignment = split_by_patient(
        ids, fractions={"valid": valid_fraction, "test": test_fraction}, seed=seed
    )
    with (
        atomic.interruptible(),
        atomic.staged_dataset(output_dir, overwrite=overwrite) as stage,
        contextlib.ExitStack() as stack,
    ):
        writers = {
            split: stack.enter_context(
                writer_lib.ShardedWriter(stage, split, tasks=CLASSES, num_shards=num_shards)
            )
            for split in ("train", "valid", "test")
        }
        for i in range(num_examples):
            example = _example(i, seed=seed, size=image_size, tasks=CLASSES)
            writers[assignment[ids[i]]].write(**example)
        stack.close()
        return writer_lib.finalize_dataset(
            stage,
            tasks=CLASSES,
            source_format=SOURCE_FORMAT,
            label_policy="exact",
            image_encoding="png",
            split_stats={split: w.stats for split, w in writers.items()},
            extra={
                "photo_patches": {
                    "photos": list(PHOTOS),
                    "grid": list(GRID),
                    "crop_range": list(CROP_RANGE),
                    "seed": seed,
                    "image_size": image_size,
                }
            },
            single_label=True,
        )
