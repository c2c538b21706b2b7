"""The tf.data input pipeline (SPEC D3), used by training, evaluation and the analyses.

    file list -> seeded file shuffle -> shard per input context -> parallel interleave
    -> parse -> [train_examples subset] -> shuffle -> decode + preprocess (parallel, one map)
    -> batch -> [augment the batch] -> prefetch

Evaluation and augment="none" run `preprocess.preprocess_image` per image, so their images
equal `preprocess.decode_and_preprocess` (what an exported model does with bytes). Augmented
training decodes at the stored bit depth (`dataset_info.json`'s bit_depth: uint8, or uint16
when any image is 16-bit) and keeps the integer pixels (`preprocess.prepare_pixels` converts or
resizes only images that differ from the model input); each batch gets its augmentation draws
from a stateless seed (dataset seed, batch index), and `augment.augment_batch` turns it into
normalised float images. With `defer_augment=True` that last step is left to the caller:
batches carry "pixels" (uint8/uint16 [B, S, S, C]) and "augment" (float32 [B, NUM_DRAWS])
instead of "image", and `DeferredAugment` finishes them inside the train step, on the
accelerator. The trainer does this, except under a TPU strategy (XLA, which compiles TPU steps,
has no crop_and_resize kernel). The host then only reads, decodes and batches integer pixels:
4x fewer bytes to the device than float images, and none of the resampling that costs the CPU
a third of a PNG decode per image (see augment.py).

`build_dataset` yields dicts {"image": float32 [B, H, W, C], "labels": float32 [B, T],
"mask": float32 [B, T], "example_id": string [B]} (deferred: "pixels" and "augment" instead
of "image"). `batch_size` is the global batch; with a `tf.distribute.InputContext` each
pipeline batches `get_per_replica_batch_size(batch_size)` and reads the files
`i::num_input_pipelines` of a seeded file order (with fewer files than pipelines, records are
sharded instead).

The `train_examples=N` subset (the paper's 5,000-image regime) is chosen by example id, not by
position: every id gets a score, the first 8 bytes of BLAKE2b(id, key=subset_seed), and the N
ids with the lowest scores are kept (`select_subset`, a pure function of the ids, N and
`subset_seed`). `subset_seed` alone draws it, not `seed` (which orders and augments the
examples, and is moved on by a resumed run): the same `subset_seed` picks the same N examples
for every seed, init and resumption, whatever the shard count, file order or input-context
sharding (the ids of the whole split are scored, then each input pipeline keeps the chosen ids
among its records). Choosing them reads the ids and labels of the split once per process (no
image decoding; `train_subset_ids` and `build_dataset` share the reading).

`balanced=True` draws positives and negatives of the first task with equal probability
(`sample_from_datasets` over two filtered streams; "negative" = not a labelled positive).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os

import numpy as np
import tensorflow as tf
from absl import logging

from transfusion_tf.data import augment as augment_lib
from transfusion_tf.data import decode as decode_lib
from transfusion_tf.data import info as info_lib
from transfusion_tf.data import preprocess as preprocess_lib
from transfusion_tf.data import schema

AUTOTUNE = tf.data.AUTOTUNE
_INTERLEAVE_CYCLE = 8
PIXELS_KEY = "pixels"
DRAWS_KEY = "augment"


@dataclasses.dataclass(frozen=True)
class DeferredAugment:
    """Finishes batches of `build_dataset(..., defer_augment=True)` where the model runs.

    Calling it maps {"pixels": [B, S, S, C], "augment": [B, NUM_DRAWS], ...} to
    {"image": float32 [B, S, S, C], ...} (the other keys unchanged) with
    `augment.augment_batch`; a batch without "pixels" (already finished) is returned as is.
    """

    image_size: int
    preprocess_mode: str
    params: augment_lib.AugmentParams

    def __call__(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        if PIXELS_KEY not in batch:
            return batch
        out = {k: v for k, v in batch.items() if k not in (PIXELS_KEY, DRAWS_KEY)}
        out["image"] = augment_lib.augment_batch(
            batch[PIXELS_KEY],
            batch[DRAWS_KEY],
            size=self.image_size,
            params=self.params,
            mode=self.preprocess_mode,
        )
        return out


def deferred_augment(
    *, image_size: int, preprocess_mode: str, augment: str
) -> DeferredAugment | None:
    """The `DeferredAugment` of a training pipeline's settings; None for augment="none"."""
    preprocess_lib.check_mode(preprocess_mode)
    params = augment_lib.get_policy(augment)
    if params is None:
        return None
    return DeferredAugment(image_size=image_size, preprocess_mode=preprocess_mode, params=params)


def subset_score(example_id: bytes, subset_seed: int) -> int:
    """The seeded score that ranks example ids for the train_examples subset."""
    key = subset_seed.to_bytes(8, "little", signed=True)
    return int.from_bytes(hashlib.blake2b(example_id, digest_size=8, key=key).digest(), "little")


def scan_labels(files: list[str], *, num_tasks: int) -> dict[str, np.ndarray]:
    """Reads ids [N], labels [N, T] and masks [N, T] of all records in `files` (no images)."""
    ds = tf.data.TFRecordDataset(files).batch(4096)
    ds = ds.map(lambda s: schema.parse_labels(s, num_tasks=num_tasks))
    ids, labels, masks = [], [], []
    for batch in ds.as_numpy_iterator():
        ids.append(batch["example_id"])
        labels.append(batch["labels"])
        masks.append(batch["mask"])
    if not ids:
        return {
            "example_id": np.zeros([0], object),
            "labels": np.zeros([0, num_tasks], np.float32),
            "mask": np.zeros([0, num_tasks], np.float32),
        }
    return {
        "example_id": np.concatenate(ids),
        "labels": np.concatenate(labels),
        "mask": np.concatenate(masks),
    }


def _file_key(files: list[str]) -> tuple[tuple[str, int, int], ...]:
    stats = [os.stat(f) for f in files]
    return tuple((f, s.st_size, s.st_mtime_ns) for f, s in zip(files, stats, strict=True))


@functools.lru_cache(maxsize=4)
def _cached_scan(key: tuple[tuple[str, int, int], ...], num_tasks: int) -> dict[str, np.ndarray]:
    return scan_labels([f for f, _, _ in key], num_tasks=num_tasks)


def scan_split(dataset_dir: str, split: str) -> dict[str, np.ndarray]:
    """`scan_labels` of a whole split, read once per process while its shards are unchanged."""
    info = info_lib.load_dataset_info(dataset_dir)
    files = info_lib.split_files(dataset_dir, split)
    scan = _cached_scan(_file_key(files), len(info["tasks"]))
    return {k: v.copy() for k, v in scan.items()}


def select_subset(
    scan: dict[str, np.ndarray], *, num_examples: int, subset_seed: int
) -> np.ndarray:
    """Indices into `scan` of the `num_examples` ids with the lowest scores under `subset_seed`.

    A pure function of the ids, `num_examples` and `subset_seed`: the order of the ids (shard
    count, file order) does not change which ids are chosen.
    """
    scores = np.array([subset_score(i, subset_seed) for i in scan["example_id"]], dtype=np.uint64)
    return np.sort(np.argsort(scores, kind="stable")[:num_examples])


def train_subset_ids(
    dataset_dir: str, *, num_examples: int, subset_seed: int, split: str = "train"
) -> list[bytes]:
    """The sorted example ids of the `train_examples=num_examples` subset of `split`.

    Exactly the ids `build_dataset(..., train_examples=num_examples, subset_seed=subset_seed)`
    trains on; the trainer records them in the workdir.
    """
    _check_subset_args(num_examples, subset_seed)
    scan = scan_split(dataset_dir, split)
    _check_subset_size(num_examples, len(scan["example_id"]), dataset_dir, split)
    chosen = select_subset(scan, num_examples=num_examples, subset_seed=subset_seed)
    return sorted(bytes(i) for i in scan["example_id"][chosen])


def _check_subset_args(train_examples: int | None, subset_seed: int) -> None:
    if train_examples is not None and train_examples < 1:
        raise ValueError(f"train_examples must be >= 1, got {train_examples}")
    if subset_seed < 0:
        raise ValueError(f"subset_seed must be >= 0, got {subset_seed}")


def _check_subset_size(train_examples: int, available: int, dataset_dir: str, split: str) -> None:
    if train_examples > available:
        raise ValueError(
            f"train_examples={train_examples} exceeds the {available} examples of "
            f"split {split!r} in {dataset_dir}"
        )


def _where(file: tf.Tensor, example_id: tf.Tensor) -> tf.Tensor:
    return tf.strings.join(["shard ", file, ", example ", example_id])


def build_dataset(
    *,
    dataset_dir: str,
    split: str,
    batch_size: int,
    image_size: int,
    channels: int,
    preprocess_mode: str = "unit",
    training: bool,
    seed: int = 0,
    augment: str = "default",
    train_examples: int | None = None,
    subset_seed: int = 0,
    balanced: bool = False,
    cache: bool = False,
    deterministic: bool = False,
    defer_augment: bool = False,
    repeat: bool | None = None,
    shuffle_buffer: int = 2048,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Builds the input pipeline of one split of a prepared dataset (see the module docstring).

    training=True: shuffled, augmented (unless augment="none"), repeated forever (unless
    repeat=False), full batches only. training=False: file order, no augmentation, one pass
    (unless repeat=True), the last partial batch kept. `cache=True` keeps decoded, resized
    images in memory after the first pass (augmented training: the integer pixels).
    `deterministic=True` gives the same element order on every run: two datasets built with the
    same arguments yield the same batches. `defer_augment=True` leaves the augmentation of
    augmented training batches to `DeferredAugment` (see the module docstring).
    `train_examples=N` keeps the N examples `subset_seed` draws (`train_subset_ids`); `seed`
    orders, samples and augments them.
    """
    info = info_lib.load_dataset_info(dataset_dir)
    preprocess_lib.check_mode(preprocess_mode)
    preprocess_lib.check_channels(channels)
    params = augment_lib.get_policy(augment) if training else None
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    _check_subset_args(train_examples, subset_seed)
    files = info_lib.split_files(dataset_dir, split)
    if not files:
        raise info_lib.DatasetError(f"split {split!r} of {dataset_dir} has no examples")
    num_tasks = len(info["tasks"])
    repeat = training if repeat is None else repeat
    if balanced and not repeat:
        raise ValueError("balanced sampling needs a repeated (training) stream")

    num_pipelines, pipeline_id = 1, 0
    per_replica_batch = batch_size
    if input_context is not None:
        num_pipelines = input_context.num_input_pipelines
        pipeline_id = input_context.input_pipeline_id
        per_replica_batch = input_context.get_per_replica_batch_size(batch_size)

    if training:
        files = [files[i] for i in np.random.default_rng(seed).permutation(len(files))]
    shard_records = len(files) < num_pipelines
    if num_pipelines > 1 and not shard_records:
        files = files[pipeline_id::num_pipelines]
    elif shard_records:
        logging.warning(
            "%d shards for %d input pipelines in %s: sharding records instead of files",
            len(files),
            num_pipelines,
            dataset_dir,
        )

    keep_table = None
    positives = None
    if train_examples is not None or balanced:
        # The whole split is scored, before any sharding: the subset does not depend on the
        # shard count or on the input pipeline this is.
        scan = scan_split(dataset_dir, split)
        chosen = np.arange(len(scan["example_id"]))
        if train_examples is not None:
            _check_subset_size(train_examples, len(chosen), dataset_dir, split)
            chosen = select_subset(scan, num_examples=train_examples, subset_seed=subset_seed)
            keep_table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(scan["example_id"][chosen], tf.string),
                    tf.ones([len(chosen)], tf.int32),
                ),
                default_value=0,
            )
        is_pos = (scan["mask"][chosen, 0] == 1) & (scan["labels"][chosen, 0] >= 0.5)
        positives = int(is_pos.sum()), int((~is_pos).sum())
        if balanced and min(positives) == 0:
            raise ValueError(
                f"balanced sampling needs positives and negatives of task "
                f"{info['tasks'][0]!r}; split {split!r} of {dataset_dir} "
                f"(subset of {len(chosen)}) has {positives[0]} positives, {positives[1]} others"
            )

    det = True if not training else deterministic
    options = tf.data.Options()
    options.deterministic = det

    def parse(record, file):
        example = schema.parse_example(record, num_tasks=num_tasks)
        example["file"] = file
        return example

    def decode(example):
        """Parsed example -> dict with "image" float32 [S, S, channels] in [0, 1]."""
        image = decode_lib.checked_decode_unit_float(
            example["image_bytes"],
            height=example["height"],
            width=example["width"],
            where=_where(example["file"], example["example_id"]),
        )
        image = preprocess_lib.prepare_unit(image, image_size=image_size, channels=channels)
        return {
            "image": image,
            "labels": example["labels"],
            "mask": example["mask"],
            "example_id": example["example_id"],
        }

    pixel_dtype = info_lib.pixel_dtype(info)

    def decode_pixels(example):
        """Parsed example -> dict with "pixels" uint8/uint16 [S, S, channels] (augmented path).

        With channels=3 the decoder itself repeats gray and drops alpha (exact).
        """
        where = _where(example["file"], example["example_id"])
        encoded = decode_lib.check_encoded(example["image_bytes"], where=where)
        pixels = decode_lib.decode_image(
            encoded, channels=3 if channels == 3 else 0, dtype=pixel_dtype
        )
        pixels = decode_lib.check_size(
            pixels, height=example["height"], width=example["width"], where=where
        )
        pixels = preprocess_lib.prepare_pixels(pixels, image_size=image_size, channels=channels)
        return {
            PIXELS_KEY: pixels,
            "labels": example["labels"],
            "mask": example["mask"],
            "example_id": example["example_id"],
        }

    # Filters need the parsed example; otherwise the (record, file) pairs are shuffled as they
    # are and parsed in the one per-element map (one map stage less per element).
    parse_early = keep_table is not None or balanced or cache

    def finish(*element):
        """Parses (unless done), decodes (unless cached) and preprocesses one element."""
        example = element[0] if parse_early else parse(*element)
        if params is None:
            image = (example if cache else decode(example))["image"]
            image = preprocess_lib.normalize(image, mode=preprocess_mode)
            return {
                "image": image,
                "labels": example["labels"],
                "mask": example["mask"],
                "example_id": example["example_id"],
            }
        return example if cache else decode_pixels(example)

    def add_draws(index, batch):
        """The augmentation draws of a batch, seeded by (seed, global batch index)."""
        batch_seed = tf.stack([tf.constant(seed, tf.int64), index * num_pipelines + pipeline_id])
        size = tf.shape(batch["labels"])[0]
        draws = augment_lib.draw_batch(batch_seed, size)
        return dict(batch, **{DRAWS_KEY: draws})

    def stream(keep=None) -> tf.data.Dataset:
        """Records with their file, or parsed (with cache, decoded) examples."""
        ds = tf.data.Dataset.from_tensor_slices(files)
        if training and not cache:
            ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        if repeat and not cache:
            ds = ds.repeat()
        ds = ds.interleave(
            lambda f: tf.data.TFRecordDataset(f).map(lambda r: (r, f)),
            cycle_length=min(len(files), _INTERLEAVE_CYCLE),
            block_length=1,
            num_parallel_calls=AUTOTUNE,
            deterministic=det,
        )
        if shard_records:
            ds = ds.shard(num_pipelines, pipeline_id)
        if parse_early:
            ds = ds.map(parse, num_parallel_calls=AUTOTUNE)
        if keep_table is not None:
            ds = ds.filter(lambda ex: keep_table.lookup(ex["example_id"]) > 0)
        if keep is not None:
            ds = ds.filter(keep)
        if cache:
            cached = decode if params is None else decode_pixels
            ds = ds.map(cached, num_parallel_calls=AUTOTUNE).cache()
            if repeat:
                ds = ds.repeat()
        if training:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        return ds

    if balanced:

        def is_positive(ex):
            return tf.logical_and(ex["mask"][0] == 1.0, ex["labels"][0] >= 0.5)

        ds = tf.data.Dataset.sample_from_datasets(
            [stream(is_positive), stream(lambda ex: tf.logical_not(is_positive(ex)))],
            weights=[0.5, 0.5],
            seed=seed,
        )
    else:
        ds = stream()
    ds = ds.map(finish, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(per_replica_batch, drop_remainder=training, num_parallel_calls=AUTOTUNE)
    if params is not None:
        ds = ds.enumerate().map(add_draws)
        if not defer_augment:
            augment_fn = DeferredAugment(
                image_size=image_size, preprocess_mode=preprocess_mode, params=params
            )
            ds = ds.map(augment_fn, num_parallel_calls=AUTOTUNE)
    ds = ds.prefetch(AUTOTUNE).with_options(options)
    logging.info(
        "input pipeline %s/%s: %d files, per-replica batch %d, training=%s, augment=%s%s%s",
        os.path.basename(os.path.normpath(dataset_dir)),
        split,
        len(files),
        per_replica_batch,
        training,
        augment if training else "none",
        " (deferred)" if params is not None and defer_augment else "",
        f", subset of {train_examples}" if train_examples else "",
    )
    return ds
