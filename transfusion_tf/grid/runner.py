"""`run_grid`: skips finished runs, hands the others to a backend, then writes the report.

A backend is any object with `run(runs, *, command, cwd, progress) -> {name: Outcome}` that
starts each run only after the runs it depends on are done (a dependency that is not among
`runs` finished earlier), never lets one failed run stop the others, and reports every state
change to `progress`. A run whose source failed fails too, without starting.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from absl import logging
from tqdm import tqdm

from transfusion_tf.grid import execute, spec

DONE, FAILED, FINISHED = "done", "failed", "finished"
# Times a failed run is started again by either backend; it resumes from its workdir.
DEFAULT_RETRIES = 2


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a run ended in this grid: done, failed, or finished (skipped: done earlier)."""

    name: str
    status: str
    exit_code: int | None = None
    reason: str = ""
    seconds: float = 0.0
    attempts: int = 0


@dataclasses.dataclass(frozen=True)
class GridResult:
    """Every run's outcome (grid order) and the report command's exit code (None: not run)."""

    outcomes: tuple[Outcome, ...]
    report_exit_code: int | None

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == FAILED]

    @property
    def ok(self) -> bool:
        return not self.failed and self.report_exit_code in (0, None)


class Progress:
    """Counts runs as done / running / failed / queued; one live line, a log line per change."""

    def __init__(self, total: int, *, finished: int = 0, show: bool | None = None) -> None:
        self.total = total
        self.done, self.failed, self.running = finished, 0, set()
        self._bar = tqdm(
            total=total,
            initial=finished,
            unit="run",
            desc="grid",
            disable=None if show is None else not show,  # None: shown on a terminal
        )
        self._bar.set_postfix_str(self.line(), refresh=True)

    @property
    def queued(self) -> int:
        return self.total - self.done - self.failed - len(self.running)

    def line(self) -> str:
        return (
            f"{self.done} done, {len(self.running)} running, {self.failed} failed, "
            f"{self.queued} queued"
        )

    def _log(self, message: str, *args) -> None:
        self._bar.set_postfix_str(self.line())
        logging.info("[%s] " + message, self.line(), *args)

    def started(self, name: str, detail: str = "") -> None:
        if name not in self.running:
            self.running.add(name)
            self._log("started %s%s", name, f" ({detail})" if detail else "")

    def requeued(self, name: str, reason: str) -> None:
        self.running.discard(name)
        self._log("retrying %s: %s", name, reason)

    def finished(self, outcome: Outcome) -> None:
        self.running.discard(outcome.name)
        if outcome.status == DONE:
            self.done += 1
            self._bar.update(1)
            self._log("done %s in %.0f s", outcome.name, outcome.seconds)
        else:
            self.failed += 1
            self._bar.update(1)
            self._log("FAILED %s: %s", outcome.name, outcome.reason)

    def close(self) -> None:
        self._bar.close()


class Backend(Protocol):
    def run(
        self,
        runs: Sequence[spec.Run],
        *,
        command: Sequence[str],
        cwd: str,
        progress: Progress,
    ) -> Mapping[str, Outcome]: ...


def run_grid(
    grid: spec.Grid,
    *,
    backend: Backend,
    cwd: str = ".",
    skip_finished: bool = True,
    report: bool = True,
    show_progress: bool | None = None,
) -> GridResult:
    """Runs every unfinished run of `grid` on `backend`, then the report over all workdirs.

    Unfinished runs are started again and resume from their workdir's last backup; with
    `skip_finished` off every run is started (a finished one only reports its results).
    """
    finished = {r.name for r in grid.runs if skip_finished and spec.is_finished(r, cwd=cwd)}
    todo = [r for r in grid.runs if r.name not in finished]
    logging.info(
        "grid of %d runs: %d finished earlier, %d to run", len(grid.runs), len(finished), len(todo)
    )
    progress = Progress(len(grid.runs), finished=len(finished), show=show_progress)
    try:
        outcomes = dict(
            backend.run(todo, command=grid.train_command, cwd=cwd, progress=progress)
            if todo
            else {}
        )
    finally:
        progress.close()
    outcomes.update({name: Outcome(name=name, status=FINISHED) for name in finished})
    report_rc = None
    if report:
        argv = [*execute.resolve_command(grid.report_command), *grid.report_argv]
        logging.info("report: %s", " ".join(argv))
        start = time.perf_counter()
        report_rc = subprocess.run(argv, cwd=cwd, check=False).returncode
        logging.info("report exit %d after %.0f s", report_rc, time.perf_counter() - start)
    return GridResult(
        outcomes=tuple(outcomes[r.name] for r in grid.runs), report_exit_code=report_rc
    )


def failed_dependency(run: spec.Run, outcomes: Mapping[str, Outcome]) -> str | None:
    """The name of a run `run` depends on that failed, if any."""
    for name in run.depends_on:
        if name in outcomes and outcomes[name].status == FAILED:
            return name
    return None
