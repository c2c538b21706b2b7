"""CheXpert-v1.0 (and -small) converter: `train.csv`/`valid.csv` with 14 observations (SPEC D2).

Layout as downloaded: a folder `CheXpert-v1.0[-small]/` holding `train.csv`, `valid.csv`,
`train/patientNNNNN/studyN/viewN_{frontal,lateral}.jpg` and `valid/...`. CSV columns: Path, Sex,
Age, Frontal/Lateral, AP/PA, then the observations; cells are 1.0, 0.0, -1.0 (uncertain) or
blank. `Path` is relative to the folder's parent (it starts with the folder's own name).
Default tasks are the 5 competition tasks (Irvin et al. 2019), the ones the paper reports.
Source splits are kept (train.csv -> train, valid.csv -> valid); a test split is carved from
train by patient when `test_fraction > 0`.
"""

from __future__ import annotations

import os
import re

from transfusion_tf.data import fileio
from transfusion_tf.data.chexpert_labels import COMPETITION_TASKS, OBSERVATIONS
from transfusion_tf.data.converters import base, driver

METADATA_COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
SOURCE_SPLITS = (("train.csv", "train"), ("valid.csv", "valid"))

_PATIENT_RE = re.compile(r"(?:^|/)(patient\d+)(?:/|$)")


def _relative_path(csv_path_cell: str) -> str:
    """Strips the leading `CheXpert-v1.0[-small]/` so the path is relative to the folder."""
    parts = csv_path_cell.strip().replace("\\", "/").split("/")
    if parts and parts[0].lower().startswith("chexpert"):
        parts = parts[1:]
    return "/".join(parts)


def read_chexpert(input_path: str, options: base.ConvertOptions) -> base.Source:
    """Reads a CheXpert folder into a Source (records of train.csv and valid.csv)."""
    root = fileio.absolute(input_path)
    if not fileio.isdir(root):
        raise base.ConversionError(f"{input_path}: CheXpert folder not found")
    if not fileio.isfile(os.path.join(root, "train.csv")):
        raise base.ConversionError(
            f"{input_path}: no train.csv; expected the CheXpert-v1.0(-small) folder that holds "
            "train.csv and valid.csv"
        )
    tasks = base.select_tasks(OBSERVATIONS, options.tasks, default=COMPETITION_TASKS)
    source = base.Source(
        source_format="chexpert",
        input_path=input_path,
        tasks=tasks,
        records=[],
        label_policy=options.label_policy,
    )
    for csv_name, split in SOURCE_SPLITS:
        csv_path = os.path.join(root, csv_name)
        if split != "train" and not fileio.isfile(csv_path):
            continue
        view_column = ("Frontal/Lateral",) if options.frontal_only else ()
        table = base.read_csv(csv_path, required=("Path", *view_column, *tasks))
        for line, row in table.rows:
            if options.frontal_only and row["Frontal/Lateral"].strip() != "Frontal":
                continue
            cell = row["Path"]
            rel = _relative_path(cell)
            image_path = base.resolve_under(root, rel)
            if image_path is None:
                source.skip(f"{csv_path}:{line}: {cell}", "path escapes the dataset root")
                continue
            match = _PATIENT_RE.search(rel)
            if match is None:
                raise base.ConversionError(
                    f"{csv_path}:{line}: cannot find a patient id (patientNNNNN) in Path {cell!r}"
                )
            labels, mask = base.parse_row_labels(
                row, tasks, options=options, where=f"{csv_path}:{line}"
            )
            source.records.append(
                base.SourceRecord(
                    example_id=os.path.splitext(rel)[0],
                    patient_id=match.group(1),
                    labels=labels,
                    mask=mask,
                    path=image_path,
                    split=split,
                )
            )
    return source


convert_chexpert = driver.register_reader("chexpert", read_chexpert, what="a CheXpert folder")
