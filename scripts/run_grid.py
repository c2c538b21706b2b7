#!/usr/bin/env python3
"""Runs a grid of paper experiments: every flagfile × every seed through `transfusion-train`.

Each run's workdir is `<runs_dir>/<flagfile stem>/seed<k>`; finished runs (with results.json)
are skipped, unfinished ones are re-run and resume from their last checkpoint. Source
pretraining flagfiles (`imagenet_*.flags`, whose workdirs the CBR transfer experiments load)
run first and with the first seed only. At the end `transfusion-report` summarises the grid.
Run it from the repository root: nested `--flagfile=flags/base/...` paths are relative to it.

  python scripts/run_grid.py --flagfiles='flags/retina_*.flags' --seeds=0,1,2 --dry_run
  python scripts/run_grid.py --flagfiles='flags/retina_*.flags' -- --dataset_dir=/data/retina

Arguments after `--` are appended to every training command (a later flag wins).
"""

from __future__ import annotations

import glob
import os
import shlex
import subprocess
import sys
import time

from absl import app, flags, logging

FLAGS = flags.FLAGS

flags.DEFINE_list("flagfiles", None, "Comma-separated glob patterns of experiment flagfiles.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to run every experiment with.")
flags.DEFINE_string("runs_dir", "runs", "Root of the workdirs: <runs_dir>/<stem>/seed<k>.")
flags.DEFINE_string(
    "report_dir", None, "Where transfusion-report writes (default <runs_dir>/report)."
)
flags.DEFINE_string("train_command", "transfusion-train", "The training command to run.")
flags.DEFINE_string("report_command", "transfusion-report", "The report command to run.")
flags.DEFINE_bool("dry_run", False, "Print the commands instead of running them.")
flags.DEFINE_bool("skip_finished", True, "Skip runs whose workdir already has results.json.")
flags.mark_flag_as_required("flagfiles")

SOURCE_PREFIX = "imagenet_"


def expand(patterns: list[str]) -> list[str]:
    """Flagfiles matched by the patterns, source pretraining first, otherwise sorted."""
    files: list[str] = []
    for pattern in patterns:
        matches = sorted(p for p in glob.glob(pattern) if p.endswith(".flags"))
        if not matches:
            raise app.UsageError(f"--flagfiles pattern {pattern!r} matches no .flags file")
        files.extend(m for m in matches if m not in files)
    return sorted(files, key=lambda p: (not os.path.basename(p).startswith(SOURCE_PREFIX), p))


def grid_commands(
    flagfiles: list[str], *, seeds: list[int], runs_dir: str, train_command: str, extra: list[str]
) -> list[tuple[str, list[str]]]:
    """(workdir, argv) for every flagfile × seed (source pretraining: first seed only)."""
    out = []
    for path in flagfiles:
        stem = os.path.basename(path)[: -len(".flags")]
        run_seeds = seeds[:1] if stem.startswith(SOURCE_PREFIX) else seeds
        for seed in run_seeds:
            workdir = os.path.join(runs_dir, stem, f"seed{seed}")
            argv = shlex.split(train_command) + [
                f"--flagfile={path}",
                f"--seed={seed}",
                f"--workdir={workdir}",
                *extra,
            ]
            out.append((workdir, argv))
    return out


def main(argv: list[str]) -> None:
    extra = argv[1:]
    if not os.path.isdir(os.path.join("flags", "base")):
        raise app.UsageError(
            "run from the repository root: nested --flagfile=flags/base/... paths are relative"
        )
    try:
        seeds = [int(s) for s in FLAGS.seeds]
    except ValueError as e:
        raise app.UsageError(f"--seeds must be integers, got {FLAGS.seeds}") from e
    if not seeds:
        raise app.UsageError("--seeds is empty")
    commands = grid_commands(
        expand(FLAGS.flagfiles),
        seeds=seeds,
        runs_dir=FLAGS.runs_dir,
        train_command=FLAGS.train_command,
        extra=extra,
    )
    report_dir = FLAGS.report_dir or os.path.join(FLAGS.runs_dir, "report")
    report = shlex.split(FLAGS.report_command) + [
        f"--workdirs={os.path.join(FLAGS.runs_dir, '*', 'seed*')}",
        f"--output_dir={report_dir}",
    ]
    if FLAGS.dry_run:
        for _, cmd in commands:
            print(shlex.join(cmd))
        print(shlex.join(report))
        return
    failed = []
    for i, (workdir, cmd) in enumerate(commands, 1):
        if FLAGS.skip_finished and os.path.exists(os.path.join(workdir, "results.json")):
            logging.info("[%d/%d] %s is finished, skipping", i, len(commands), workdir)
            continue
        logging.info("[%d/%d] %s", i, len(commands), shlex.join(cmd))
        start = time.time()
        rc = subprocess.run(cmd, check=False).returncode
        logging.info("[%d/%d] exit %d after %.0f s", i, len(commands), rc, time.time() - start)
        if rc != 0:
            failed.append(workdir)
    rc = subprocess.run(report, check=False).returncode
    if failed or rc != 0:
        print(f"{len(failed)} of {len(commands)} runs failed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
