"""Dataset directory layout (SPEC D1): shard names, `dataset_info.json` read/write, split files.

A dataset directory holds shards `<split>-NNNNN-of-MMMMM.tfrecord` and `dataset_info.json`
with keys schema_version, source_format, tasks (names in label-vector order), label_policy,
image_encoding, bit_depth (the largest bits per sample of the stored images, 8 or 16; absent
in older directories, read as 16, which holds any image), single_label (true when the tasks
are mutually exclusive classes and every example of every split has exactly one positive and
no unknown label, as checked by the writer; absent in older directories, read as false:
multi-label, so `--loss=auto` trains them with per-task sigmoids), splits {split:
{num_examples, labelled {task: int}, positives {task: int}}} and skipped [{path, reason}]. The
info file is written last, so its presence means the shards it describes are complete.
"""

from __future__ import annotations

import functools
import json
import os
import re
from typing import Any

from transfusion_tf.data import fileio

DATASET_INFO_FILE = "dataset_info.json"
SPLITS = ("train", "valid", "test")
_SHARD_RE = re.compile(r"^(?P<split>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.tfrecord$")
REQUIRED_KEYS = ("schema_version", "source_format", "tasks", "label_policy", "splits", "skipped")


class DatasetError(ValueError):
    """A dataset directory is malformed (message names the directory or file)."""


def pixel_dtype(info: dict[str, Any]):
    """The integer dtype that holds every stored image of a dataset: tf.uint8 or tf.uint16."""
    import tensorflow as tf

    return tf.uint8 if int(info.get("bit_depth", 16)) <= 8 else tf.uint16


def is_single_label(info: dict[str, Any]) -> bool:
    """True for a single-label dataset (mutually exclusive classes, one-hot labels).

    Older directories without the "single_label" key read as multi-label.
    """
    return bool(info.get("single_label", False))


def shard_name(split: str, index: int, num_shards: int) -> str:
    """`<split>-NNNNN-of-MMMMM.tfrecord` for shard `index` of `num_shards`."""
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def load_dataset_info(dataset_dir: str) -> dict[str, Any]:
    """Reads and checks `<dataset_dir>/dataset_info.json`.

    Raises FileNotFoundError naming the directory when it or the info file is missing, and
    DatasetError when the file is not valid JSON or lacks a required key.
    """
    if not fileio.isdir(dataset_dir):
        raise FileNotFoundError(f"dataset directory not found: {dataset_dir}")
    path = os.path.join(dataset_dir, DATASET_INFO_FILE)
    if not fileio.isfile(path):
        raise FileNotFoundError(
            f"{DATASET_INFO_FILE} not found in dataset directory {dataset_dir} "
            "(not a prepared dataset, or its conversion did not finish)"
        )
    try:
        with fileio.open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(info, dict):
        raise DatasetError(f"{path} must hold a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in info]
    if missing:
        raise DatasetError(f"{path} lacks required keys {missing}")
    if not info["tasks"]:
        raise DatasetError(f"{path} lists no tasks")
    return info


def write_dataset_info(dataset_dir: str, info: dict[str, Any]) -> str:
    """Writes `info` as `<dataset_dir>/dataset_info.json` atomically; returns the path."""
    path = os.path.join(dataset_dir, DATASET_INFO_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    with fileio.open(tmp, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        if not fileio.is_url(tmp):
            os.fsync(f.fileno())
    fileio.replace(tmp, path)
    return path


def list_shards(dataset_dir: str, split: str) -> list[str]:
    """All final-named shard files of `split` in `dataset_dir`, sorted (no consistency check)."""
    pattern = os.path.join(fileio.escape(dataset_dir), f"{fileio.escape(split)}-*-of-*.tfrecord")
    return sorted(
        p
        for p in fileio.glob(pattern)
        if (m := _SHARD_RE.match(os.path.basename(p))) and m.group("split") == split
    )


def split_files(dataset_dir: str, split: str) -> list[str]:
    """The shard files of `split`, sorted; [] for a split with no examples.

    Raises DatasetError for a split the info file does not list, when shards are missing or
    come from two different writes (mixed MMMMM counts), when a shard ends inside a record,
    or when the shards hold another number of records than the info file lists (both found
    from the record headers, `count_records`).
    """
    info = load_dataset_info(dataset_dir)
    if split not in info["splits"]:
        raise DatasetError(
            f"split {split!r} not in {os.path.join(dataset_dir, DATASET_INFO_FILE)}; "
            f"available: {sorted(info['splits'])}"
        )
    files = list_shards(dataset_dir, split)
    num_examples = int(info["splits"][split].get("num_examples", 0))
    if num_examples == 0:
        return []
    if not files:
        raise DatasetError(
            f"no shards {split}-*-of-*.tfrecord in {dataset_dir}, "
            f"but {DATASET_INFO_FILE} lists {num_examples} examples"
        )
    counts = {int(_SHARD_RE.match(os.path.basename(p)).group("count")) for p in files}
    if len(counts) != 1 or len(files) != counts.pop():
        raise DatasetError(
            f"shards of split {split!r} in {dataset_dir} are incomplete or mixed: "
            f"{[os.path.basename(p) for p in files]}"
        )
    held = sum(count_records(p) for p in files)
    if held != num_examples:
        raise DatasetError(
            f"split {split!r} of {dataset_dir}: its {len(files)} shard(s) hold {held} examples "
            f"but {DATASET_INFO_FILE} lists {num_examples} (shards cut or replaced after "
            f"conversion); check them with transfusion-prepare --verify={dataset_dir}, and "
            "convert the data again with --overwrite"
        )
    return files


# A TFRecord record: uint64 length, uint32 masked CRC of the length, data, uint32 masked CRC.
_RECORD_OVERHEAD = 16


def count_records(path: str) -> int:
    """The number of records in a TFRecord file, read from the record headers alone.

    Seeks from header to header without reading the data (about a millisecond per thousand
    records), so every reader can check a split's counts before it starts. Cached per
    (path, size, modification time). Raises DatasetError naming the file and the offset of a
    record the file ends inside (a shard cut mid-record). Changed bytes inside a record are
    found by CRC when it is read (`verify.py`).
    """
    if fileio.is_url(path):
        import tensorflow as tf

        stat = tf.io.gfile.stat(path)
        return _count_records(path, int(stat.length), int(stat.mtime_nsec))
    stat = os.stat(path)
    return _count_records(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _count_records(path: str, size: int, mtime_ns: int) -> int:
    del mtime_ns  # part of the cache key only
    count, offset = 0, 0
    with fileio.open(path, "rb") as f:
        while offset < size:
            header = f.read(8)
            if len(header) < 8:
                raise DatasetError(
                    f"{path}: truncated record at offset {offset} (the file ends inside a "
                    "record header)"
                )
            length = int.from_bytes(header, "little")
            end = offset + length + _RECORD_OVERHEAD
            if end > size:
                raise DatasetError(
                    f"{path}: truncated record at offset {offset} (a {length}-byte record, "
                    f"but the file ends {end - size} bytes early)"
                )
            offset = end
            f.seek(offset)
            count += 1
    return count
