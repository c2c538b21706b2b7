"""P1 benchmark: training input pipeline (default augmentation) vs a decode-only floor.

Writes synthetic fundus shards once, then measures images/s on the same shards of
  (a) the floor: read, parse, decode (uint8), batch, prefetch — parallel and repeated;
  (b) our training pipeline: `build_dataset(training=True, augment="default")`, which adds
      the shuffle, integrity checks, resize, stateless augmentation and normalisation.
Each is measured `--rounds` times, alternating, after a warm-up; the best of each counts.
The last line printed is one JSON object with both figures and ratio = ours / floor
(SPEC P1 asks for >= 0.8).

    python bench/pipeline.py --num_examples=512 --image_size=224
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import tensorflow as tf
from absl import app, flags

from transfusion_tf.data import info as info_lib
from transfusion_tf.data import pipeline, schema, synthetic

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_examples", 512, "Synthetic fundus images to write.")
flags.DEFINE_integer("image_size", 224, "Stored and model image side (pixels).")
flags.DEFINE_integer("batch_size", 32, "Batch size of both pipelines.")
flags.DEFINE_integer("num_shards", 8, "Training shards.")
flags.DEFINE_integer("warmup_batches", 5, "Batches discarded before timing.")
flags.DEFINE_integer("batches", 40, "Timed batches per round.")
flags.DEFINE_integer("rounds", 2, "Alternating measurement rounds.")
flags.DEFINE_integer("workers", os.cpu_count() or 1, "Processes that render the images.")
flags.DEFINE_enum(
    "preprocess_mode", "unit", ["unit", "caffe", "tf", "torch"], "Normalisation of ours."
)
flags.DEFINE_string("dataset_dir", None, "Reuse or create the dataset here (default: temp).")


def floor_dataset(files: list[str], *, batch_size: int, num_tasks: int) -> tf.data.Dataset:
    """Read, parse, decode and batch only: the least any pipeline on these shards must do."""

    def parse_decode(record):
        ex = schema.parse_example(record, num_tasks=num_tasks)
        image = tf.io.decode_png(ex["image_bytes"], channels=3)
        return {"image": image, "labels": ex["labels"]}

    ds = tf.data.Dataset.from_tensor_slices(files).repeat()
    ds = ds.interleave(
        tf.data.TFRecordDataset,
        cycle_length=len(files),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=False,
    )
    ds = ds.map(parse_decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def images_per_second(ds: tf.data.Dataset, *, warmup: int, batches: int) -> float:
    iterator = iter(ds)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    count = 0
    for _ in range(batches):
        count += int(next(iterator)["image"].shape[0])
    return count / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
    del argv
    tmp = None
    dataset_dir = FLAGS.dataset_dir
    if dataset_dir is None:
        tmp = tempfile.mkdtemp(prefix="bench_pipeline_")
        dataset_dir = tmp
    try:
        if not os.path.exists(os.path.join(dataset_dir, info_lib.DATASET_INFO_FILE)):
            start = time.perf_counter()
            synthetic.write_synthetic_dataset(
                kind="fundus",
                output_dir=dataset_dir,
                num_examples=FLAGS.num_examples,
                image_size=FLAGS.image_size,
                valid_fraction=0.0,
                test_fraction=0.0,
                num_shards=FLAGS.num_shards,
                workers=FLAGS.workers,
            )
            print(f"wrote {FLAGS.num_examples} images in {time.perf_counter() - start:.1f}s")
        info = info_lib.load_dataset_info(dataset_dir)
        files = info_lib.split_files(dataset_dir, "train")
        floor = floor_dataset(files, batch_size=FLAGS.batch_size, num_tasks=len(info["tasks"]))
        ours = pipeline.build_dataset(
            dataset_dir=dataset_dir,
            split="train",
            batch_size=FLAGS.batch_size,
            image_size=FLAGS.image_size,
            channels=3,
            preprocess_mode=FLAGS.preprocess_mode,
            training=True,
            augment="default",
        )
        results: dict[str, list[float]] = {"floor": [], "ours": []}
        for _ in range(FLAGS.rounds):
            for name, ds in (("floor", floor), ("ours", ours)):
                rate = images_per_second(ds, warmup=FLAGS.warmup_batches, batches=FLAGS.batches)
                results[name].append(rate)
                print(f"{name}: {rate:.1f} images/s")
        best_floor, best_ours = max(results["floor"]), max(results["ours"])
        summary = {
            "benchmark": "P1 input pipeline",
            "image_size": FLAGS.image_size,
            "preprocess_mode": FLAGS.preprocess_mode,
            "batch_size": FLAGS.batch_size,
            "num_examples": FLAGS.num_examples,
            "cpu_count": os.cpu_count(),
            "floor_images_per_second": round(best_floor, 1),
            "ours_images_per_second": round(best_ours, 1),
            "ratio": round(best_ours / best_floor, 3),
        }
        print(json.dumps(summary))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
