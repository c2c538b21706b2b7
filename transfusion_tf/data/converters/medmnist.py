"""MedMNIST converter (SPEC D2): one `.npz` with `{train,val,test}_{images,labels}` arrays.

Images are uint8 [N, H, W] (gray) or [N, H, W, 3]. Labels are either multi-class, [N, 1] or
[N] integer class indices (one-hot tasks `class_0`..; a binary dataset gives the single task
`class_1`), or multi-label, [N, T] of 0/1 (tasks `label_0`.., or the ChestX-ray14 finding names
for ChestMNIST). The file is opened with `allow_pickle=False`: an object array that would need
unpickling is refused. Source splits are kept (val -> valid); missing ones are drawn (seeded).
MedMNIST has no patient ids, so each image is its own patient.
"""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np

from transfusion_tf.data import fileio
from transfusion_tf.data.converters import base, driver

SOURCE_SPLITS = (("train", "train"), ("val", "valid"), ("test", "test"))
# The label order of ChestMNIST (NIH ChestX-ray14), as in MedMNIST's INFO table.
CHESTMNIST_TASKS = (
    "atelectasis",
    "cardiomegaly",
    "effusion",
    "infiltration",
    "mass",
    "nodule",
    "pneumonia",
    "pneumothorax",
    "consolidation",
    "edema",
    "emphysema",
    "fibrosis",
    "pleural",
    "hernia",
)


def _load(path: str) -> dict[str, np.ndarray]:
    """Loads every array of the `.npz` with allow_pickle=False; ConversionError naming the file."""
    if not fileio.isfile(path):
        raise base.ConversionError(f"{path}: MedMNIST .npz file not found")
    with fileio.open(path, "rb") as f:
        magic = f.read(6)
    if not magic.startswith(b"PK\x03\x04"):
        # np.load takes anything that is neither a zip nor an .npy file for a pickle, and
        # would report a text file as "pickled data".
        what = "an .npy array, not an .npz archive" if magic == b"\x93NUMPY" else "not a zip file"
        raise base.ConversionError(
            f"{path}: not an .npz archive (a MedMNIST file is a zip of .npy arrays; this file is "
            f"{what}, starting with {magic!r})"
        )
    arrays = {}
    try:
        source = io.BytesIO(fileio.read_bytes(path)) if fileio.is_url(path) else path
        with np.load(source, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise base.ConversionError(f"{path}: not an .npz archive")
            for key in npz.files:
                try:
                    arrays[key] = npz[key]
                except ValueError as err:
                    if "pickle" in str(err):
                        raise base.ConversionError(
                            f"{path}: array {key!r} is an object array that needs pickle; "
                            "refusing to unpickle untrusted input (allow_pickle=False)"
                        ) from None
                    raise
    except base.ConversionError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise base.ConversionError(f"{path}: unreadable .npz file ({err})") from None
    return arrays


def _task_names(labels: list[np.ndarray], *, path: str) -> tuple[list[str], bool, int]:
    """Infers (task names, multi_label, num_classes) from the label arrays of all splits."""
    widths = {1 if a.ndim == 1 else a.shape[1] for a in labels}
    if len(widths) != 1 or any(a.ndim > 2 for a in labels):
        raise base.ConversionError(f"{path}: label arrays of the splits have different shapes")
    width = widths.pop()
    values = np.concatenate([a.reshape(-1) for a in labels])
    if values.size and (values.min() < 0 or np.any(values != np.round(values))):
        bad = values[(values < 0) | (values != np.round(values))][0].item()
        raise base.ConversionError(f"{path}: unknown label value {bad}; expected integers >= 0")
    if width > 1:
        if values.size and values.max() > 1:
            raise base.ConversionError(
                f"{path}: unknown label value {values.max().item()} in multi-label arrays; "
                "expected 0/1"
            )
        if os.path.basename(path).lower().startswith("chestmnist") and width == 14:
            return list(CHESTMNIST_TASKS), True, width
        return [f"label_{t}" for t in range(width)], True, width
    num_classes = int(values.max()) + 1 if values.size else 0
    if num_classes <= 2:
        return ["class_1"], False, 2
    return [f"class_{k}" for k in range(num_classes)], False, num_classes


def read_medmnist(input_path: str, options: base.ConvertOptions) -> base.Source:
    """Reads a MedMNIST `.npz` into a Source of in-memory images."""
    path = fileio.absolute(input_path)
    arrays = _load(path)
    present = []
    for key, split in SOURCE_SPLITS:
        has_images, has_labels = f"{key}_images" in arrays, f"{key}_labels" in arrays
        if has_images != has_labels:
            missing = f"{key}_labels" if has_images else f"{key}_images"
            raise base.ConversionError(f"{input_path}: missing array {missing!r}")
        if has_images:
            present.append((key, split))
    if not present or present[0][0] != "train":
        raise base.ConversionError(
            f"{input_path}: missing arrays 'train_images'/'train_labels'; found {sorted(arrays)}"
        )
    for key, _ in present:
        images, labels = arrays[f"{key}_images"], arrays[f"{key}_labels"]
        if images.dtype not in (np.uint8, np.uint16) or images.ndim not in (3, 4):
            raise base.ConversionError(
                f"{input_path}: {key}_images must be uint8 [N, H, W(, 3)], got {images.dtype} "
                f"{images.shape}"
            )
        if images.ndim == 4 and images.shape[3] not in (1, 3):
            raise base.ConversionError(
                f"{input_path}: {key}_images has {images.shape[3]} channels; expected 1 or 3"
            )
        if len(images) != len(labels):
            raise base.ConversionError(
                f"{input_path}: {key}_images has {len(images)} images but {key}_labels has "
                f"{len(labels)} rows"
            )
    all_tasks, multi_label, _ = _task_names(
        [arrays[f"{k}_labels"] for k, _ in present], path=input_path
    )
    tasks = base.select_tasks(all_tasks, options.tasks, default=all_tasks)
    columns = [all_tasks.index(t) for t in tasks]
    source = base.Source(
        source_format="medmnist",
        input_path=input_path,
        tasks=tasks,
        records=[],
        label_policy={"labels": "multi-label" if multi_label else "one-hot over classes"},
    )
    binary = all_tasks == ["class_1"]
    source.single_label = not multi_label and not binary
    for key, split in present:
        images, labels = arrays[f"{key}_images"], arrays[f"{key}_labels"]
        for i in range(len(images)):
            row = labels[i].reshape(-1)
            if multi_label:
                vector = row.astype(np.float64)
            else:
                cls = int(row[0])
                vector = np.zeros(len(all_tasks))
                if binary:
                    vector[0] = float(cls == 1)
                else:
                    vector[cls] = 1.0
            example_id = f"{split}-{i:06d}"
            source.records.append(
                base.SourceRecord(
                    example_id=example_id,
                    patient_id=example_id,
                    labels=tuple(float(vector[c]) for c in columns),
                    mask=(1.0,) * len(tasks),
                    array=images[i],
                    split=split,
                )
            )
    return source


convert_medmnist = driver.register_reader("medmnist", read_medmnist, what="a MedMNIST `.npz`")
