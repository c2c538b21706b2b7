"""`transfusion-prepare`: converts a downloaded dataset layout to TFRecords (SPEC D2, D4).

Examples:
  transfusion-prepare --format=chexpert --input=data/CheXpert-v1.0-small \
      --output_dir=datasets/chexpert --image_size=224 --uncertain_policy=ones
  transfusion-prepare --format=eyepacs --input=data/eyepacs --output_dir=datasets/retina \
      --image_size=587
  transfusion-prepare --format=csv --input=data/manifest.csv --output_dir=datasets/mine \
      --path_column=file --label_columns=nodule,mass --patient_column=subject
  transfusion-prepare --format=synthetic --synthetic_kind=fundus --num_examples=2000 \
      --output_dir=datasets/synthetic_fundus
  transfusion-prepare --verify=datasets/chexpert   # re-read a dataset: counts, CRC, images

Ends with a one-screen summary (examples per split, positives per task, skipped inputs and
why); exits non-zero with a one-line message naming the file for bad input, and for any
skipped input under --strict. The dataset is written into a staging folder and published when
complete: an old dataset in --output_dir stays loadable until then (also with --overwrite),
and a conversion stopped by Ctrl-C or SIGTERM ends its workers and leaves the folder as it was.
"""

from __future__ import annotations

import signal

from absl import app, flags

from transfusion_tf.cli import common
from transfusion_tf.data import atomic
from transfusion_tf.data.converters import base, registry

FLAGS = flags.FLAGS

flags.DEFINE_enum("format", None, registry.CONVERTERS.names(), "Layout of the --input data.")
flags.DEFINE_string(
    "input",
    None,
    "The downloaded data: the dataset folder (chexpert: the CheXpert-v1.0[-small] folder with "
    "train.csv; eyepacs: the folder with trainLabels.csv; aptos: the folder with train.csv; "
    "folder: the root of the class folders), the .npz file (medmnist) or the manifest .csv "
    "(csv). Not used by --format=synthetic.",
)
flags.DEFINE_string("output_dir", None, "Dataset directory to write (shards + dataset_info.json).")
flags.DEFINE_integer(
    "image_size", None, "Resize every image to this square side (bilinear); default: keep."
)
flags.DEFINE_enum(
    "uncertain_policy",
    "ignore",
    list(base.UNCERTAIN_POLICIES),
    "Uncertain (-1) labels: ones, zeros, or ignore (masked out). The paper does not say which "
    "it used; ignore is our default.",
)
flags.DEFINE_enum(
    "blank_policy",
    "negative",
    list(base.BLANK_POLICIES),
    "Blank labels: negative (as the CheXpert authors do) or ignore (masked out).",
)
flags.DEFINE_list("tasks", None, "Tasks to keep, in label order (default: the format's own).")
flags.DEFINE_boolean("frontal_only", False, "chexpert: keep frontal views only.")
flags.DEFINE_float(
    "valid_fraction", 0.1, "Share of patients drawn for valid when the source has no valid split."
)
flags.DEFINE_float(
    "test_fraction", 0.1, "Share of patients drawn for test when the source has no test split."
)
flags.DEFINE_integer("seed", 0, "Seed of the patient-level split and the shard order.")
flags.DEFINE_integer(
    "num_shards", None, "Shards per split (default: about one per 1,000 examples)."
)
flags.DEFINE_integer("workers", None, "Worker processes (default: every available core).")
flags.DEFINE_enum(
    "backend",
    base.ConvertOptions.backend,
    list(base.BACKENDS),
    "Where images are encoded and shards written: local (this machine's cores) or ray (one "
    "Ray task per chunk of images and per shard; pip install 'transfusion_tf[ray]'). Both "
    "write the same dataset.",
)
flags.DEFINE_string(
    "ray_address",
    None,
    "ray: the cluster (`auto`, or the head's host:port); default $RAY_ADDRESS, else a private "
    "Ray instance on this machine. On a cluster --input and --output_dir must be readable by "
    "every node: a shared filesystem or a URL (gs://...).",
)
flags.DEFINE_boolean("strict", False, "Fail (non-zero exit, no dataset) if any input is skipped.")
flags.DEFINE_boolean("overwrite", False, "Replace the shards of an earlier conversion.")
flags.DEFINE_enum(
    "synthetic_kind", "fundus", ["fundus", "cxr", "natural"], "synthetic: which generator."
)
flags.DEFINE_integer("num_examples", 1000, "synthetic: number of images.")
flags.DEFINE_string("path_column", "path", "csv: column with image paths relative to the CSV.")
flags.DEFINE_list("label_columns", None, "csv: label columns (default: every other column).")
flags.DEFINE_string(
    "patient_column", None, "csv: patient id column (default: patient_id when present)."
)
flags.DEFINE_string(
    "verify",
    None,
    "Instead of converting: re-read the prepared dataset in this folder and report, per shard, "
    "its records, CRC failures and undecodable images, and per split the examples read against "
    "dataset_info.json (exit status 1 when anything is wrong).",
)


def _options() -> base.ConvertOptions:
    """The flags as ConvertOptions; ValueError names the bad flag."""
    return base.ConvertOptions(
        image_size=FLAGS.image_size,
        uncertain_policy=FLAGS.uncertain_policy,
        blank_policy=FLAGS.blank_policy,
        tasks=tuple(FLAGS.tasks) if FLAGS.tasks is not None else None,
        frontal_only=FLAGS.frontal_only,
        valid_fraction=FLAGS.valid_fraction,
        test_fraction=FLAGS.test_fraction,
        seed=FLAGS.seed,
        num_shards=FLAGS.num_shards,
        workers=FLAGS.workers,
        strict=FLAGS.strict,
        overwrite=FLAGS.overwrite,
        synthetic_kind=FLAGS.synthetic_kind,
        num_examples=FLAGS.num_examples,
        path_column=FLAGS.path_column,
        label_columns=tuple(FLAGS.label_columns) if FLAGS.label_columns is not None else None,
        patient_column=FLAGS.patient_column,
        backend=FLAGS.backend,
        ray_address=FLAGS.ray_address,
    )


def _verify(dataset_dir: str) -> None:
    """`--verify`: re-reads a dataset, prints the report, exits 1 when it has problems."""
    from transfusion_tf.data import verify

    try:
        report = verify.verify_dataset(dataset_dir)
    except (ValueError, FileNotFoundError) as err:
        common.fail(str(err))
    print(verify.format_report(report))
    if not report.ok:
        common.fail(f"{dataset_dir}: {len(report.problems)} problem(s) found (listed above)")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.verify:
        _verify(FLAGS.verify)
        return
    missing = [f"--{name}" for name in ("format", "output_dir") if not getattr(FLAGS, name)]
    if missing:
        raise app.UsageError(f"{' and '.join(missing)} required (or --verify=DATASET_DIR)")
    with common.usage_errors():
        options = _options()
        if FLAGS.format != "synthetic" and not FLAGS.input:
            raise ValueError(f"--input is required for --format={FLAGS.format}")
    try:
        info = registry.prepare_dataset(
            source_format=FLAGS.format,
            input_path=FLAGS.input or "",
            output_dir=FLAGS.output_dir,
            options=options,
        )
    except atomic.DatasetExistsError as err:
        common.fail(f"{err}; rerun with --overwrite to replace it")
    except NotADirectoryError as err:
        common.fail(f"--output_dir: {err}")
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        common.fail(str(err))
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        common.fail(
            f"stopped by {signal.Signals(signum).name} before the new dataset was complete; "
            f"{FLAGS.output_dir} is as it was (workers and temporary files removed)",
            exit_code=128 + int(signum),
        )
    print(f"dataset written to {FLAGS.output_dir}")
    print(registry.format_summary(info))


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
