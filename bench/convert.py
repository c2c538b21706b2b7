"""P4 benchmark: `transfusion-prepare` throughput per core vs a bare read-decode-encode loop.

Writes an EyePACS-layout folder once (a few distinct synthetic fundus JPEGs, copied under
distinct patient names up to --num_images files), then, on those same files:
  (a) the baseline: a bare loop per core (--workers processes, each on an equal share of the
      files, its start-up not timed) that reads each file, decodes it (Pillow), resizes it to
      --image_size and encodes it as JPEG, nothing else;
  (b) ours: `prepare_dataset(format="eyepacs", image_size=...)` on --workers processes, which
      adds the CSV and labels, the patient-level split, full decode checks, the transfer
      between processes, TFRecord writing, and the read-back verification of every shard.
Per core throughput is images per CPU-second (ours: parent + workers, start-up included), which
other load on the machine distorts less than wall time; wall-clock figures and the cores ours
kept busy are printed too. The baseline runs before and after ours and its mean counts. The
last line printed is one JSON object; ratio = ours / baseline per core (SPEC P4: >= 0.8).

    python bench/convert.py --num_images=600 --source_size=1024 --image_size=512
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import shutil

import _common
import numpy as np
from absl import flags
from PIL import Image

from transfusion_tf.data import encode, layouts
from transfusion_tf.data.converters import base, imageio, registry

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_images", 600, "Files in the raw folder.")
flags.DEFINE_integer("distinct", 8, "Distinct synthetic images among them.")
flags.DEFINE_integer("source_size", 1024, "Side of the raw JPEGs.")
flags.DEFINE_integer("image_size", 512, "Side the conversion resizes to.")
flags.DEFINE_integer("workers", None, "Conversion processes (default: every available core).")
flags.DEFINE_string("work_dir", None, "Folder for the raw files and the dataset (default: temp).")


def make_raw(root: str, *, num_images: int, distinct: int, source_size: int) -> list[str]:
    """An EyePACS folder of `num_images` JPEGs built from `distinct` synthetic ones.

    The synthetic images are drawn at 512 px (drawing is slow) and stored at `source_size`
    (real EyePACS photographs are 2-5 megapixels).
    """
    layouts.write_layout(
        layout="eyepacs", output_dir=root, num_examples=distinct, image_size=min(512, source_size)
    )
    with open(os.path.join(root, "trainLabels.csv"), newline="") as f:
        seeds = list(csv.DictReader(f))
    for seed in seeds:
        path = os.path.join(root, "train", f"{seed['image']}.jpeg")
        with Image.open(path) as image:
            large = image.resize((source_size, source_size), Image.BILINEAR)
        large.save(path, quality=imageio.JPEG_QUALITY)
    rows = []
    for i in range(distinct, num_images):
        seed = seeds[i % distinct]
        name = f"{1000 + i // 2}_{('left', 'right')[i % 2]}"
        shutil.copyfile(
            os.path.join(root, "train", f"{seed['image']}.jpeg"),
            os.path.join(root, "train", f"{name}.jpeg"),
        )
        rows.append([name, seed["level"]])
    with open(os.path.join(root, "trainLabels.csv"), "a", newline="") as f:
        csv.writer(f).writerows(rows)
    return sorted(os.path.join(root, "train", n) for n in os.listdir(os.path.join(root, "train")))


def _bare_loop(job: tuple[list[str], int]) -> tuple[float, float]:
    """Read, decode, resize, encode each file; returns (wall s, CPU s) of the loop alone."""
    files, image_size = job
    with _common.Clock() as clock:
        for path in files:
            with open(path, "rb") as f:
                data = f.read()
            image = Image.open(io.BytesIO(data))
            image.load()
            small = image.resize((image_size, image_size), Image.BILINEAR)
            encode.encode_jpeg(np.asarray(small), quality=imageio.JPEG_QUALITY)
    return clock.wall, clock.cpu


def baseline(files: list[str], *, image_size: int, workers: int) -> tuple[float, float]:
    """The bare loop, one process per core on an equal share of the files, start-up excluded.

    Returns (wall s of the slowest process, CPU s summed over processes).
    """
    shares = [(files[i::workers], image_size) for i in range(workers)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        results = pool.map(_bare_loop, shares)
    return max(r[0] for r in results), sum(r[1] for r in results)


def ours(raw: str, out: str, *, image_size: int, workers: int | None) -> tuple[float, float, float]:
    """The full conversion; returns (wall s, CPU s of the parent, CPU s of the workers)."""
    shutil.rmtree(out, ignore_errors=True)
    options = base.ConvertOptions(
        image_size=image_size, workers=workers, progress=False, valid_fraction=0.1
    )
    with _common.Clock() as clock:
        registry.prepare_dataset(
            source_format="eyepacs", input_path=raw, output_dir=out, options=options
        )
    return clock.wall, clock.cpu, clock.children_cpu


def main() -> None:
    with _common.scratch(FLAGS.work_dir, prefix="bench_convert_") as work:
        raw, out = os.path.join(work, "raw"), os.path.join(work, "dataset")
        shutil.rmtree(raw, ignore_errors=True)
        files = make_raw(
            raw,
            num_images=FLAGS.num_images,
            distinct=FLAGS.distinct,
            source_size=FLAGS.source_size,
        )
        import tensorflow  # noqa: F401  (loaded before timing: its import is a one-off cost)

        workers = FLAGS.workers or base.ConvertOptions().resolved_workers()
        base_a = baseline(files, image_size=FLAGS.image_size, workers=workers)
        ours_wall, ours_parent, ours_workers = ours(
            raw, out, image_size=FLAGS.image_size, workers=workers
        )
        base_b = baseline(files, image_size=FLAGS.image_size, workers=workers)
    ours_cpu = ours_parent + ours_workers
    n = len(files)
    base_cpu = (base_a[1] + base_b[1]) / 2
    base_wall = (base_a[0] + base_b[0]) / 2
    _common.print_result(
        {
            "images": n,
            "source_size": FLAGS.source_size,
            "image_size": FLAGS.image_size,
            "workers": workers,
            "baseline_images_per_cpu_second": round(n / base_cpu, 1),
            "ours_images_per_cpu_second": round(n / ours_cpu, 1),
            "baseline_images_per_second": round(n / base_wall, 1),
            "ours_images_per_second": round(n / ours_wall, 1),
            "ours_cores_busy": round(ours_cpu / ours_wall, 2),
            "baseline_cpu_seconds": round(base_cpu, 2),
            "ours_parent_cpu_seconds": round(ours_parent, 2),
            "ours_worker_cpu_seconds": round(ours_workers, 2),
            "ratio": round(base_cpu / ours_cpu, 3),
        }
    )


if __name__ == "__main__":
    _common.run(main)
