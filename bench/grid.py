"""X4 benchmark: wall time of a grid of N tiny training runs on each backend, side by side.

Writes a tiny synthetic fundus dataset and one tiny experiment flagfile (cbr_tiny, 32 px),
then runs the same grid of --num_runs seeds through `transfusion-grid`'s library three times,
each into fresh workdirs:
  (a) the baseline: `--backend=local --max_parallel=1` (one run after another, as before);
  (b) `--backend=local --max_parallel=2`;
  (c) ours: `--backend=ray`, a private local Ray instance of --ray_cpus CPUs (its start-up
      timed too), each run reserving --cpus_per_run CPUs and --gpus_per_run GPUs.
Every run is a real `transfusion-train` process (TensorFlow import, dataset, model, steps,
evaluation, results.json). Throughput is runs per wall second; the last line printed is one
JSON object with ratio = ray / baseline and ratio_local_parallel = (b) / baseline,
ratio_ray_vs_local_parallel = ray / (b).

    python bench/grid.py --num_runs=4
"""

from __future__ import annotations

import os
import sys

import _common
from absl import flags

from transfusion_tf.grid import local, ray_backend, runner, spec

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_runs", 4, "Runs in the grid (seeds of one experiment).")
flags.DEFINE_integer("train_steps", 20, "Training steps of each run.")
flags.DEFINE_integer("ray_cpus", 2, "CPUs of the private Ray instance.")
flags.DEFINE_float("cpus_per_run", 1, "ray: CPUs each run reserves.")
flags.DEFINE_float("gpus_per_run", 0, "ray: GPUs each run reserves.")
flags.DEFINE_string("work_dir", None, "Keep the dataset and workdirs here (default: a temp dir).")

TINY_FLAGS = [
    "--model=cbr_tiny",
    "--widths=8,16",
    "--image_size=32",
    "--batch_size=8",
    "--eval_every_steps=10",
    "--steps_per_loop=5",
    "--checkpoint_every_steps=10",
    "--learning_rate=0.05",
]


def write_tree(root: str) -> None:
    """The dataset and flags/base/tiny.flags + flags/retina_tiny_random.flags under root."""
    dataset = _common.write_fundus(
        os.path.join(root, "dataset"),
        num_examples=64,
        image_size=32,
        seed=0,
        valid_fraction=0.25,
        test_fraction=0.25,
        overwrite=True,
    )
    os.makedirs(os.path.join(root, "flags", "base"), exist_ok=True)
    with open(os.path.join(root, "flags", "base", "tiny.flags"), "w") as f:
        lines = [f"--dataset_dir={dataset}", f"--train_steps={FLAGS.train_steps}", *TINY_FLAGS]
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(root, "flags", "retina_tiny_random.flags"), "w") as f:
        f.write("--flagfile=flags/base/tiny.flags\n--init=random\n")


def timed_grid(root: str, runs_dir: str, backend, resources: spec.Resources) -> float:
    """Wall seconds of the grid's runs into `root/runs_dir` on `backend`; exits if one fails."""
    cwd = os.getcwd()
    os.chdir(root)
    try:
        grid = spec.build_grid(
            ["flags/*.flags"],
            seeds=list(range(FLAGS.num_runs)),
            runs_dir=runs_dir,
            resources=resources,
        )
    finally:
        os.chdir(cwd)
    with _common.Clock() as clock:
        result = runner.run_grid(grid, backend=backend, cwd=root, report=False, show_progress=False)
    if not result.ok:
        sys.exit(f"{runs_dir}: runs failed: {[o.reason for o in result.failed]}")
    return clock.wall


def main() -> None:
    n = FLAGS.num_runs
    with _common.scratch(FLAGS.work_dir, prefix="bench_grid_") as work:
        write_tree(work)
        no_resources = spec.Resources()
        local_1 = timed_grid(work, "runs_local1", local.LocalBackend(max_parallel=1), no_resources)
        local_2 = timed_grid(work, "runs_local2", local.LocalBackend(max_parallel=2), no_resources)
        ray = ray_backend.RayBackend(init_kwargs={"num_cpus": FLAGS.ray_cpus})
        resources = spec.Resources(gpus=FLAGS.gpus_per_run, cpus=FLAGS.cpus_per_run)
        ray_seconds = timed_grid(work, "runs_ray", ray, resources)
    _common.print_result(
        {
            "runs": n,
            "train_steps": FLAGS.train_steps,
            "cpus": os.cpu_count(),
            "baseline_local_max_parallel_1_seconds": round(local_1, 1),
            "local_max_parallel_2_seconds": round(local_2, 1),
            "ray_seconds_with_startup": round(ray_seconds, 1),
            "baseline_runs_per_minute": round(60 * n / local_1, 2),
            "local_max_parallel_2_runs_per_minute": round(60 * n / local_2, 2),
            "ray_runs_per_minute": round(60 * n / ray_seconds, 2),
            "ratio_local_parallel": round(local_1 / local_2, 3),
            "ratio_ray_vs_local_parallel": round(local_2 / ray_seconds, 3),
            "ratio": round(local_1 / ray_seconds, 3),
        }
    )


if __name__ == "__main__":
    _common.run(main)
