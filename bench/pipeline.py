"""P1 benchmark: training input pipeline (default augmentation) vs a decode-only floor.

Writes synthetic fundus shards once, then measures images/s on the same shards of
  (a) the floor: read, parse, decode (uint8), batch, prefetch -- parallel and repeated;
  (b) "ours": the training input pipeline as the trainer runs it,
      `build_dataset(training=True, augment="default", defer_augment=True)`: file shuffle,
      interleave, example shuffle, integrity checks, decode, per-batch seeded augmentation
      draws, batch, prefetch. The augmentation arithmetic itself (zoom/shift/flip as
      crop_and_resize, colour jitter, normalisation) runs inside the train step, on the
      accelerator, and is not part of the input pipeline;
  (c) for reference, "host_<mode>" for each of `--modes`: the same pipeline with
      `defer_augment=False`, i.e. with that arithmetic also done by the host CPU (what a
      CPU-only machine pays somewhere, in the pipeline or in the step).
The pipelines are measured in alternating rounds (floor, ours, host_*; `--rounds` times), so
a change in machine load hits all of them alike. Per round, ratio = images/s / the floor's
images/s of the same round; reported are the median over rounds, the ratio of the best
rounds and the ratio of CPU time per image (process CPU seconds / images, which depends
little on other processes' load). SPEC P1 asks ours >= 0.8 of the floor.
The last line printed is one JSON object with every figure; its "ratio" is ours' median.

    python bench/pipeline.py --num_examples=192 --image_size=224 --rounds=7
"""

from __future__ import annotations

import os
import statistics

import _common
import tensorflow as tf
from absl import flags

from transfusion_tf.data import info as info_lib
from transfusion_tf.data import pipeline, preprocess, schema

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_examples", 192, "Synthetic fundus images to write.")
flags.DEFINE_integer("image_size", 224, "Stored and model image side (pixels).")
flags.DEFINE_integer("batch_size", 32, "Batch size of every pipeline.")
flags.DEFINE_integer("num_shards", 8, "Training shards.")
flags.DEFINE_integer("warmup_batches", 5, "Batches discarded before each timed round.")
flags.DEFINE_integer("batches", 20, "Timed batches per round.")
flags.DEFINE_integer("rounds", 7, "Alternating measurement rounds.")
flags.DEFINE_integer("workers", os.cpu_count() or 1, "Processes that render the images.")
flags.DEFINE_list(
    "modes", ["unit", "caffe"], "Normalisations of the host-augmented reference pipelines."
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


def measure(ds: tf.data.Dataset, *, warmup: int, batches: int) -> tuple[float, float]:
    """(images per second, CPU microseconds per image) of `batches` batches after a warm-up."""
    iterator = iter(ds)
    for _ in range(warmup):
        next(iterator)
    count = 0
    with _common.Clock() as clock:
        for _ in range(batches):
            count += int(next(iterator)["labels"].shape[0])
    del iterator  # stops its background threads before the next pipeline runs
    return count / clock.wall, clock.cpu / count * 1e6


def summarize(results: dict[str, list[tuple[float, float]]]) -> dict:
    """Median / best images/s, CPU us per image and the ratios to the floor of each mode."""
    floor = results["floor"]
    out = {}
    for name, rounds in results.items():
        rates = [r for r, _ in rounds]
        cpus = [c for _, c in rounds]
        entry = {
            "images_per_second_median": round(statistics.median(rates), 1),
            "images_per_second_best": round(max(rates), 1),
            "cpu_us_per_image_median": round(statistics.median(cpus), 1),
        }
        if name != "floor":
            paired = [r / f for (r, _), (f, _) in zip(rounds, floor, strict=True)]
            entry["ratio_median"] = round(statistics.median(paired), 3)
            entry["ratio_best"] = round(max(rates) / max(r for r, _ in floor), 3)
            entry["ratio_cpu"] = round(
                statistics.median(c for _, c in floor) / statistics.median(cpus), 3
            )
        out[name] = entry
    return out


def ensure_dataset(dataset_dir: str) -> None:
    """Writes the synthetic fundus training shards unless `dataset_dir` holds a dataset."""
    if os.path.exists(os.path.join(dataset_dir, info_lib.DATASET_INFO_FILE)):
        return
    with _common.Clock() as clock:
        _common.write_fundus(
            dataset_dir,
            num_examples=FLAGS.num_examples,
            image_size=FLAGS.image_size,
            valid_fraction=0.0,
            test_fraction=0.0,
            num_shards=FLAGS.num_shards,
            workers=FLAGS.workers,
        )
    print(f"wrote {FLAGS.num_examples} images in {clock.wall:.1f}s")


def pipelines(dataset_dir: str) -> dict[str, tf.data.Dataset]:
    """The floor, ours and one host-augmented pipeline per --modes, on the training shards."""
    info = info_lib.load_dataset_info(dataset_dir)
    files = info_lib.split_files(dataset_dir, "train")
    out = {"floor": floor_dataset(files, batch_size=FLAGS.batch_size, num_tasks=len(info["tasks"]))}
    common = dict(
        dataset_dir=dataset_dir,
        split="train",
        batch_size=FLAGS.batch_size,
        image_size=FLAGS.image_size,
        channels=3,
        training=True,
        augment="default",
    )
    out["ours"] = pipeline.build_dataset(defer_augment=True, **common)
    for mode in FLAGS.modes:
        out[f"host_{mode}"] = pipeline.build_dataset(
            preprocess_mode=mode, defer_augment=False, **common
        )
    return out


def main() -> None:
    for mode in FLAGS.modes:
        preprocess.check_mode(mode)
    with _common.scratch(FLAGS.dataset_dir, prefix="bench_pipeline_") as dataset_dir:
        ensure_dataset(dataset_dir)
        datasets = pipelines(dataset_dir)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in datasets}
        for i in range(FLAGS.rounds):
            line = []
            for name, ds in datasets.items():
                rate, cpu = measure(ds, warmup=FLAGS.warmup_batches, batches=FLAGS.batches)
                results[name].append((rate, cpu))
                line.append(f"{name} {rate:.0f} img/s ({cpu:.0f} us CPU/img)")
            print(f"round {i + 1}: " + ", ".join(line), flush=True)
    figures = summarize(results)
    _common.print_result(
        {
            "benchmark": "P1 input pipeline",
            "ratio": figures["ours"]["ratio_median"],
            "ratio_cpu": figures["ours"]["ratio_cpu"],
            "image_size": FLAGS.image_size,
            "batch_size": FLAGS.batch_size,
            "num_examples": FLAGS.num_examples,
            "rounds": FLAGS.rounds,
            "cpu_count": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "pipelines": figures,
        }
    )


if __name__ == "__main__":
    _common.run(main)
