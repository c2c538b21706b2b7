"""Sharded TFRecord writing (SPEC D1): streamed shards, atomic renames, verified dataset info.

Use `ShardedWriter` (one per split, a context manager) to stream examples one at a time, e.g.
as a worker pool produces them, then `finalize_dataset` to read the shards back, check the
counts and write `dataset_info.json` last:

    with ShardedWriter(out, "train", tasks=tasks, num_shards=8) as w:
        for ex in examples:
            w.write(**ex)  # keyword arguments of schema.make_example
    finalize_dataset(out, tasks=tasks, source_format="eyepacs", label_policy="...",
                     image_encoding="png", split_stats={"train": w.stats}, skipped=skipped)

Shards are written under hidden temporary names and renamed to `<split>-NNNNN-of-MMMMM.tfrecord`
only when the split is complete; an exception inside the `with` block deletes them, so no
half-written shard ever carries a final name. Examples go to shards round robin in write order,
serialised deterministically (features sorted by key: protobuf's map order otherwise changes
from process to process), so the same examples give the same shard bytes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import tensorflow as tf
from absl import logging

from transfusion_tf.data import info as info_lib
from transfusion_tf.data import schema
from transfusion_tf.data.encode import bit_depth_of, encode_image, encode_jpeg, encode_png

__all__ = [
    "DatasetIntegrityError",
    "ShardedWriter",
    "SplitStats",
    "encode_image",
    "encode_jpeg",
    "encode_png",
    "finalize_dataset",
    "write_dataset",
]


class DatasetIntegrityError(RuntimeError):
    """The shards read back do not match what was written (message names the directory)."""


@dataclasses.dataclass
class SplitStats:
    """Counts of one split: examples, labelled (mask == 1) and positives per task.

    `bit_depth` is the largest bits per sample among the written images (8 or 16; 0 before the
    first); it goes to dataset_info.json as "bit_depth", not into the per-split counts.
    """

    tasks: tuple[str, ...]
    num_examples: int = 0
    labelled: dict[str, int] = dataclasses.field(default_factory=dict)
    positives: dict[str, int] = dataclasses.field(default_factory=dict)
    bit_depth: int = 0

    def __post_init__(self) -> None:
        for task in self.tasks:
            self.labelled.setdefault(task, 0)
            self.positives.setdefault(task, 0)

    def add(self, labels: Sequence[float], mask: Sequence[float]) -> None:
        self.num_examples += 1
        for task, label, known in zip(self.tasks, labels, mask, strict=True):
            if known == 1.0:
                self.labelled[task] += 1
                self.positives[task] += int(label >= 0.5)

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_examples": self.num_examples,
            "labelled": dict(self.labelled),
            "positives": dict(self.positives),
        }


class ShardedWriter:
    """Writes one split of a dataset as `num_shards` TFRecord shards (a context manager).

    Args:
      output_dir: the dataset directory (created if missing).
      split: split name, e.g. "train".
      tasks: task names in label-vector order; every example has len(tasks) labels.
      num_shards: shards to spread examples over; with fewer examples than shards, only the
        non-empty shards are kept (MMMMM then counts those).
      overwrite: replace existing shards of this split; without it they are an error.
    """

    def __init__(
        self,
        output_dir: str,
        split: str,
        *,
        tasks: Sequence[str],
        num_shards: int,
        overwrite: bool = False,
    ) -> None:
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        if not tasks:
            raise ValueError("a dataset needs at least one task")
        self.output_dir = output_dir
        self.split = split
        self.tasks = tuple(tasks)
        self.num_shards = num_shards
        self.overwrite = overwrite
        self.stats = SplitStats(self.tasks)
        self._ids: set[str] = set()
        self._writers: list[tf.io.TFRecordWriter] = []
        self._tmp_paths: list[str] = []
        self._counts: list[int] = []
        self._open = False
        self.files: list[str] = []

    def __enter__(self) -> ShardedWriter:
        os.makedirs(self.output_dir, exist_ok=True)
        existing = info_lib.list_shards(self.output_dir, self.split)
        if existing and not self.overwrite:
            raise FileExistsError(
                f"{self.output_dir} already holds shards of split {self.split!r} "
                f"({os.path.basename(existing[0])}, ...); overwrite=True replaces them"
            )
        info_path = os.path.join(self.output_dir, info_lib.DATASET_INFO_FILE)
        if os.path.exists(info_path):
            # The old info would describe a directory that is being rewritten.
            os.remove(info_path)
        pid = os.getpid()
        for i in range(self.num_shards):
            tmp = os.path.join(self.output_dir, f".{self.split}-{i:05d}.tfrecord.tmp-{pid}")
            self._tmp_paths.append(tmp)
            self._writers.append(tf.io.TFRecordWriter(tmp))
            self._counts.append(0)
        self._open = True
        return self

    def write(
        self,
        *,
        image_bytes: bytes,
        height: int,
        width: int,
        channels: int,
        example_id: str,
        patient_id: str,
        labels: Sequence[float],
        mask: Sequence[float],
    ) -> None:
        """Adds one example (the keyword arguments of `schema.make_example`)."""
        if len(labels) != len(self.tasks):
            raise ValueError(
                f"example {example_id!r} has {len(labels)} labels, dataset has "
                f"{len(self.tasks)} tasks {list(self.tasks)}"
            )
        example = schema.make_example(
            image_bytes=image_bytes,
            height=height,
            width=width,
            channels=channels,
            example_id=example_id,
            patient_id=patient_id,
            labels=labels,
            mask=mask,
        )
        self._write_serialized(
            example.SerializeToString(deterministic=True), example_id, labels, mask, image_bytes
        )

    def _write_serialized(
        self,
        data: bytes,
        example_id: str,
        labels: Sequence[float],
        mask: Sequence[float],
        image_bytes: bytes,
    ) -> None:
        if not self._open:
            raise RuntimeError("ShardedWriter.write called outside its `with` block")
        if example_id in self._ids:
            raise ValueError(f"duplicate example id {example_id!r} in split {self.split!r}")
        self._ids.add(example_id)
        index = self.stats.num_examples % self.num_shards
        self._writers[index].write(data)
        self._counts[index] += 1
        self.stats.add(labels, mask)
        self.stats.bit_depth = max(self.stats.bit_depth, bit_depth_of(image_bytes))

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._commit()
        else:
            self._abort()

    def _close_all(self) -> None:
        for writer in self._writers:
            writer.close()
        self._writers = []
        self._open = False

    def _abort(self) -> None:
        self._close_all()
        for tmp in self._tmp_paths:
            if os.path.exists(tmp):
                os.remove(tmp)
        logging.warning("discarded unfinished shards of %r in %s", self.split, self.output_dir)

    def _commit(self) -> None:
        self._close_all()
        for old in info_lib.list_shards(self.output_dir, self.split):
            os.remove(old)
        kept = [t for t, n in zip(self._tmp_paths, self._counts, strict=True) if n > 0]
        for tmp, count in zip(self._tmp_paths, self._counts, strict=True):
            if count == 0:
                os.remove(tmp)
        self.files = []
        for i, tmp in enumerate(kept):
            final = os.path.join(self.output_dir, info_lib.shard_name(self.split, i, len(kept)))
            os.replace(tmp, final)
            self.files.append(final)
        logging.info(
            "wrote %d examples of split %r to %d shards in %s",
            self.stats.num_examples,
            self.split,
            len(self.files),
            self.output_dir,
        )


def read_back_stats(
    dataset_dir: str, split: str, tasks: Sequence[str]
) -> tuple[SplitStats, set, int]:
    """Counts examples, labelled and positives of a split's shards as read from disk.

    Returns the stats, the set of example ids and the number of one-hot examples
    (`schema.is_one_hot`). Parses only ids, labels and masks.
    """
    stats = SplitStats(tuple(tasks))
    ids: set[bytes] = set()
    one_hot = 0
    files = info_lib.list_shards(dataset_dir, split)
    if not files:
        return stats, ids, one_hot
    ds = tf.data.TFRecordDataset(files).batch(1024)
    ds = ds.map(lambda s: schema.parse_labels(s, num_tasks=len(tasks)))
    for batch in ds.as_numpy_iterator():
        labels, mask = batch["labels"], batch["mask"]
        known = mask == 1.0
        stats.num_examples += len(labels)
        for t, task in enumerate(tasks):
            stats.labelled[task] += int(known[:, t].sum())
            stats.positives[task] += int((known[:, t] & (labels[:, t] >= 0.5)).sum())
        ids.update(batch["example_id"].tolist())
        one_hot += int(schema.is_one_hot(labels, mask).sum())
    return stats, ids, one_hot


def finalize_dataset(
    output_dir: str,
    *,
    tasks: Sequence[str],
    source_format: str,
    label_policy: str | Mapping[str, Any],
    image_encoding: str,
    split_stats: Mapping[str, SplitStats],
    skipped: Sequence[Mapping[str, str]] = (),
    extra: Mapping[str, Any] | None = None,
    single_label: bool = False,
) -> dict[str, Any]:
    """Verifies the written shards against `split_stats`, then writes `dataset_info.json`.

    Every split is read back; a count that differs from what the writer recorded, or an
    example id that appears twice, raises DatasetIntegrityError and no info file is written.
    `single_label=True` says the tasks are mutually exclusive classes; the info records
    "single_label": true only if there are at least 2 tasks and every example read back is
    one-hot (a task subset of a class-folder dataset, say, leaves examples with no class:
    recorded false, with a warning). Returns the info dict.
    """
    seen: dict[bytes, str] = {}
    splits: dict[str, Any] = {}
    examples, one_hot = 0, 0
    for split, expected in split_stats.items():
        actual, ids, split_one_hot = read_back_stats(output_dir, split, tasks)
        examples += actual.num_examples
        one_hot += split_one_hot
        if actual.to_dict() != expected.to_dict():
            raise DatasetIntegrityError(
                f"split {split!r} in {output_dir}: shards hold {actual.to_dict()}, "
                f"writer recorded {expected.to_dict()}"
            )
        for example_id in ids:
            if example_id in seen:
                raise DatasetIntegrityError(
                    f"example id {example_id.decode()!r} in both splits {seen[example_id]!r} "
                    f"and {split!r} of {output_dir}"
                )
            seen[example_id] = split
        splits[split] = actual.to_dict()
        splits[split]["num_shards"] = len(info_lib.list_shards(output_dir, split))
    for item in skipped:
        if not {"path", "reason"} <= set(item):
            raise ValueError(f"skipped entries need 'path' and 'reason', got {dict(item)}")
    if single_label and (len(tasks) < 2 or one_hot != examples):
        logging.warning(
            "%s: recorded as multi-label although its tasks are classes: %s",
            output_dir,
            f"{len(tasks)} task"
            if len(tasks) < 2
            else f"{examples - one_hot} of {examples} examples have not exactly one class",
        )
        single_label = False
    info: dict[str, Any] = {
        "schema_version": schema.SCHEMA_VERSION,
        "source_format": source_format,
        "tasks": list(tasks),
        "label_policy": label_policy,
        "image_encoding": image_encoding,
        "bit_depth": max([8, *(s.bit_depth for s in split_stats.values())]),
        "single_label": single_label,
        "splits": splits,
        "skipped": [dict(item) for item in skipped],
    }
    if extra:
        clash = set(extra) & set(info)
        if clash:
            raise ValueError(f"extra dataset info keys clash with the schema: {sorted(clash)}")
        info.update(extra)
    info_lib.write_dataset_info(output_dir, info)
    return info


def write_dataset(
    *,
    output_dir: str,
    examples_by_split: Mapping[str, Iterable[Mapping[str, Any]]],
    tasks: Sequence[str],
    source_format: str,
    label_policy: str | Mapping[str, Any],
    image_encoding: str,
    skipped: Sequence[Mapping[str, str]] = (),
    num_shards: int = 1,
    overwrite: bool = False,
    extra: Mapping[str, Any] | None = None,
    single_label: bool = False,
) -> dict[str, Any]:
    """Writes every split (examples as `make_example` keyword dicts) and the info file.

    The iterables are consumed lazily, one example at a time. Returns the dataset info.
    """
    stats = {}
    for split, examples in examples_by_split.items():
        with ShardedWriter(
            output_dir, split, tasks=tasks, num_shards=num_shards, overwrite=overwrite
        ) as writer:
            for example in examples:
                writer.write(**example)
        stats[split] = writer.stats
    return finalize_dataset(
        output_dir,
        tasks=tasks,
        source_format=source_format,
        label_policy=label_policy,
        image_encoding=image_encoding,
        split_stats=stats,
        skipped=skipped,
        extra=extra,
        single_label=single_label,
    )
