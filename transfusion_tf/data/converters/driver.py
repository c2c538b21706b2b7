"""Runs a conversion: splits by patient, processes images on all cores, writes shards + info.

`write_source` takes a converter's `Source` and does what every format shares (SPEC D2, R):
drop duplicate rows, keep source splits or draw train/valid/test by patient (seeded), shuffle
each split (seeded, so class-sorted sources are mixed across shards), read + decode + resize +
encode every image in a pool of worker processes while the parent writes the TFRecord shards
in order (the `local` backend; `ray` runs that work as Ray tasks, see `ray_backend`, and writes
the same shards), and finally verify the shards and write `dataset_info.json`. Inputs that cannot be
used are skipped, counted and listed with their reason; under `strict` any skip is an error
and no dataset info is written. `format_summary` renders the one-screen summary.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from absl import logging
from tqdm import tqdm

from transfusion_tf.data import atomic, fileio
from transfusion_tf.data import info as info_lib
from transfusion_tf.data.converters import base, imageio

EXAMPLES_PER_SHARD = 1000
MAX_AUTO_SHARDS = 1024


def shards_for(num_examples: int, num_shards: int | None) -> int:
    """Shard count of a split: `num_shards`, or about one per EXAMPLES_PER_SHARD examples."""
    if num_shards is not None:
        return num_shards
    return int(min(MAX_AUTO_SHARDS, max(1, math.ceil(num_examples / EXAMPLES_PER_SHARD))))


def _drop_duplicates(source: base.Source) -> list[base.SourceRecord]:
    seen: set[str] = set()
    kept = []
    for record in source.records:
        if record.example_id in seen:
            source.skip(record.path or record.example_id, "duplicate of an earlier entry")
            continue
        seen.add(record.example_id)
        kept.append(record)
    return kept


def _raise_strict(skipped: Sequence[dict[str, str]], input_path: str) -> None:
    first = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
    more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
    raise base.StrictModeError(
        f"{input_path}: {len(skipped)} input(s) skipped under --strict: {first}{more}"
    )


@contextlib.contextmanager
def _image_results(
    tasks: list[imageio.ImageTask], *, workers: int
) -> Iterator[Iterator[imageio.EncodedImage]]:
    """Yields an iterator of processed images in task order, computed by `workers` processes.

    Workers are forked when TensorFlow is not loaded yet (the CLI path: the pool starts before
    the shard writer imports it), which costs nothing; otherwise they are spawned, because
    TensorFlow's threads do not survive a fork. Spawned workers import only this package's
    TensorFlow-free image code (and the caller's main module, as Python's spawn always does).
    """
    if workers <= 1 or len(tasks) < 2:
        yield (imageio.process_image(task) for task in tasks)
        return
    method = "spawn"
    if "tensorflow" not in sys.modules and "fork" in multiprocessing.get_all_start_methods():
        method = "fork"
    context = multiprocessing.get_context(method)
    chunksize = max(1, min(32, len(tasks) // (workers * 8)))
    # Leaving the block for any reason (an error, Ctrl-C, SIGTERM) terminates the pool; the
    # workers end themselves if this process dies without that (atomic.worker_init).
    with context.Pool(
        processes=workers, initializer=atomic.worker_init, initargs=(os.getpid(),)
    ) as pool:
        yield pool.imap(imageio.process_image, tasks, chunksize=chunksize)


@dataclasses.dataclass
class DicomCounts:
    """What the DICOM inputs of a conversion were: decoded and undecodable files per transfer
    syntax (by name), and multi-frame files (of which the first frame was kept)."""

    decoded: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    undecodable: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    multi_frame: int = 0

    def add(self, result: imageio.EncodedImage) -> None:
        if not result.dicom_syntax:
            return
        from transfusion_tf.data.converters import dicom_codecs

        name = dicom_codecs.describe(result.dicom_syntax)
        if result.error is not None:
            self.undecodable[name] += 1
            return
        self.decoded[name] += 1
        self.multi_frame += int(result.frames > 1)

    def to_info(self) -> dict[str, Any]:
        """{"dicom": {...}} for dataset_info.json, or {} when no input was DICOM."""
        if not (self.decoded or self.undecodable):
            return {}
        from transfusion_tf.data.converters import dicom

        return {
            "dicom": {
                "decoded": dict(sorted(self.decoded.items())),
                "undecodable": dict(sorted(self.undecodable.items())),
                "multi_frame": self.multi_frame,
                "frame_policy": dicom.FRAME_POLICY,
            }
        }


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """One split to write: its records and image tasks in write order, and its shard count."""

    split: str
    records: list[base.SourceRecord]
    tasks: list[imageio.ImageTask]
    num_shards: int


@dataclasses.dataclass
class SplitsWritten:
    """What a backend wrote: stats per split, per-image skips in write order, encodings, and
    what its DICOM inputs were (left empty by a backend that does not count them)."""

    stats: dict[str, Any]  # split -> writer.SplitStats
    skipped: list[dict[str, str]]
    encodings: collections.Counter[str]
    dicom: DicomCounts = dataclasses.field(default_factory=DicomCounts)


@contextlib.contextmanager
def _write_local(
    plans: Sequence[SplitPlan],
    *,
    output_dir: str,
    tasks: Sequence[str],
    options: base.ConvertOptions,
    desc: str,
) -> Iterator[SplitsWritten]:
    """The local backend: this machine's process pool encodes, this process writes the shards.

    Yields once every image is written under a temporary name; shards get their final names
    when the `with` block ends without error, and are deleted otherwise.
    """
    _check_local_output(output_dir)
    image_tasks = [t for plan in plans for t in plan.tasks]
    where = {t.index: (plan, i) for plan in plans for i, t in enumerate(plan.tasks)}
    workers = min(options.resolved_workers(), max(1, len(image_tasks)))
    logging.info("encoding with %d local worker(s)", workers)
    written = SplitsWritten(stats={}, skipped=[], encodings=collections.Counter())
    with (
        _image_results(image_tasks, workers=workers) as results,
        contextlib.ExitStack() as stack,
    ):
        # Imported once the workers exist, so forked workers never inherit TensorFlow.
        from transfusion_tf.data import writer as writer_lib

        writers = {
            plan.split: stack.enter_context(
                writer_lib.ShardedWriter(
                    output_dir,
                    plan.split,
                    tasks=tasks,
                    num_shards=plan.num_shards,
                    overwrite=options.overwrite,
                )
            )
            for plan in plans
        }
        progress = tqdm(
            total=len(image_tasks),
            unit="img",
            desc=desc,
            disable=None if options.progress else True,
        )
        with progress:
            for result in results:
                plan, i = where[result.index]
                record = plan.records[i]
                progress.update(1)
                written.dicom.add(result)
                if result.error is not None:
                    written.skipped.append(
                        {"path": record.path or record.example_id, "reason": result.error}
                    )
                    continue
                written.encodings[result.encoding] += 1
                writers[plan.split].write(
                    image_bytes=result.data,
                    height=result.height,
                    width=result.width,
                    channels=result.channels,
                    example_id=record.example_id,
                    patient_id=record.patient_id,
                    labels=record.labels,
                    mask=record.mask,
                )
        written.stats = {split: w.stats for split, w in writers.items()}
        yield written


def _check_local_output(output_dir: str) -> None:
    if fileio.is_url(output_dir):
        raise base.ConversionError(
            f"--output_dir={output_dir}: the local backend writes to a local directory; "
            "write to a URL with --backend=ray"
        )


def _usable_records(source: base.Source, *, strict: bool) -> list[base.SourceRecord]:
    """`source`'s records without duplicates; an empty input (or, `strict`, a skip) raises."""
    records = _drop_duplicates(source)
    if not records:
        detail = f"; all {len(source.skipped)} listed inputs were skipped" if source.skipped else ""
        raise base.ConversionError(
            f"{source.input_path}: empty input, no images to convert{detail}"
        )
    if strict and source.skipped:
        _raise_strict(source.skipped, source.input_path)
    return records


def plan_splits(
    records: list[base.SourceRecord], *, source: base.Source, options: base.ConvertOptions
) -> list[SplitPlan]:
    """The splits to write, in order: source splits kept or drawn by patient (seeded), each
    shuffled (seeded), with image tasks numbered in write order across the splits."""
    records, expected = base.assign_splits(
        records,
        valid_fraction=options.valid_fraction,
        test_fraction=options.test_fraction,
        seed=options.seed,
    )
    base.check_patients_disjoint(records, input_path=source.input_path)
    rng = np.random.default_rng(options.seed)
    plans = []
    start = 0
    for split in expected:
        members = [r for r in records if r.split == split]
        if not members:
            raise base.ConversionError(
                f"{source.input_path}: split {split!r} is empty (too few patients or every "
                "entry filtered out); lower --valid_fraction/--test_fraction or add data"
            )
        shuffled = [members[i] for i in rng.permutation(len(members))]
        tasks = [
            imageio.ImageTask(
                index=start + i, path=r.path, array=r.array, image_size=options.image_size
            )
            for i, r in enumerate(shuffled)
        ]
        start += len(shuffled)
        num_shards = shards_for(len(shuffled), options.num_shards)
        plans.append(SplitPlan(split=split, records=shuffled, tasks=tasks, num_shards=num_shards))
    return plans


def _checked_skips(
    written: SplitsWritten,
    *,
    source: base.Source,
    plans: Sequence[SplitPlan],
    strict: bool,
) -> list[dict[str, str]]:
    """All skipped inputs (the source's, then the backend's); raises under `strict` or when a
    split lost every image."""
    skipped = list(source.skipped) + written.skipped
    if strict and skipped:
        _raise_strict(skipped, source.input_path)
    sizes = {plan.split: len(plan.records) for plan in plans}
    for split, split_stats in written.stats.items():
        if split_stats.num_examples == 0:
            raise base.ConversionError(
                f"{source.input_path}: split {split!r} is empty: all of its "
                f"{sizes[split]} images were skipped"
            )
    return skipped


def _backend(options: base.ConvertOptions) -> Callable[..., Any]:
    """The `write_splits` context manager of `options.backend` (local or ray)."""
    if options.backend == "ray":
        from transfusion_tf.data.converters import ray_backend

        return ray_backend.write_splits
    return _write_local


def write_source(source: base.Source, *, output_dir: str, options: base.ConvertOptions) -> dict:
    """Writes `source` as a dataset in `output_dir`; returns its dataset_info dict.

    Raises ConversionError for an empty input, an empty split, patients shared by two source
    splits, or (under `options.strict`) any skipped input; atomic.DatasetExistsError when
    `output_dir` already holds a dataset and `options.overwrite` is not set, and
    NotADirectoryError when it is a file (both checked before any work).

    The dataset is written into a staging folder and published when complete
    (`atomic.staged_dataset`): an old dataset in `output_dir` stays loadable until then, and a
    failed or interrupted conversion (SIGINT, SIGTERM) leaves it as it was.
    """
    if options.backend != "ray":
        _check_local_output(output_dir)
    atomic.check_output_dir(output_dir, overwrite=options.overwrite)
    records = _usable_records(source, strict=options.strict)
    plans = plan_splits(records, source=source, options=options)
    num_images = sum(len(plan.tasks) for plan in plans)
    logging.info(
        "converting %d images from %s (%s), backend %s",
        num_images,
        source.input_path,
        source.source_format,
        options.backend,
    )
    write_splits = _backend(options)
    with (
        atomic.interruptible(),
        atomic.staged_dataset(output_dir, overwrite=options.overwrite) as stage,
    ):
        start = time.perf_counter()
        with write_splits(
            plans,
            output_dir=stage,
            tasks=source.tasks,
            options=options,
            desc=f"{source.source_format} -> {output_dir}",
        ) as written:
            skipped = _checked_skips(written, source=source, plans=plans, strict=options.strict)
        seconds = time.perf_counter() - start
        logging.info(
            "processed %d images in %.1f s (%.1f img/s), %d skipped",
            num_images,
            seconds,
            num_images / max(seconds, 1e-9),
            len(skipped),
        )
        from transfusion_tf.data import writer as writer_lib

        return writer_lib.finalize_dataset(
            stage,
            tasks=source.tasks,
            source_format=source.source_format,
            label_policy=source.label_policy,
            image_encoding="+".join(sorted(written.encodings)) if written.encodings else "png",
            split_stats=written.stats,
            skipped=skipped,
            extra={"conversion": _conversion_record(source, options), **written.dicom.to_info()},
            single_label=source.single_label,
        )


def register_reader(
    name: str, read: Callable[[str, base.ConvertOptions], base.Source], *, what: str
) -> base.ConverterFn:
    """Registers converter `name`: `read(input_path, options)` a Source, then `write_source`.

    `what` names the input in the converter's docstring ("a CheXpert folder").
    """

    def convert(*, input_path: str, output_dir: str, options: base.ConvertOptions) -> dict:
        return write_source(read(input_path, options), output_dir=output_dir, options=options)

    convert.__doc__ = f"Converts {what} to TFRecords in `output_dir`; returns dataset_info."
    convert.__name__ = convert.__qualname__ = f"convert_{name}"
    return base.CONVERTERS.add(name, convert)


def _conversion_record(source: base.Source, options: base.ConvertOptions) -> dict[str, Any]:
    """What the dataset was converted from and with which settings (kept in dataset_info)."""
    settings = options.to_dict()
    for key in ("workers", "progress", "overwrite", "strict", "backend", "ray_address"):
        settings.pop(key, None)
    return {"input": source.input_path, "options": settings}


def format_summary(info: dict[str, Any], *, max_skipped: int = 8) -> str:
    """A one-screen text summary of a dataset_info dict: counts, positives per task, skips."""
    splits = [s for s in base.SPLITS if s in info["splits"]] + [
        s for s in info["splits"] if s not in base.SPLITS
    ]
    tasks = info["tasks"]
    width = max([len("positives / labelled"), *(len(t) for t in tasks)]) + 2
    labels = "single-label classes" if info_lib.is_single_label(info) else "multi-label"
    lines = [
        f"source format: {info['source_format']}   tasks: {len(tasks)} ({labels})   "
        f"image encoding: {info.get('image_encoding', '?')}",
        "".ljust(width) + "".join(s.rjust(16) for s in splits),
        "examples".ljust(width)
        + "".join(str(info["splits"][s]["num_examples"]).rjust(16) for s in splits),
        "positives / labelled".ljust(width),
    ]
    for task in tasks:
        cells = []
        for s in splits:
            split_info = info["splits"][s]
            cells.append(
                f"{split_info['positives'].get(task, 0)}/{split_info['labelled'].get(task, 0)}"
            )
        lines.append(f"  {task}".ljust(width) + "".join(c.rjust(16) for c in cells))
    dicom_info = info.get("dicom")
    if dicom_info:
        decoded = sum(dicom_info["decoded"].values())
        undecodable = sum(dicom_info["undecodable"].values())
        lines.append(
            f"DICOM: {decoded} decoded, {undecodable} skipped as undecodable, "
            f"{dicom_info['multi_frame']} multi-frame ({dicom_info['frame_policy']} frame kept)"
        )
        for name, count in dicom_info["decoded"].items():
            lines.append(f"  {count} x {name}")
        for name, count in dicom_info["undecodable"].items():
            lines.append(f"  {count} x {name}: not decoded")
    skipped = info.get("skipped", [])
    lines.append(f"skipped inputs: {len(skipped)}")
    reasons = collections.Counter(s["reason"].split(":")[0] for s in skipped)
    for reason, count in reasons.most_common():
        lines.append(f"  {count} x {reason}")
    for item in skipped[:max_skipped]:
        lines.append(f"    {item['path']}: {item['reason']}")
    if len(skipped) > max_skipped:
        lines.append(f"    ... and {len(skipped) - max_skipped} more (see dataset_info.json)")
    return "\n".join(lines)
