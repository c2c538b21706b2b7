"""`transfusion-demo`: the whole study on synthetic data in minutes, no downloads (SPEC X1).

The console shows one line per stage, a progress bar over the runs, and at the end the
claims table and where the report, SavedModel and TensorBoard logs are; TensorFlow's C++ and
Python chatter stays out of it (`--verbose` shows every library log line).

Example:
  transfusion-demo --quick --output_dir=demo_output
  transfusion-demo --full --output_dir=demo_output   # + model size and small data
  tensorboard --logdir demo_output/runs
"""

from __future__ import annotations

import contextlib
import importlib
import logging as py_logging
import os
import sys

from absl import app, flags, logging

FLAGS = flags.FLAGS

flags.DEFINE_string(
    "output_dir", "demo_output", "Datasets, runs, analyses, report.md and TensorBoard logs."
)
flags.DEFINE_string(
    "export_dir", "savedmodels", "SavedModel base directory; the best run goes to <dir>/demo/1."
)
flags.DEFINE_bool("quick", False, "Small sizes (about 3 minutes on 2 CPU cores; used by tests).")
flags.DEFINE_bool(
    "full",
    False,
    "Default sizes plus a 2x wider model (Fig. 3: change by model size) and a small-data "
    "regime (transfer's gain with few training images); about 45 minutes on 2 CPU cores.",
)
flags.DEFINE_list("seeds", None, "Seeds of the target runs (default: 0,1 quick; 0-4 otherwise).")
flags.DEFINE_bool("verbose", False, "Show every library log line, not only the demo's stages.")


class _DemoLinesOnly(py_logging.Filter):
    """Lets through the demo's own INFO lines and everyone's warnings and errors."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        return record.levelno >= py_logging.WARNING or record.module == "demo"


def quiet_console() -> None:
    """One line per stage: the demo's INFO lines, warnings and errors; TF's Python logger at
    ERROR (retracing and deprecation warnings are not the user's to act on)."""
    import tensorflow as tf

    tf.get_logger().setLevel(py_logging.ERROR)
    handler = logging.get_absl_handler()
    handler.addFilter(_DemoLinesOnly())
    handler.setFormatter(py_logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))


@contextlib.contextmanager
def _native_stderr_silenced(enabled: bool):
    """Silences file descriptor 2 (native code's stderr) while TensorFlow loads: its C++
    libraries print INFO lines before any log level applies. Python's own errors still show:
    the descriptor is restored before an exception leaves the block."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    fd = sys.stderr.fileno()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    try:
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        seeds = [int(s) for s in FLAGS.seeds] if FLAGS.seeds is not None else None
    except ValueError:
        raise app.UsageError(f"--seeds must be integers; got {FLAGS.seeds}") from None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _native_stderr_silenced(not FLAGS.verbose):
        demo = importlib.import_module("transfusion_tf.demo")
    if not FLAGS.verbose:
        quiet_console()
    logging.set_verbosity(logging.INFO)
    try:
        summary = demo.run_demo(
            output_dir=FLAGS.output_dir,
            export_dir=FLAGS.export_dir,
            quick=FLAGS.quick,
            full=FLAGS.full,
            seeds=seeds,
        )
    except (ValueError, FileNotFoundError) as err:
        raise app.UsageError(str(err)) from None
    print(f"\n{demo.STAND_IN_NOTE}\n")
    print("Claims of the paper, tested here:\n")
    print(summary["claims_markdown"])
    print(f"\nreport:       {summary['report']}")
    print(f"SavedModel:   {summary['saved_model']}")
    print(f"TensorBoard:  tensorboard --logdir {summary['tensorboard_root']}")
    print(f"total time:   {summary['total_seconds']:.0f} s")


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
