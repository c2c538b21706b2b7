"""`transfusion-grid`: runs a grid of paper experiments, every flagfile × seed (SPEC X2, X4).

Each run's workdir is `<runs_dir>/<flagfile stem>/seed<k>`, its output goes to `train.log`
there; finished runs (with results.json) are skipped, unfinished ones resume from their last
backup, and a failed run never stops the others. Source pretraining flagfiles
(`imagenet_*.flags`) run with the first seed only, before the runs that load them. At the end
`transfusion-report` summarises the grid. Run it from the repository root: nested
`--flagfile=flags/base/...` paths are relative to it.

  transfusion-grid --flagfiles='flags/retina_*.flags' --seeds=0,1,2 --dry_run
  transfusion-grid --flagfiles='flags/retina_*.flags' --max_parallel=8 --gpus_per_run=1 \
      -- --dataset_dir=/data/retina
  transfusion-grid --flagfiles='flags/retina_*.flags' --backend=ray --ray_address=auto \
      --gpus_per_run=1 -- --dataset_dir=/shared/data/retina

Arguments after `--` are appended to every training command (a later flag wins).
"""

from __future__ import annotations

import os
import shlex
import sys

from absl import app, flags

from transfusion_tf.grid import local, ray_backend, runner, spec

FLAGS = flags.FLAGS

flags.DEFINE_list("flagfiles", None, "Comma-separated glob patterns of experiment flagfiles.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to run every experiment with.")
flags.DEFINE_string(
    "runs_dir", spec.FLAGFILE_RUNS_DIR, "Root of the workdirs: <runs_dir>/<stem>/seed<k>."
)
flags.DEFINE_string(
    "report_dir", None, "Where transfusion-report writes (default <runs_dir>/report)."
)
flags.DEFINE_string(
    "train_command",
    spec.TRAIN_COMMAND,
    "The training command (transfusion-train runs as `python -m transfusion_tf.cli.train` "
    "with the grid's interpreter; on Ray, the worker's).",
)
flags.DEFINE_string("report_command", spec.REPORT_COMMAND, "The report command to run.")
flags.DEFINE_bool("dry_run", False, "Print the commands instead of running them.")
flags.DEFINE_bool("skip_finished", True, "Skip runs whose workdir already has results.json.")
flags.DEFINE_enum("backend", "local", ["local", "ray"], "Where runs run: this machine or Ray.")
flags.DEFINE_integer(
    "max_parallel", local.DEFAULT_MAX_PARALLEL, "local: runs at a time on this machine."
)
flags.DEFINE_float(
    "gpus_per_run",
    spec.Resources.gpus,
    "GPUs each run reserves (fractions share a GPU; ray: Ray's num_gpus). 0: no reservation, "
    "every run sees the machine's GPUs.",
)
flags.DEFINE_float(
    "cpus_per_run", spec.Resources.cpus, "ray: CPU cores each run reserves (Ray's num_cpus)."
)
flags.DEFINE_integer(
    "retries",
    runner.DEFAULT_RETRIES,
    "Times a failed run is started again (it resumes from its workdir); ray: also when its "
    "worker or node dies.",
)
flags.DEFINE_string(
    "ray_address",
    None,
    "ray: the cluster to run on: `auto` (this machine joined it with `ray start`) or the "
    "head's host:port; default $RAY_ADDRESS, else a private Ray instance on this machine.",
)
flags.mark_flag_as_required("flagfiles")


def _backend() -> runner.Backend:
    if FLAGS.backend == "ray":
        return ray_backend.RayBackend(address=FLAGS.ray_address, retries=FLAGS.retries)
    gpu_ids = local.visible_gpus() if FLAGS.gpus_per_run > 0 else []
    return local.LocalBackend(
        max_parallel=FLAGS.max_parallel, gpu_ids=gpu_ids, retries=FLAGS.retries
    )


def main(argv: list[str]) -> None:
    extra = argv[1:]
    if not os.path.isdir(os.path.join("flags", "base")):
        raise app.UsageError(
            "run from the repository root: nested --flagfile=flags/base/... paths are relative"
        )
    try:
        seeds = [int(s) for s in FLAGS.seeds]
    except ValueError:
        raise app.UsageError(f"--seeds must be integers, got {FLAGS.seeds}") from None
    try:
        grid = spec.build_grid(
            FLAGS.flagfiles,
            seeds=seeds,
            runs_dir=FLAGS.runs_dir,
            extra=extra,
            resources=spec.Resources(gpus=FLAGS.gpus_per_run, cpus=FLAGS.cpus_per_run),
            train_command=shlex.split(FLAGS.train_command),
            report_command=shlex.split(FLAGS.report_command),
            report_dir=FLAGS.report_dir,
        )
        if FLAGS.dry_run:
            for command in grid.commands():
                print(shlex.join(command))
            return
        result = runner.run_grid(grid, backend=_backend(), skip_finished=FLAGS.skip_finished)
    except spec.GridError as err:
        raise app.UsageError(str(err)) from None
    failed = result.failed
    if failed:
        print(
            f"{len(failed)} of {len(result.outcomes)} runs failed: "
            + ", ".join(f"{o.name} ({o.reason})" for o in failed),
            file=sys.stderr,
        )
    if result.report_exit_code not in (0, None):
        print(f"the report exited {result.report_exit_code}", file=sys.stderr)
    if not result.ok:
        sys.exit(1)


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
