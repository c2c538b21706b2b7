"""Class-folder converter (SPEC D2): `root/<class>/*.{png,jpg,jpeg,dcm}`, one task per class.

Labels are one-hot over the class folders (sorted by name), so multi-label BCE trains on them
as on any other dataset. When every folder under `root` is a split name (`train`, `valid` or
`val`, `test`), the layout is `root/<split>/<class>/...` and those splits are kept. Patient ids
come from the DICOM Patient ID tag for `.dcm` files that carry one, else from the file name
(each image its own patient).
"""

from __future__ import annotations

import os

from transfusion_tf.data import fileio
from transfusion_tf.data.converters import base, dicom, driver

SPLIT_FOLDERS = {"train": "train", "valid": "valid", "val": "valid", "test": "test"}


def patient_for(path: str) -> str:
    """The DICOM Patient ID of a `.dcm` file when present, else the file name without extension."""
    if path.lower().endswith(".dcm"):
        patient = dicom.read_patient_id(path)
        if patient:
            return patient
    return os.path.splitext(os.path.basename(path))[0]


def _subdirs(path: str) -> list[str]:
    return sorted(
        d
        for d in fileio.listdir(path)
        if fileio.isdir(os.path.join(path, d)) and not d.startswith(".")
    )


def read_folder(input_path: str, options: base.ConvertOptions) -> base.Source:
    """Reads a class-folder tree (optionally under split folders) into a Source."""
    root = fileio.absolute(input_path)
    if not fileio.isdir(root):
        raise base.ConversionError(f"{input_path}: image folder not found")
    top = _subdirs(root)
    if top and all(d in SPLIT_FOLDERS for d in top):
        split_dirs = [(os.path.join(root, d), SPLIT_FOLDERS[d]) for d in top]
    else:
        split_dirs = [(root, None)]
    files: list[tuple[str, str, str | None]] = []  # (path, class, split)
    for split_dir, split in split_dirs:
        for class_name in _subdirs(split_dir):
            for path in base.list_image_files(os.path.join(split_dir, class_name)):
                files.append((path, class_name, split))
    classes = sorted({c for _, c, _ in files})
    if not files:
        raise base.ConversionError(
            f"{input_path}: no images found; expected <root>/<class>/*"
            f"{{{','.join(base.IMAGE_EXTENSIONS)}}}"
        )
    tasks = base.select_tasks(classes, options.tasks, default=classes)
    source = base.Source(
        source_format="folder",
        input_path=input_path,
        tasks=tasks,
        records=[],
        label_policy={"labels": "one-hot over class folders"},
        single_label=True,
    )
    for path, class_name, split in files:
        rel = os.path.relpath(path, root)
        source.records.append(
            base.SourceRecord(
                example_id=os.path.splitext(rel)[0].replace(os.sep, "/"),
                patient_id=patient_for(path),
                labels=tuple(1.0 if t == class_name else 0.0 for t in tasks),
                mask=(1.0,) * len(tasks),
                path=path,
                split=split,
            )
        )
    return source


convert_folder = driver.register_reader("folder", read_folder, what="a class-folder tree")
