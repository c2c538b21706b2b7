"""`transfusion-prepare --backend=ray`: the per-image work and the shard writing as Ray tasks.

`driver.write_source` still reads the source, splits by patient, orders every split and
accounts for skips; only where images are encoded and shards written changes. The dataset
equals the local backend's byte for byte (shard names, example order, shard bytes, counts,
dataset_info.json), because the examples land where the local writer puts them: the n-th
image of a split that encodes without error goes to shard n mod num_shards.

1. A split's images, in write order, are cut into contiguous chunks. One task per chunk
   reads, decodes (DICOM included), resizes and encodes them with the local pool's own
   `imageio.process_image`, and returns a summary (per image: error, or encoding and bit
   depth) plus its encoded images dealt into num_shards parts: its k-th success to part
   k mod num_shards.
2. Once the summaries of a split are in, the successes of the chunks before a chunk (o) say
   where its parts go: part k to shard (o + k) mod num_shards. One task per shard receives its
   part of every chunk, in chunk order, as object refs (Ray moves the bytes from the node that
   encoded them to the node writing the shard, not through this process), and writes the shard
   under a temporary name in the dataset directory.
3. The shards get their final names when `write_source`'s checks (strict, empty splits) pass,
   and are deleted otherwise.

Inputs and the dataset directory may be on any filesystem TensorFlow reads (`gs://...`;
see `data.fileio`), since cluster nodes share no disk.
"""

from __future__ import annotations

import collections
import contextlib
import math
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from absl import logging
from tqdm import tqdm

from transfusion_tf import cluster
from transfusion_tf.data import encode, fileio
from transfusion_tf.data import info as info_lib
from transfusion_tf.data.converters import base, driver, imageio

# Chunks per CPU of the cluster: enough to balance uneven images, few enough objects.
CHUNKS_PER_CPU = 4


def _process_chunk(tasks: Sequence[imageio.ImageTask], num_shards: int) -> tuple:
    """(summary, part 0, ..., part num_shards-1) of one chunk of images (a Ray task).

    Summary items: (error or None, encoding, bit depth, DICOM transfer syntax, frames).
    """
    summary: list[tuple[str | None, str, int, str, int]] = []
    parts: list[list[tuple[bytes, int, int, int]]] = [[] for _ in range(num_shards)]
    successes = 0
    for task in tasks:
        result = imageio.process_image(task)
        if result.error is not None:
            summary.append((result.error, "", 0, result.dicom_syntax, result.frames))
            continue
        parts[successes % num_shards].append(
            (result.data, result.height, result.width, result.channels)
        )
        successes += 1
        summary.append(
            (
                None,
                result.encoding,
                encode.bit_depth_of(result.data),
                result.dicom_syntax,
                result.frames,
            )
        )
    return (summary, *parts)


def _write_shard(path: str, records: Sequence[tuple], *parts: list) -> int:
    """Writes one shard: `records` (id, patient, labels, mask) with the parts' images, in order."""
    import tensorflow as tf

    from transfusion_tf.data import schema

    images = [image for part in parts for image in part]
    if len(images) != len(records):
        raise RuntimeError(f"{path}: {len(images)} images for {len(records)} records")
    with tf.io.TFRecordWriter(path) as writer:
        for (data, height, width, channels), (example_id, patient, labels, mask) in zip(
            images, records, strict=True
        ):
            example = schema.make_example(
                image_bytes=data,
                height=height,
                width=width,
                channels=channels,
                example_id=example_id,
                patient_id=patient,
                labels=labels,
                mask=mask,
            )
            writer.write(example.SerializeToString(deterministic=True))
    return len(images)


def _prepare_directory(output_dir: str, plans: Sequence[driver.SplitPlan], overwrite: bool) -> None:
    """What ShardedWriter does on entering: refuse old shards without overwrite, drop old info."""
    fileio.makedirs(output_dir)
    for plan in plans:
        existing = info_lib.list_shards(output_dir, plan.split)
        if existing and not overwrite:
            raise FileExistsError(
                f"{output_dir} already holds shards of split {plan.split!r} "
                f"({existing[0].rsplit('/', 1)[-1]}, ...); pass overwrite to replace them"
            )
    info_path = fileio.join(output_dir, info_lib.DATASET_INFO_FILE)
    if fileio.exists(info_path):
        fileio.remove(info_path)


@contextlib.contextmanager
def write_splits(
    plans: Sequence[driver.SplitPlan],
    *,
    output_dir: str,
    tasks: Sequence[str],
    options: base.ConvertOptions,
    desc: str,
) -> Iterator[driver.SplitsWritten]:
    """The Ray backend of `driver.write_source` (the same contract as its local one)."""
    from transfusion_tf.data import writer as writer_lib

    _prepare_directory(output_dir, plans, options.overwrite)
    token = uuid.uuid4().hex[:12]
    temporary: dict[str, list[str]] = {plan.split: [] for plan in plans}
    try:
        with cluster.connected(options.ray_address, error=base.ConversionError) as ray:
            written = _run(
                ray,
                plans,
                output_dir=output_dir,
                token=token,
                temporary=temporary,
                tasks=tasks,
                options=options,
                desc=desc,
                writer_lib=writer_lib,
            )
        yield written
    except BaseException:
        for path in (p for paths in temporary.values() for p in paths):
            if fileio.exists(path):
                fileio.remove(path)
        logging.warning("discarded unfinished shards in %s", output_dir)
        raise
    for split, paths in temporary.items():
        for old in info_lib.list_shards(output_dir, split):
            fileio.remove(old)
        for i, path in enumerate(paths):
            fileio.replace(path, fileio.join(output_dir, info_lib.shard_name(split, i, len(paths))))
        logging.info("wrote split %r to %d shards in %s", split, len(paths), output_dir)


def _run(
    ray: Any,
    plans: Sequence[driver.SplitPlan],
    *,
    output_dir: str,
    token: str,
    temporary: dict[str, list[str]],
    tasks: Sequence[str],
    options: base.ConvertOptions,
    desc: str,
    writer_lib: Any,
) -> driver.SplitsWritten:
    total = sum(len(plan.tasks) for plan in plans)
    cpus = max(1.0, ray.cluster_resources().get("CPU", 1.0))
    chunk_size = max(1, min(driver.EXAMPLES_PER_SHARD, math.ceil(total / (CHUNKS_PER_CPU * cpus))))
    logging.info("encoding on Ray: %g CPUs, %d images per task", cpus, chunk_size)
    process = ray.remote(_process_chunk)
    write = ray.remote(_write_shard)
    chunks: dict[str, list[list[Any]]] = {}
    pending: dict[Any, tuple[str, int]] = {}
    for plan in plans:
        chunks[plan.split] = []
        for c, lo in enumerate(range(0, len(plan.tasks), chunk_size)):
            refs = process.options(num_returns=plan.num_shards + 1).remote(
                plan.tasks[lo : lo + chunk_size], plan.num_shards
            )
            chunks[plan.split].append(refs)
            pending[refs[0]] = (plan.split, c)
    summaries: dict[str, dict[int, list]] = {plan.split: {} for plan in plans}
    writes: list[tuple[Any, int]] = []
    by_split = {plan.split: plan for plan in plans}
    with tqdm(
        total=total, unit="img", desc=desc, disable=None if options.progress else True
    ) as bar:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                split, c = pending.pop(ref)
                summaries[split][c] = ray.get(ref)
                bar.update(len(summaries[split][c]))
                if len(summaries[split]) == len(chunks[split]):
                    writes += _submit_shards(
                        write,
                        by_split[split],
                        chunks[split],
                        summaries[split],
                        output_dir=output_dir,
                        token=token,
                        temporary=temporary[split],
                    )
    for ref, expected in writes:
        count = ray.get(ref)
        if count != expected:
            raise RuntimeError(f"a shard task wrote {count} examples, {expected} expected")
    written = driver.SplitsWritten(stats={}, skipped=[], encodings=collections.Counter())
    for plan in plans:
        stats = writer_lib.SplitStats(tuple(tasks))
        flat = [item for c in range(len(chunks[plan.split])) for item in summaries[plan.split][c]]
        for record, (error, encoding, bit_depth, syntax, frames) in zip(
            plan.records, flat, strict=True
        ):
            written.dicom.add(
                imageio.EncodedImage(index=0, error=error, dicom_syntax=syntax, frames=frames)
            )
            if error is not None:
                written.skipped.append({"path": record.path or record.example_id, "reason": error})
                continue
            written.encodings[encoding] += 1
            stats.add(record.labels, record.mask)
            stats.bit_depth = max(stats.bit_depth, bit_depth)
        written.stats[plan.split] = stats
    return written


def _submit_shards(
    write: Any,
    plan: driver.SplitPlan,
    chunk_refs: list[list[Any]],
    summaries: dict[int, list],
    *,
    output_dir: str,
    token: str,
    temporary: list[str],
) -> list[tuple[Any, int]]:
    """Starts one write task per non-empty shard of a split; returns (ref, examples) pairs."""
    shards = plan.num_shards
    records: list[list[tuple]] = [[] for _ in range(shards)]
    parts: list[list[Any]] = [[] for _ in range(shards)]
    offset = 0
    position = 0
    for c, refs in enumerate(chunk_refs):
        successes = 0
        for error, *_ in summaries[c]:
            record = plan.records[position]
            position += 1
            if error is None:
                records[(offset + successes) % shards].append(
                    (record.example_id, record.patient_id, record.labels, record.mask)
                )
                successes += 1
        for k in range(min(successes, shards)):
            parts[(offset + k) % shards].append(refs[1 + k])
        offset += successes
    out = []
    for s in range(min(offset, shards)):  # fewer examples than shards: only the first are kept
        path = fileio.join(output_dir, f".{plan.split}-{s:05d}.tfrecord.tmp-ray-{token}")
        temporary.append(path)
        out.append((write.remote(path, records[s], *parts[s]), len(records[s])))
    return out
