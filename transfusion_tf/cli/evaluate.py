"""`transfusion-evaluate`: AUROC/AUPRC with bootstrap CIs and ROC curves (SPEC T5).

Example:
  transfusion-evaluate --workdir=runs/r0 --dataset_dir=data/fundus --split=test
  transfusion-evaluate --saved_model=savedmodels/demo/1 --dataset_dir=data/fundus \
      --split=test --output_dir=eval/demo
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from transfusion_tf import workdir as workdir_lib
from transfusion_tf.cli import common

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "A transfusion-train workdir to evaluate.")
flags.DEFINE_string("saved_model", None, "Or: a transfusion-export SavedModel directory.")
flags.DEFINE_enum(
    "weights", "final", list(workdir_lib.WEIGHT_CHOICES), "Weights of the workdir to use."
)
flags.DEFINE_string("dataset_dir", None, "Prepared dataset directory.")
flags.DEFINE_string("split", "test", "Split to evaluate.")
flags.DEFINE_string(
    "output_dir",
    None,
    "Where JSON and PNG go (default: <workdir>/evaluation; required with --saved_model).",
)
flags.DEFINE_integer("batch_size", 32, "Evaluation batch size.")
flags.DEFINE_integer("bootstrap_samples", 1000, "Bootstrap resamples for the 95% CIs.")
flags.DEFINE_integer("seed", 0, "Bootstrap seed.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from transfusion_tf.training import evaluation

    with common.usage_errors():
        if not FLAGS.dataset_dir:
            raise ValueError("--dataset_dir is required")
        output_dir = FLAGS.output_dir
        if output_dir is None:
            if not FLAGS.workdir:
                raise ValueError("--output_dir is required with --saved_model")
            output_dir = os.path.join(FLAGS.workdir, workdir_lib.EVALUATION_DIR)
        report = evaluation.evaluate(
            dataset_dir=FLAGS.dataset_dir,
            split=FLAGS.split,
            output_dir=output_dir,
            workdir=FLAGS.workdir,
            saved_model=FLAGS.saved_model,
            weights=FLAGS.weights,
            batch_size=FLAGS.batch_size,
            bootstrap_samples=FLAGS.bootstrap_samples,
            seed=FLAGS.seed,
        )
    summary = {k: report[k] for k in ("auc", "auc_ci", "auc_mean", "auc_mean_ci", "num_examples")}
    print(json.dumps(summary, sort_keys=True))


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
