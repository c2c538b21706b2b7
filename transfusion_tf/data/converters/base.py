"""What every converter shares: options, source records, label policies, CSV reading, safe paths,
patient-level splits, and the converter registry (SPEC D2, R).

A converter reads one public on-disk layout into a `Source`: the task names and one
`SourceRecord` per image (where the image is, its patient, its label and mask vectors, and its
split when the source defines one), plus the inputs it had to skip and why. `writer.write_source`
then decodes, resizes and encodes the images on all cores and writes the TFRecord shards.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from transfusion_tf.config import ConfigBase
from transfusion_tf.data import fileio
from transfusion_tf.data.info import SPLITS
from transfusion_tf.data.splits import split_by_patient
from transfusion_tf.registry import Registry

UNCERTAIN_POLICIES = ("ones", "zeros", "ignore")
BLANK_POLICIES = ("negative", "ignore")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".dcm")
BACKENDS = ("local", "ray")


class ConversionError(ValueError):
    """Bad input that stops a conversion; the message names the file, column or flag."""


class StrictModeError(ConversionError):
    """Inputs were skipped while `strict` was set."""


@dataclasses.dataclass(frozen=True)
class ConvertOptions(ConfigBase):
    """Settings of one `transfusion-prepare` run (SPEC D2); every field has a flag of that name.

    `image_size=None` keeps the source resolution; otherwise images are resized to a square of
    that side (bilinear, antialiased). `tasks=None` takes the format's default tasks.
    `num_shards` is the shard count of each split (fewer when a split has fewer examples); None
    picks about one shard per 1,000 examples. `workers=None` uses every core available to the
    process. `overwrite` replaces the shards of an earlier conversion into the same folder.
    `backend` is where images are encoded and shards written: `local` (this machine's cores)
    or `ray` (Ray tasks on `ray_address`: None = $RAY_ADDRESS or a private local instance);
    both write the same dataset.
    """

    image_size: int | None = None
    uncertain_policy: str = "ignore"
    blank_policy: str = "negative"
    tasks: tuple[str, ...] | None = None
    frontal_only: bool = False
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    num_shards: int | None = None
    workers: int | None = None
    strict: bool = False
    overwrite: bool = False
    synthetic_kind: str = "fundus"
    num_examples: int = 1000
    path_column: str = "path"
    label_columns: tuple[str, ...] | None = None
    patient_column: str | None = None
    progress: bool = True
    backend: str = "local"
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if self.uncertain_policy not in UNCERTAIN_POLICIES:
            raise ValueError(
                f"uncertain_policy must be one of {UNCERTAIN_POLICIES}, got "
                f"{self.uncertain_policy!r}"
            )
        if self.blank_policy not in BLANK_POLICIES:
            raise ValueError(
                f"blank_policy must be one of {BLANK_POLICIES}, got {self.blank_policy!r}"
            )
        for name in ("valid_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                "valid_fraction + test_fraction must leave examples for train, got "
                f"{self.valid_fraction} + {self.test_fraction}"
            )
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if self.num_shards is not None and self.num_shards < 1:
            raise ValueError(f"num_shards must be positive, got {self.num_shards}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be positive, got {self.workers}")
        if self.num_examples < 1:
            raise ValueError(f"num_examples must be positive, got {self.num_examples}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")

    @property
    def label_policy(self) -> dict[str, str]:
        return {"uncertain": self.uncertain_policy, "blank": self.blank_policy}

    def resolved_workers(self) -> int:
        if self.workers is not None:
            return self.workers
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            return max(1, os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class SourceRecord:
    """One input image: a file `path` or an in-memory `array` (uint8/uint16 [H, W] or [H, W, C]),
    its labels and mask (float, one entry per task), patient id and source split (or None)."""

    example_id: str
    patient_id: str
    labels: tuple[float, ...]
    mask: tuple[float, ...]
    path: str | None = None
    array: np.ndarray | None = None
    split: str | None = None


@dataclasses.dataclass
class Source:
    """A converter's reading of its input: tasks in label order, records, skipped inputs."""

    source_format: str
    input_path: str
    tasks: list[str]
    records: list[SourceRecord]
    skipped: list[dict[str, str]] = dataclasses.field(default_factory=list)
    label_policy: dict[str, Any] = dataclasses.field(default_factory=dict)
    # The tasks are mutually exclusive classes (one-hot labels); the writer checks the data.
    single_label: bool = False

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append({"path": str(path), "reason": reason})


# Converters map (input_path, output_dir, options) to the dataset_info dict they wrote.
ConverterFn = Callable[..., dict]
CONVERTERS: Registry[ConverterFn] = Registry("converter")


def select_tasks(
    available: Sequence[str], requested: Sequence[str] | None, *, default: Sequence[str]
) -> list[str]:
    """Returns the task list in requested order; an unknown name is a ConversionError."""
    if requested is None:
        return list(default)
    if not requested:
        raise ConversionError("--tasks is empty; name at least one task")
    unknown = [t for t in requested if t not in available]
    if unknown:
        raise ConversionError(
            f"unknown task(s) {unknown} in --tasks; available: {', '.join(available)}"
        )
    if len(set(requested)) != len(requested):
        raise ConversionError(f"--tasks names a task twice: {list(requested)}")
    return list(requested)


def parse_label(
    value: str | None, *, uncertain_policy: str, blank_policy: str, where: str
) -> tuple[float, float]:
    """Maps one CSV label cell to (label, mask) under the uncertain/blank policies.

    Accepted cells: 1, 0, -1 (uncertain; CheXpert's convention) in any float spelling, or blank.
    `where` (file, line and column) is put in the error for anything else.
    """
    text = (value or "").strip()
    if not text:
        return (0.0, 1.0) if blank_policy == "negative" else (0.0, 0.0)
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if number == 1.0:
        return 1.0, 1.0
    if number == 0.0:
        return 0.0, 1.0
    if number == -1.0:
        if uncertain_policy == "ones":
            return 1.0, 1.0
        if uncertain_policy == "zeros":
            return 0.0, 1.0
        return 0.0, 0.0
    raise ConversionError(
        f"{where}: unknown label value {text!r}; expected 1, 0, -1 (uncertain) or blank"
    )


def parse_row_labels(
    row: Mapping[str, str], tasks: Sequence[str], *, options: ConvertOptions, where: str
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(labels, mask), each [len(tasks)], of a CSV row's task columns (`parse_label` each,
    under the options' uncertain and blank policies).

    `where` is the file and line; the column is added to it in errors.
    """
    labels, mask = [], []
    for task in tasks:
        label, known = parse_label(
            row.get(task),
            uncertain_policy=options.uncertain_policy,
            blank_policy=options.blank_policy,
            where=f"{where}: column {task!r}",
        )
        labels.append(label)
        mask.append(known)
    return tuple(labels), tuple(mask)


@dataclasses.dataclass(frozen=True)
class CsvTable:
    """A CSV file read whole: its path, header, and rows as (line number, {column: cell})."""

    path: str
    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]


def read_csv(path: str, *, required: Iterable[str] = ()) -> CsvTable:
    """Reads a CSV with a header row; a missing file or required column is a ConversionError.

    Blank lines are left out; every other row must have exactly as many cells as the header
    (a ConversionError naming the file and line otherwise).
    """
    if not fileio.isfile(path):
        raise ConversionError(f"{path}: CSV file not found")
    try:
        with fileio.open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise ConversionError(f"{path}: CSV file is empty (no header row)")
            columns = [c.strip() for c in header]
            rows = []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(columns):
                    # A short row is not read as blank cells: a blank label is a negative, so
                    # a dropped cell would silently become a negative label.
                    raise ConversionError(
                        f"{path}:{reader.line_num}: row has {len(row)} cells but the header "
                        f"has {len(columns)} ({', '.join(columns)}); write an unknown value "
                        "as an empty cell between commas"
                    )
                cells = dict(zip(columns, row, strict=True))
                rows.append((reader.line_num, cells))
    except UnicodeDecodeError as err:
        raise ConversionError(f"{path}: not a UTF-8 text CSV ({err})") from None
    except csv.Error as err:
        raise ConversionError(f"{path}: malformed CSV ({err})") from None
    missing = [c for c in required if c not in columns]
    if missing:
        raise ConversionError(
            f"{path}: missing required column(s) {missing}; the header has {columns}"
        )
    return CsvTable(path=path, columns=columns, rows=rows)


def resolve_under(root: str, relative: str) -> str | None:
    """Joins a path read from a CSV to `root`; returns None when it would leave `root`.

    The check is lexical (absolute paths and `..` components that climb out are refused), so a
    malicious manifest cannot make the converter read files outside the dataset folder.
    """
    rel = relative.strip().replace("\\", "/")
    if not rel or rel.startswith("/") or re.match(r"^[A-Za-z]:", rel):
        return None
    normalized = os.path.normpath(rel)
    if normalized == ".." or normalized.startswith("../") or normalized == ".":
        return None
    return os.path.join(root, normalized)


def assign_splits(
    records: list[SourceRecord], *, valid_fraction: float, test_fraction: float, seed: int
) -> tuple[list[SourceRecord], list[str]]:
    """Gives every record a split; returns (records, the splits expected to be non-empty).

    Source splits are kept. A source without valid/test gets them carved out of its train
    records by patient (seeded), with `valid_fraction` / `test_fraction` of the patients.
    """
    present = {r.split for r in records if r.split is not None}
    unknown = present - set(SPLITS)
    if unknown:
        raise ConversionError(f"unknown split name(s) {sorted(unknown)}; expected {SPLITS}")
    carve = {}
    if "valid" not in present and valid_fraction > 0:
        carve["valid"] = valid_fraction
    if "test" not in present and test_fraction > 0:
        carve["test"] = test_fraction
    expected = sorted(present | set(carve) | {"train"}, key=SPLITS.index)
    pool = [r for r in records if r.split in (None, "train")]
    if not carve:
        return [r if r.split else dataclasses.replace(r, split="train") for r in records], expected
    assignment = split_by_patient([r.patient_id for r in pool], fractions=carve, seed=seed)
    out = []
    for r in records:
        if r.split in (None, "train"):
            r = dataclasses.replace(r, split=assignment[r.patient_id])
        out.append(r)
    return out, expected


def check_patients_disjoint(records: Iterable[SourceRecord], *, input_path: str) -> None:
    """Raises ConversionError when a patient appears in two splits (a leaky source split)."""
    seen: dict[str, str] = {}
    for r in records:
        other = seen.setdefault(r.patient_id, r.split or "train")
        if other != (r.split or "train"):
            raise ConversionError(
                f"{input_path}: patient {r.patient_id!r} appears in splits {other!r} and "
                f"{r.split!r}; the source splits leak patients"
            )


def list_image_files(root: str) -> list[str]:
    """All files under `root` (recursively, sorted) whose extension is an image extension."""
    found = []
    for dirpath, dirnames, filenames in fileio.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                found.append(os.path.join(dirpath, name))
    return found
