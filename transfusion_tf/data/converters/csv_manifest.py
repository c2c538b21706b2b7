"""CSV-manifest converter (SPEC D2): one row per image, a path column and label columns.

Paths are relative to the CSV's folder and may not leave it. Label cells follow the CheXpert
convention (1, 0, -1 = uncertain, blank) under the same uncertain/blank policies. Optional
columns: a patient column (`patient_column`, by default `patient_id` when the manifest has one;
without any, `.dcm` files give their DICOM Patient ID and other files are their own patient)
and a `split` column (train/valid/val/test) whose splits are kept.
"""

from __future__ import annotations

import os

from transfusion_tf.data import fileio
from transfusion_tf.data.converters import base, driver, folder

SPLIT_COLUMN = "split"
DEFAULT_PATIENT_COLUMN = "patient_id"


def read_csv_manifest(input_path: str, options: base.ConvertOptions) -> base.Source:
    """Reads a CSV manifest into a Source."""
    csv_path = fileio.absolute(input_path)
    if fileio.isdir(csv_path):
        raise base.ConversionError(f"{input_path}: expected a CSV manifest file, got a folder")
    root = os.path.dirname(csv_path)
    required = [options.path_column]
    if options.patient_column:
        required.append(options.patient_column)
    if options.label_columns is not None:
        required.extend(options.label_columns)
    table = base.read_csv(csv_path, required=required)
    patient_column = options.patient_column
    if patient_column is None and DEFAULT_PATIENT_COLUMN in table.columns:
        patient_column = DEFAULT_PATIENT_COLUMN
    reserved = {options.path_column, patient_column, SPLIT_COLUMN}
    label_columns = (
        list(options.label_columns)
        if options.label_columns is not None
        else [c for c in table.columns if c not in reserved]
    )
    if not label_columns:
        raise base.ConversionError(
            f"{input_path}: no label columns; name them with --label_columns"
        )
    tasks = base.select_tasks(label_columns, options.tasks, default=label_columns)
    source = base.Source(
        source_format="csv",
        input_path=input_path,
        tasks=tasks,
        records=[],
        label_policy=options.label_policy,
    )
    has_split = SPLIT_COLUMN in table.columns
    for line, row in table.rows:
        cell = row.get(options.path_column, "")
        image_path = base.resolve_under(root, cell)
        if image_path is None:
            source.skip(f"{csv_path}:{line}: {cell}", "path escapes the dataset root")
            continue
        split = None
        if has_split:
            value = row.get(SPLIT_COLUMN, "").strip().lower()
            if value not in folder.SPLIT_FOLDERS:
                raise base.ConversionError(
                    f"{csv_path}:{line}: unknown split {value!r} in column {SPLIT_COLUMN!r}; "
                    f"expected one of {sorted(folder.SPLIT_FOLDERS)}"
                )
            split = folder.SPLIT_FOLDERS[value]
        if patient_column:
            patient = row.get(patient_column, "").strip()
            if not patient:
                raise base.ConversionError(
                    f"{csv_path}:{line}: empty patient id in column {patient_column!r}"
                )
        else:
            patient = folder.patient_for(image_path)
        labels, mask = base.parse_row_labels(
            row, tasks, options=options, where=f"{csv_path}:{line}"
        )
        rel = os.path.relpath(image_path, root)
        source.records.append(
            base.SourceRecord(
                example_id=os.path.splitext(rel)[0].replace(os.sep, "/"),
                patient_id=patient,
                labels=labels,
                mask=mask,
                path=image_path,
                split=split,
            )
        )
    return source


convert_csv = driver.register_reader("csv", read_csv_manifest, what="a CSV manifest")
