"""The tf.data input pipeline (SPEC D3), used by training, evaluation and the analyses.

    file list -> seeded file shuffle -> shard per input context -> parallel interleave
    -> parse -> [train_examples subset] -> shuffle -> decode + preprocess (parallel, one map)
    -> batch -> [augment the batch] -> prefetch

Three seams, as in TF Model Garden's vision dataloaders: `Decoder` (serialized tf.Example ->
dict of tensors, the image still encoded), a parser (`EvalParser` or `TrainParser`: decoded
example -> the model's inputs and targets, one fixed output structure each) and
`InputReader` (shards -> interleave / shuffle / repeat / batch / prefetch, sharded per
`tf.distribute.InputContext`). `build_dataset` composes them.

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
from typing import ClassVar

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


@dataclasses.dataclass(frozen=True)
class Decoder:
    """Decodes a serialized tf.Example (and the path of its shard) into a dict of tensors.

    The dict holds `schema.parse_example`'s features ("image_bytes" string, "height" and
    "width" int64, "labels" float32 [T], "mask" float32 [T], "example_id" string, ...) and
    "file", the shard the record came from (for error messages). The image stays encoded: a
    parser decodes it at the depth it needs.
    """

    num_tasks: int

    def decode(self, record: tf.Tensor, file: tf.Tensor) -> dict[str, tf.Tensor]:
        example = schema.parse_example(record, num_tasks=self.num_tasks)
        example["file"] = file
        return example


@dataclasses.dataclass(frozen=True)
class EvalParser:
    """Decoded example -> {"image": float32 [S, S, C] normalised, "labels", "mask", "example_id"}.

    Evaluation and un-augmented training: `preprocess.preprocess_image` per image, so the
    images equal `preprocess.decode_and_preprocess` (what an exported model does with bytes).
    `prepare` (decode, resize to [S, S, C] in [0, 1]) is what `cache=True` keeps; `finish`
    normalises; `parse` = `finish(prepare(example))`, the one per-element map when not cached.
    """

    image_size: int
    channels: int
    preprocess_mode: str

    output_keys: ClassVar[tuple[str, ...]] = ("image", "labels", "mask", "example_id")
    seeded_batches: ClassVar[bool] = False

    def prepare(self, example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        image = decode_lib.checked_decode_unit_float(
            example["image_bytes"],
            height=example["height"],
            width=example["width"],
            where=_where(example["file"], example["example_id"]),
        )
        image = preprocess_lib.prepare_unit(
            image, image_size=self.image_size, channels=self.channels
        )
        return _with_targets(example, image=image)

    def finish(self, prepared: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        image = preprocess_lib.normalize(prepared["image"], mode=self.preprocess_mode)
        return _with_targets(prepared, image=image)

    def parse(self, example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return self.finish(self.prepare(example))


@dataclasses.dataclass(frozen=True)
class TrainParser:
    """Decoded example -> {"pixels": uint8/uint16 [S, S, C], "labels", "mask", "example_id"}.

    Augmented training: the integer pixels at the stored bit depth (`pixel_dtype`),
    converted or resized only where they differ from the model input; `parse_batch` adds each
    batch's augmentation draws "augment" float32 [B, NUM_DRAWS], seeded by (seed, global batch
    index), which `DeferredAugment` turns into images. `prepare` is what `cache=True` keeps;
    `finish` is the identity.
    """

    image_size: int
    channels: int
    pixel_dtype: tf.DType
    seed: int

    output_keys: ClassVar[tuple[str, ...]] = (PIXELS_KEY, "labels", "mask", "example_id")
    batch_keys: ClassVar[tuple[str, ...]] = (*output_keys, DRAWS_KEY)
    seeded_batches: ClassVar[bool] = True

    def prepare(self, example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        where = _where(example["file"], example["example_id"])
        encoded = decode_lib.check_encoded(example["image_bytes"], where=where)
        # With channels=3 the decoder itself repeats gray and drops alpha (exact).
        pixels = decode_lib.decode_image(
            encoded, channels=3 if self.channels == 3 else 0, dtype=self.pixel_dtype
        )
        pixels = decode_lib.check_size(
            pixels, height=example["height"], width=example["width"], where=where
        )
        pixels = preprocess_lib.prepare_pixels(
            pixels, image_size=self.image_size, channels=self.channels
        )
        return _with_targets(example, **{PIXELS_KEY: pixels})

    def finish(self, prepared: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return prepared

    def parse(self, example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return self.prepare(example)

    def parse_batch(self, index: tf.Tensor, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Adds the draws of the batch of global index `index` (int64 scalar over all input
        pipelines), seeded by (seed, index)."""
        batch_seed = tf.stack([tf.constant(self.seed, tf.int64), index])
        draws = augment_lib.draw_batch(batch_seed, tf.shape(batch["labels"])[0])
        return dict(batch, **{DRAWS_KEY: draws})


Parser = EvalParser | TrainParser


def _with_targets(example: dict[str, tf.Tensor], **images: tf.Tensor) -> dict[str, tf.Tensor]:
    return {
        **images,
        "labels": example["labels"],
        "mask": example["mask"],
        "example_id": example["example_id"],
    }


@dataclasses.dataclass(frozen=True)
class Sharding:
    """How one input pipeline of a `tf.distribute.InputContext` reads a split.

    `files` are the pipeline's own shards (`i::num_pipelines` of the seeded order) unless
    there are fewer shards than pipelines: then every pipeline reads all of them and keeps
    its records `i::num_pipelines` (`shard_records`).
    """

    num_pipelines: int = 1
    pipeline_id: int = 0
    per_replica_batch: int = 1
    shard_records: bool = False

    @classmethod
    def of(
        cls, input_context: tf.distribute.InputContext | None, *, batch_size: int, num_files: int
    ) -> Sharding:
        if input_context is None:
            return cls(per_replica_batch=batch_size)
        num_pipelines = input_context.num_input_pipelines
        return cls(
            num_pipelines=num_pipelines,
            pipeline_id=input_context.input_pipeline_id,
            per_replica_batch=input_context.get_per_replica_batch_size(batch_size),
            shard_records=num_files < num_pipelines,
        )

    def files(self, files: list[str], *, dataset_dir: str) -> list[str]:
        if self.shard_records:
            logging.warning(
                "%d shards for %d input pipelines in %s: sharding records instead of files",
                len(files),
                self.num_pipelines,
                dataset_dir,
            )
        elif self.num_pipelines > 1:
            return files[self.pipeline_id :: self.num_pipelines]
        return files


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which records a pipeline keeps: the `train_examples` subset, and balanced sampling."""

    keep_table: tf.lookup.StaticHashTable | None = None
    balanced: bool = False

    @property
    def filters(self) -> bool:
        return self.keep_table is not None or self.balanced


def select_examples(
    dataset_dir: str,
    split: str,
    *,
    tasks: list[str],
    train_examples: int | None,
    subset_seed: int,
    balanced: bool,
    repeat: bool = True,
) -> Selection:
    """The `Selection` of `build_dataset`'s `train_examples` / `subset_seed` / `balanced`.

    The whole split is scored, before any sharding: the subset does not depend on the shard
    count or on the input pipeline this is. Balanced sampling needs a `repeat`ed stream.
    """
    if balanced and not repeat:
        raise ValueError("balanced sampling needs a repeated (training) stream")
    if train_examples is None and not balanced:
        return Selection()
    scan = scan_split(dataset_dir, split)
    chosen = np.arange(len(scan["example_id"]))
    keep_table = None
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
    positives, others = int(is_pos.sum()), int((~is_pos).sum())
    if balanced and min(positives, others) == 0:
        raise ValueError(
            f"balanced sampling needs positives and negatives of task {tasks[0]!r}; split "
            f"{split!r} of {dataset_dir} (subset of {len(chosen)}) has {positives} "
            f"positives, {others} others"
        )
    return Selection(keep_table=keep_table, balanced=balanced)


def _is_positive(example: dict[str, tf.Tensor]) -> tf.Tensor:
    """Balanced sampling's classes: a labelled positive of the first task, or not."""
    return tf.logical_and(example["mask"][0] == 1.0, example["labels"][0] >= 0.5)


@dataclasses.dataclass(frozen=True)
class InputReader:
    """Reads shards into batches: the tf.data mechanics around a `Decoder` and a parser.

        files -> [file shuffle, repeat] -> parallel interleave -> [shard records]
        -> [decode, select, prepare + cache] -> [shuffle] -> decode + parse (one parallel map)
        -> batch -> [parse_batch] -> [postprocess] -> prefetch

    Without filters or a cache, the (record, file) pairs are shuffled as they are and decoded
    in the one per-element map (one map stage less per element).
    """

    files: list[str]
    sharding: Sharding
    training: bool
    repeat: bool
    cache: bool = False
    seed: int = 0
    shuffle_buffer: int = 2048
    deterministic: bool = False

    def _records(self) -> tf.data.Dataset:
        """(record, file) pairs of this pipeline's shards."""
        files = self.files
        ds = tf.data.Dataset.from_tensor_slices(files)
        if self.training and not self.cache:
            ds = ds.shuffle(len(files), seed=self.seed, reshuffle_each_iteration=True)
        if self.repeat and not self.cache:
            ds = ds.repeat()
        ds = ds.interleave(
            lambda f: tf.data.TFRecordDataset(f).map(lambda r: (r, f)),
            cycle_length=min(len(files), _INTERLEAVE_CYCLE),
            block_length=1,
            num_parallel_calls=AUTOTUNE,
            deterministic=True if not self.training else self.deterministic,
        )
        if self.sharding.shard_records:
            ds = ds.shard(self.sharding.num_pipelines, self.sharding.pipeline_id)
        return ds

    def _stream(self, decoder: Decoder, parser: Parser, selection: Selection, keep=None):
        """Records with their file, or decoded (with cache, prepared) examples."""
        ds = self._records()
        if selection.filters or self.cache:
            ds = ds.map(decoder.decode, num_parallel_calls=AUTOTUNE)
        if selection.keep_table is not None:
            table = selection.keep_table
            ds = ds.filter(lambda ex: table.lookup(ex["example_id"]) > 0)
        if keep is not None:
            ds = ds.filter(keep)
        if self.cache:
            ds = ds.map(parser.prepare, num_parallel_calls=AUTOTUNE).cache()
            if self.repeat:
                ds = ds.repeat()
        if self.training:
            ds = ds.shuffle(self.shuffle_buffer, seed=self.seed, reshuffle_each_iteration=True)
        return ds

    def read(
        self,
        *,
        decoder: Decoder,
        parser: Parser,
        selection: Selection = Selection(),
        postprocess=None,
    ) -> tf.data.Dataset:
        """Batches of `parser`'s output (then `postprocess`'s, if given), prefetched."""
        if selection.balanced:
            ds = tf.data.Dataset.sample_from_datasets(
                [
                    self._stream(decoder, parser, selection, _is_positive),
                    self._stream(
                        decoder, parser, selection, lambda ex: tf.logical_not(_is_positive(ex))
                    ),
                ],
                weights=[0.5, 0.5],
                seed=self.seed,
            )
        else:
            ds = self._stream(decoder, parser, selection)
        decoded = selection.filters or self.cache
        cache = self.cache

        def parse(*element):
            example = element[0] if decoded else decoder.decode(*element)
            return parser.finish(example) if cache else parser.parse(example)

        ds = ds.map(parse, num_parallel_calls=AUTOTUNE)
        batch = self.sharding.per_replica_batch
        ds = ds.batch(batch, drop_remainder=self.training, num_parallel_calls=AUTOTUNE)
        if parser.seeded_batches:
            num_pipelines, pipeline_id = self.sharding.num_pipelines, self.sharding.pipeline_id
            ds = ds.enumerate().map(
                lambda i, b: parser.parse_batch(i * num_pipelines + pipeline_id, b)
            )
        if postprocess is not None:
            ds = ds.map(postprocess, num_parallel_calls=AUTOTUNE)
        options = tf.data.Options()
        options.deterministic = True if not self.training else self.deterministic
        return ds.prefetch(AUTOTUNE).with_options(options)


def _pipeline_files(
    dataset_dir: str,
    split: str,
    ctx: tf.distribute.InputContext | None,
    *,
    seed: int | None,
    batch_size: int,
) -> tuple[list[str], Sharding]:
    """This input pipeline's shards of `split` (in a `seed`ed order, unless None) and sharding."""
    files = info_lib.split_files(dataset_dir, split)
    if not files:
        raise info_lib.DatasetError(f"split {split!r} of {dataset_dir} has no examples")
    sharding = Sharding.of(ctx, batch_size=batch_size, num_files=len(files))
    if seed is not None:
        files = [files[i] for i in np.random.default_rng(seed).permutation(len(files))]
    return sharding.files(files, dataset_dir=dataset_dir), sharding


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


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
    mode = preprocess_mode
    preprocess_lib.check_mode(mode)
    preprocess_lib.check_channels(channels)
    params = augment_lib.get_policy(augment) if training else None
    _check_sizes(batch_size=batch_size, image_size=image_size)
    _check_subset_args(train_examples, subset_seed)
    files, sharding = _pipeline_files(
        dataset_dir, split, input_context, seed=seed if training else None, batch_size=batch_size
    )
    repeat = training if repeat is None else repeat
    selection = select_examples(
        dataset_dir,
        split,
        tasks=info["tasks"],
        train_examples=train_examples,
        subset_seed=subset_seed,
        balanced=balanced,
        repeat=repeat,
    )
    # Un-augmented training parses as evaluation does; augmented training hands integer
    # pixels and draws on, which `DeferredAugment` finishes here or in the train step.
    parser: Parser = EvalParser(image_size=image_size, channels=channels, preprocess_mode=mode)
    host_augment = None
    if params is not None:
        dtype = info_lib.pixel_dtype(info)
        parser = TrainParser(image_size=image_size, channels=channels, pixel_dtype=dtype, seed=seed)
        if not defer_augment:
            host_augment = DeferredAugment(
                image_size=image_size, preprocess_mode=mode, params=params
            )
    reader = InputReader(
        files=files,
        sharding=sharding,
        training=training,
        repeat=repeat,
        cache=cache,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        deterministic=deterministic,
    )
    deferred = " (deferred)" if params is not None and defer_augment else ""
    augment_text = (augment if training else "none") + deferred
    _log_pipeline(reader, dataset_dir, split, augment=augment_text, subset=train_examples)
    return reader.read(
        decoder=Decoder(num_tasks=len(info["tasks"])),
        parser=parser,
        selection=selection,
        postprocess=host_augment,
    )


def _log_pipeline(
    reader: InputReader, dataset_dir: str, split: str, *, augment: str, subset: int | None
) -> None:
    logging.info(
        "input pipeline %s/%s: %d files, per-replica batch %d, training=%s, augment=%s%s",
        os.path.basename(os.path.normpath(dataset_dir)),
        split,
        len(reader.files),
        reader.sharding.per_replica_batch,
        reader.training,
        augment,
        f", subset of {subset}" if subset else "",
    )
