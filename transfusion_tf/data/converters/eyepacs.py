"""EyePACS (Kaggle Diabetic Retinopathy Detection) converter, and the DR grade tasks (SPEC D2).

Layout as downloaded: `trainLabels.csv` (columns `image,level`) beside `train/<image>.jpeg`,
where `<image>` is `<patient>_left` or `<patient>_right` and `level` is the ICDR grade 0-4.
Task `referable_dr` is grade >= 2 (moderate or worse: the paper's Retina task); optional tasks
`dr_grade_0`..`dr_grade_4` are the one-hot grades (named as in the synthetic fundus set).
The competition's test images come as `test/<image>.jpeg` with labels released afterwards in
`retinopathy_solution.csv` (columns `image,level,Usage`, Usage Public or Private). When both
are present they are the test split (public and private together) and `--test_fraction` is
not used; valid is drawn from the training patients. Otherwise train/valid/test are all drawn
from `trainLabels.csv` by patient. Either way both eyes of a patient land in the same split.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from absl import logging

from transfusion_tf.data import fileio
from transfusion_tf.data.converters import base, driver

REFERABLE_GRADE = 2
GRADE_TASKS = tuple(f"dr_grade_{g}" for g in range(5))
DR_TASKS = ("referable_dr", *GRADE_TASKS)
DEFAULT_TASKS = ("referable_dr",)
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".dcm")

TEST_LABELS_CSV = "retinopathy_solution.csv"
_EYE_RE = re.compile(r"^(?P<patient>.+)_(?:left|right)$")


def parse_grade(cell: str | None, *, where: str) -> int:
    """Parses an ICDR grade cell (0-4, any integral float spelling); else ConversionError."""
    text = (cell or "").strip()
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value not in (0.0, 1.0, 2.0, 3.0, 4.0):
        raise base.ConversionError(f"{where}: unknown label value {text!r}; expected a grade 0-4")
    return int(value)


def dr_labels(grade: int, tasks: list[str]) -> tuple[float, ...]:
    """The label vector of one DR grade for `tasks` (names from DR_TASKS)."""
    out = []
    for task in tasks:
        if task == "referable_dr":
            out.append(1.0 if grade >= REFERABLE_GRADE else 0.0)
        else:
            out.append(1.0 if grade == int(task.removeprefix("dr_grade_")) else 0.0)
    return tuple(out)


def find_image(image_dir: str, name: str) -> str:
    """The first existing `<image_dir>/<name><ext>`; the `.jpeg` path when none exists."""
    for ext in IMAGE_EXTENSIONS:
        candidate = os.path.join(image_dir, name + ext)
        if fileio.isfile(candidate):
            return candidate
    return os.path.join(image_dir, name + IMAGE_EXTENSIONS[0])


def read_eyepacs(input_path: str, options: base.ConvertOptions) -> base.Source:
    """Reads the Kaggle DR layout into a Source (test split kept when its labels are there)."""
    root = fileio.absolute(input_path)
    csv_path = os.path.join(root, "trainLabels.csv")
    if not fileio.isdir(root):
        raise base.ConversionError(f"{input_path}: EyePACS folder not found")
    if not fileio.isfile(csv_path):
        raise base.ConversionError(
            f"{input_path}: no trainLabels.csv; expected the Kaggle Diabetic Retinopathy folder "
            "with trainLabels.csv and train/"
        )
    common = dict(
        source_format="eyepacs",
        input_path=input_path,
        name_column="image",
        grade_column="level",
        options=options,
        patient_of=_patient_of,
        path_of=find_image,
    )
    source = read_graded_csv(csv_path=csv_path, image_dir=os.path.join(root, "train"), **common)
    solution, test_dir = os.path.join(root, TEST_LABELS_CSV), os.path.join(root, "test")
    if fileio.isfile(solution) and not fileio.isdir(test_dir):
        logging.warning(
            "%s: found %s but no test/ folder; the test split is drawn from trainLabels.csv",
            input_path,
            TEST_LABELS_CSV,
        )
    elif fileio.isfile(solution):
        test = read_graded_csv(csv_path=solution, image_dir=test_dir, split="test", **common)
        source.records.extend(test.records)
        source.skipped.extend(test.skipped)
    return source


def _patient_of(name: str) -> str:
    """The patient of a Kaggle DR image name `<patient>_left|right` (the name itself otherwise)."""
    match = _EYE_RE.match(name)
    return match.group("patient") if match else name


def read_graded_csv(
    *,
    source_format: str,
    input_path: str,
    csv_path: str,
    image_dir: str,
    name_column: str,
    grade_column: str,
    options: base.ConvertOptions,
    patient_of: Callable[[str], str],
    path_of: Callable[[str, str], str],
    split: str | None = None,
) -> base.Source:
    """Reads a CSV of image names and ICDR grades (EyePACS, APTOS) into a Source.

    `patient_of(name)` gives an image's patient id; `path_of(image_dir, name)` its file;
    every record gets source split `split` (None: drawn later by patient). Names that would
    leave `image_dir` are skipped and reported.
    """
    if not fileio.isdir(image_dir):
        raise base.ConversionError(f"{image_dir}: image folder not found")
    tasks = base.select_tasks(DR_TASKS, options.tasks, default=DEFAULT_TASKS)
    source = base.Source(
        source_format=source_format,
        input_path=input_path,
        tasks=tasks,
        records=[],
        label_policy={"referable_dr": f"grade >= {REFERABLE_GRADE}"},
        # The one-hot grades alone are classes; with referable_dr beside them, multi-label.
        single_label=all(t in GRADE_TASKS for t in tasks),
    )
    table = base.read_csv(csv_path, required=(name_column, grade_column))
    for line, row in table.rows:
        name = row[name_column].strip()
        grade = parse_grade(row[grade_column], where=f"{csv_path}:{line}: column {grade_column!r}")
        if base.resolve_under(image_dir, name) is None or "/" in name.replace("\\", "/"):
            source.skip(f"{csv_path}:{line}: {name}", "path escapes the dataset root")
            continue
        source.records.append(
            base.SourceRecord(
                example_id=name,
                patient_id=patient_of(name),
                labels=dr_labels(grade, tasks),
                mask=(1.0,) * len(tasks),
                path=path_of(image_dir, name),
                split=split,
            )
        )
    return source


convert_eyepacs = driver.register_reader("eyepacs", read_eyepacs, what="the Kaggle DR layout")
