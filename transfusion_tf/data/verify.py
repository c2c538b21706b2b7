"""Re-reading a prepared dataset to find what went wrong with it (SPEC R, D1).

`verify_dataset(dataset_dir)` reads every shard of every split: the records its headers hold,
whether every record passes its CRC (TensorFlow's reader checks them), and whether every
image decodes to its stored size; per split it compares the records found with
`dataset_info.json`. `format_report` renders that as a table (`transfusion-prepare --verify`).

`data_loss_errors(dataset_dir=..., split=...)` wraps a reader's loop: TensorFlow reports a
corrupted record as a DataLossError that names an offset but no file; inside the block it
becomes a one-line `CorruptShardError` naming the shard file (found by re-reading the split)
and the record offset.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Iterator
from typing import Any

import tensorflow as tf

from transfusion_tf.data import decode as decode_lib
from transfusion_tf.data import info as info_lib
from transfusion_tf.data import schema

_OFFSET_RE = re.compile(r"(?:record|data) at (\d+)")
MAX_LISTED = 5


class CorruptShardError(info_lib.DatasetError):
    """A shard whose bytes changed after conversion (the message names the file)."""


@dataclasses.dataclass
class ShardReport:
    """What re-reading one shard found.

    `records`: records counted from the headers (None when the file ends inside a record);
    `read`: records read and CRC-checked; `error`: why reading stopped early (truncation or a
    CRC failure, with the offset); `undecodable`: [(example id, reason)] of images that do not
    decode to their stored size.
    """

    path: str
    split: str
    records: int | None = None
    read: int = 0
    error: str | None = None
    undecodable: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.undecodable


@dataclasses.dataclass
class DatasetReport:
    """`verify_dataset`'s findings: per-shard reports, per-split (listed, read) counts and
    the problems found (one line each; empty when the dataset is sound)."""

    dataset_dir: str
    shards: list[ShardReport]
    splits: dict[str, tuple[int, int]]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset_dir": self.dataset_dir,
            "ok": self.ok,
            "splits": {s: {"listed": a, "read": b} for s, (a, b) in self.splits.items()},
            "shards": [dataclasses.asdict(s) for s in self.shards],
            "problems": list(self.problems),
        }


def _offset(err: Exception, path: str) -> str:
    """The offset of the record a DataLossError is about, and which record it is.

    TensorFlow names the byte where the bad part begins (the data of a record follows its
    12-byte header); this walks the headers to the record that holds it.
    """
    match = _OFFSET_RE.search(str(err))
    if not match:
        return "?"
    byte, start, index = int(match.group(1)), 0, 0
    with contextlib.suppress(OSError), open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        while start < size:
            f.seek(start)
            header = f.read(8)
            if len(header) < 8:
                break
            end = start + int.from_bytes(header, "little") + 16
            if byte < end:
                return f"{start} (record {index + 1})"
            start, index = end, index + 1
    return str(byte)


def _check_image(example: dict[str, tf.Tensor]) -> str | None:
    """Why the image of one parsed example does not decode to its stored size, or None."""
    encoded = example["image_bytes"]
    try:
        if not (bool(decode_lib.is_png(encoded)) or bool(decode_lib.is_jpeg(encoded))):
            return "not a PNG or JPEG image"
        image = decode_lib.decode_image(encoded)
    except (tf.errors.InvalidArgumentError, ValueError) as err:
        return f"cannot decode: {str(err).splitlines()[0]}"
    shape = tuple(int(d) for d in image.shape[:2])
    stored = (int(example["height"]), int(example["width"]))
    if shape != stored:
        return f"decodes to {shape[0]}x{shape[1]}, stored as {stored[0]}x{stored[1]}"
    return None


def verify_shard(path: str, *, split: str, num_tasks: int, decode: bool = True) -> ShardReport:
    """Re-reads one shard: header count, CRC of every record, and (`decode`) every image."""
    report = ShardReport(path=path, split=split)
    try:
        report.records = info_lib.count_records(path)
    except info_lib.DatasetError as err:
        report.error = str(err).removeprefix(f"{path}: ")
    records = iter(tf.data.TFRecordDataset(path))
    while True:
        try:
            record = next(records)
        except StopIteration:
            break
        except tf.errors.DataLossError as err:
            if report.error is None:
                report.error = f"CRC failure at offset {_offset(err, path)}: bytes changed"
            break
        report.read += 1
        if not decode:
            continue
        try:
            example = schema.parse_example(record, num_tasks=num_tasks)
        except tf.errors.InvalidArgumentError as err:
            report.undecodable.append((f"record {report.read}", str(err).splitlines()[0]))
            continue
        reason = _check_image(example)
        if reason is not None:
            report.undecodable.append((example["example_id"].numpy().decode(), reason))
    return report


def verify_dataset(dataset_dir: str, *, decode: bool = True) -> DatasetReport:
    """Re-reads every shard of `dataset_dir` (see the module docstring).

    Raises FileNotFoundError / DatasetError when the folder or its info file is missing or
    malformed; everything found in the shards is reported, not raised.
    """
    info = info_lib.load_dataset_info(dataset_dir)
    num_tasks = len(info["tasks"])
    shards, splits, problems = [], {}, []
    for split, split_info in info["splits"].items():
        listed = int(split_info.get("num_examples", 0))
        files = info_lib.list_shards(dataset_dir, split)
        if listed and not files:
            problems.append(
                f"split {split!r}: no shards, {info_lib.DATASET_INFO_FILE} lists {listed}"
            )
        read = 0
        for path in files:
            report = verify_shard(path, split=split, num_tasks=num_tasks, decode=decode)
            shards.append(report)
            read += report.read
            name = os.path.basename(path)
            if report.error:
                problems.append(f"{name}: {report.error}")
            for example_id, reason in report.undecodable[:MAX_LISTED]:
                problems.append(f"{name}: example {example_id!r}: {reason}")
            if len(report.undecodable) > MAX_LISTED:
                more = len(report.undecodable) - MAX_LISTED
                problems.append(f"{name}: ... and {more} more undecodable images")
        splits[split] = (listed, read)
        if files and read != listed:
            problems.append(
                f"split {split!r}: {read} examples read, {info_lib.DATASET_INFO_FILE} lists "
                f"{listed}"
            )
    return DatasetReport(dataset_dir=dataset_dir, shards=shards, splits=splits, problems=problems)


def format_report(report: DatasetReport) -> str:
    """A table of `report`: one row per shard, then per-split counts and the problems."""
    width = max([len("shard"), *(len(os.path.basename(s.path)) for s in report.shards)]) + 2
    lines = [
        f"dataset {report.dataset_dir}",
        "shard".ljust(width)
        + "records".rjust(9)
        + "read".rjust(9)
        + "undecodable".rjust(13)
        + "  status",
    ]
    for s in report.shards:
        records = "?" if s.records is None else str(s.records)
        lines.append(
            os.path.basename(s.path).ljust(width)
            + records.rjust(9)
            + str(s.read).rjust(9)
            + str(len(s.undecodable)).rjust(13)
            + "  "
            + ("ok" if s.ok else (s.error or "undecodable images"))
        )
    for split, (listed, read) in report.splits.items():
        mark = "ok" if listed == read else "MISMATCH"
        lines.append(f"split {split}: {read} read / {listed} listed in dataset_info.json  {mark}")
    if report.ok:
        lines.append("no problems found")
    else:
        lines.append(f"{len(report.problems)} problem(s):")
        lines.extend(f"  {p}" for p in report.problems)
    return "\n".join(lines)


def locate_data_loss(dataset_dir: str, split: str) -> str | None:
    """'<shard>: corrupted record at offset N ...' for the first shard of `split` that fails
    its CRC when read (no image decoding), or None when every shard reads."""
    for path in info_lib.list_shards(dataset_dir, split):
        try:
            for _ in tf.data.TFRecordDataset(path):
                pass
        except tf.errors.DataLossError as err:
            return (
                f"{path}: corrupted record at offset {_offset(err, path)}: CRC mismatch, "
                "the shard's bytes changed after conversion; check the dataset with "
                "transfusion-prepare "
                f"--verify={dataset_dir} and convert the data again with --overwrite"
            )
    return None


@contextlib.contextmanager
def data_loss_errors(*, dataset_dir: str, split: str) -> Iterator[None]:
    """Turns a DataLossError raised inside the block (a reader of `split`) into a
    CorruptShardError naming the shard file and the record offset."""
    try:
        yield
    except tf.errors.DataLossError as err:
        where = locate_data_loss(dataset_dir, split)
        if where is None:
            first = str(err).strip().splitlines()[0] if str(err).strip() else "data loss"
            where = f"split {split!r} of {dataset_dir}: {first}"
        raise CorruptShardError(where) from None


def check_pass_count(*, dataset_dir: str, split: str, read: int) -> None:
    """Raises DatasetError when one full pass over `split` read another number of examples
    than `dataset_info.json` lists (the message names the split and both counts)."""
    listed = int(info_lib.load_dataset_info(dataset_dir)["splits"][split]["num_examples"])
    if read != listed:
        raise info_lib.DatasetError(
            f"split {split!r} of {dataset_dir}: one pass read {read} examples but "
            f"{info_lib.DATASET_INFO_FILE} lists {listed}; check the dataset with "
            f"transfusion-prepare --verify={dataset_dir}"
        )
