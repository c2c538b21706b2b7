"""The grid as data: experiment flagfile × seed → `Run` (workdir, argv, resources, sources).

Each run's workdir is `<runs_dir>/<flagfile stem>/seed<k>` and its argv is
`--flagfile=<file> --seed=<k> --workdir=<workdir>` followed by the grid's extra flags (a later
flag wins). Source pretraining flagfiles (`imagenet_*.flags`: the CBR models have no Keras
ImageNet weights) run with the first seed only. Flagfiles name a source run's workdir as
`--source_weights=runs/<stem>/seed<k>`; that path is read under the grid's `runs_dir`, and when
the source run is part of the grid, the run *depends* on it: backends start it only after the
source has finished. A run is finished when its workdir holds `results.json`, the trainer's
last write.

Paths are relative to the repository root, where nested `--flagfile=flags/base/...` resolve.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Sequence

from transfusion_tf import workdir as workdir_lib

SOURCE_PREFIX = "imagenet_"
# The runs directory the flagfiles' `--source_weights=runs/<stem>/seed<k>` paths are written for.
FLAGFILE_RUNS_DIR = "runs"
# The grid's own file in a workdir: the training command's stdout and stderr, every attempt.
LOG_FILE = "train.log"
TRAIN_COMMAND = "transfusion-train"
REPORT_COMMAND = "transfusion-report"


class GridError(ValueError):
    """A grid that cannot be built or run (the message names the pattern, flag or file)."""


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one run reserves: GPUs and CPU cores (fractions share a device)."""

    gpus: float = 0.0
    cpus: float = 1.0

    def __post_init__(self) -> None:
        if self.gpus < 0 or self.cpus < 0:
            raise GridError(f"resources must be >= 0, got gpus={self.gpus}, cpus={self.cpus}")
        if self.gpus > 1 and self.gpus != int(self.gpus):
            raise GridError(f"more than one GPU per run must be a whole number, got {self.gpus}")


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of the grid.

    `name` is `<stem>/seed<k>`; `argv` holds the training command's flags (not the command);
    `depends_on` names the grid's source runs whose workdir this run loads.
    """

    name: str
    flagfile: str
    seed: int
    workdir: str
    argv: tuple[str, ...]
    resources: Resources = Resources()
    depends_on: tuple[str, ...] = ()

    @property
    def is_source(self) -> bool:
        return os.path.basename(self.flagfile).startswith(SOURCE_PREFIX)

    @property
    def log_path(self) -> str:
        return os.path.join(self.workdir, LOG_FILE)


@dataclasses.dataclass(frozen=True)
class Grid:
    """Runs in dependency order (sources first), the commands and the report's flags."""

    runs: tuple[Run, ...]
    runs_dir: str
    train_command: tuple[str, ...] = (TRAIN_COMMAND,)
    report_command: tuple[str, ...] = (REPORT_COMMAND,)
    report_argv: tuple[str, ...] = ()

    def commands(self) -> list[list[str]]:
        """Every training command, then the report's, as the grid runs them."""
        out = [[*self.train_command, *run.argv] for run in self.runs]
        return [*out, [*self.report_command, *self.report_argv]]


def expand(patterns: Sequence[str]) -> list[str]:
    """Flagfiles matched by the glob patterns, source pretraining first, otherwise sorted."""
    files: list[str] = []
    for pattern in patterns:
        matches = sorted(p for p in glob.glob(pattern) if p.endswith(".flags"))
        if not matches:
            raise GridError(f"--flagfiles pattern {pattern!r} matches no .flags file")
        files.extend(m for m in matches if m not in files)
    return sorted(files, key=lambda p: (not os.path.basename(p).startswith(SOURCE_PREFIX), p))


def flag_value(flagfile: str, name: str, *, _seen: frozenset[str] = frozenset()) -> str | None:
    """The last `--<name>=` value a flagfile sets, following nested `--flagfile=` lines."""
    if flagfile in _seen:
        raise GridError(f"{flagfile}: --flagfile includes itself")
    try:
        with open(flagfile, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
    except OSError as err:
        raise GridError(f"{flagfile}: cannot read the flagfile ({err.strerror})") from None
    value = None
    for line in lines:
        if line.startswith("--flagfile="):
            nested = flag_value(line[len("--flagfile=") :], name, _seen=_seen | {flagfile})
            value = nested if nested is not None else value
        elif line.startswith(f"--{name}="):
            value = line[len(name) + 3 :]
    return value


def _last(argv: Sequence[str], name: str) -> str | None:
    values = [a[len(name) + 3 :] for a in argv if a.startswith(f"--{name}=")]
    return values[-1] if values else None


def _stem(path: str) -> str:
    return os.path.basename(path)[: -len(".flags")]


def build_grid(
    patterns: Sequence[str],
    *,
    seeds: Sequence[int],
    runs_dir: str = FLAGFILE_RUNS_DIR,
    extra: Sequence[str] = (),
    resources: Resources = Resources(),
    train_command: Sequence[str] = (TRAIN_COMMAND,),
    report_command: Sequence[str] = (REPORT_COMMAND,),
    report_dir: str | None = None,
) -> Grid:
    """The grid of every flagfile matched by `patterns` × `seeds` (sources: first seed only).

    Raises GridError for a pattern matching nothing, no seeds, or an unreadable flagfile.
    """
    if not seeds:
        raise GridError("--seeds is empty")
    runs: list[Run] = []
    for path in expand(patterns):
        stem = _stem(path)
        for seed in seeds[:1] if stem.startswith(SOURCE_PREFIX) else seeds:
            workdir = os.path.join(runs_dir, stem, f"seed{seed}")
            argv = [f"--flagfile={path}", f"--seed={seed}", f"--workdir={workdir}"]
            source = _last(extra, "source_weights") or flag_value(path, "source_weights")
            redirected = _source_workdir(source, runs_dir)
            if redirected is not None and redirected != source:
                argv.append(f"--source_weights={redirected}")
            argv.extend(extra)
            runs.append(
                Run(
                    name=f"{stem}/seed{seed}",
                    flagfile=path,
                    seed=seed,
                    workdir=workdir,
                    argv=tuple(argv),
                    resources=resources,
                    depends_on=(redirected,) if redirected is not None else (),
                )
            )
    by_workdir = {os.path.normpath(r.workdir): r.name for r in runs}
    runs = [
        dataclasses.replace(
            r,
            depends_on=tuple(
                by_workdir[os.path.normpath(d)]
                for d in r.depends_on
                if os.path.normpath(d) in by_workdir
            ),
        )
        for r in runs
    ]
    report_dir = report_dir or os.path.join(runs_dir, "report")
    return Grid(
        runs=tuple(_in_dependency_order(runs)),
        runs_dir=runs_dir,
        train_command=tuple(train_command),
        report_command=tuple(report_command),
        report_argv=(
            f"--workdirs={os.path.join(runs_dir, '*', 'seed*')}",
            f"--output_dir={report_dir}",
        ),
    )


def _source_workdir(source_weights: str | None, runs_dir: str) -> str | None:
    """`runs/<stem>/seed<k>` (a source run's workdir, as flagfiles write it) under runs_dir."""
    if not source_weights:
        return None
    parts = os.path.normpath(source_weights).split(os.sep)
    if len(parts) == 3 and parts[0] == FLAGFILE_RUNS_DIR and parts[2].startswith("seed"):
        return os.path.join(runs_dir, parts[1], parts[2])
    return None


def _in_dependency_order(runs: list[Run]) -> list[Run]:
    """The runs in the given order, except that every run comes after those it depends on."""
    by_name = {r.name: r for r in runs}
    out: list[Run] = []
    placed: set[str] = set()

    def place(run: Run, path: tuple[str, ...]) -> None:
        if run.name in placed:
            return
        if run.name in path:
            raise GridError(f"runs depend on each other in a cycle: {[*path, run.name]}")
        for name in run.depends_on:
            place(by_name[name], (*path, run.name))
        placed.add(run.name)
        out.append(run)

    for run in runs:
        place(run, ())
    return out


def is_finished(run: Run, *, cwd: str = ".") -> bool:
    """Whether the run's workdir holds results.json (the trainer writes it last; `workdir`
    names it without importing TensorFlow)."""
    return os.path.exists(os.path.join(cwd, run.workdir, workdir_lib.RESULTS_FILE))
