"""`transfusion-demo`: the whole study on synthetic data in minutes, no downloads (SPEC X1).

Example:
  transfusion-demo --quick --output_dir=demo_output
  tensorboard --logdir demo_output
"""

from __future__ import annotations

from absl import app, flags

from transfusion_tf import demo

FLAGS = flags.FLAGS

flags.DEFINE_string(
    "output_dir", "demo_output", "Datasets, runs, analyses, report.md and TensorBoard logs."
)
flags.DEFINE_string(
    "export_dir", "savedmodels", "SavedModel base directory; the best run goes to <dir>/demo/1."
)
flags.DEFINE_bool("quick", False, "Small sizes (about 2 minutes on 2 CPU cores; used by tests).")
flags.DEFINE_list("seeds", None, "Seeds of the target runs (default: 0,1 quick; 0,1,2 otherwise).")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        seeds = [int(s) for s in FLAGS.seeds] if FLAGS.seeds is not None else None
    except ValueError:
        raise app.UsageError(f"--seeds must be integers; got {FLAGS.seeds}") from None
    try:
        summary = demo.run_demo(
            output_dir=FLAGS.output_dir,
            export_dir=FLAGS.export_dir,
            quick=FLAGS.quick,
            seeds=seeds,
        )
    except (ValueError, FileNotFoundError) as err:
        raise app.UsageError(str(err)) from None
    print(f"\n{demo.STAND_IN_NOTE}\n")
    print("What this run found:")
    for line in summary["headline"]:
        print(f"- {line}")
    print(f"\nreport:       {summary['report']}")
    print(f"SavedModel:   {summary['saved_model']}")
    print(f"TensorBoard:  tensorboard --logdir {summary['tensorboard_root']}")
    print(f"total time:   {summary['total_seconds']:.0f} s")


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
