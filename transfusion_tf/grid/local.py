"""The local backend: runs on this machine, up to `max_parallel` at a time (SPEC X4).

With `gpus` in a run's resources each run sees only its own GPUs through CUDA_VISIBLE_DEVICES:
whole GPUs for `gpus >= 1`, a share of one GPU for fractions (four runs of 0.25 share a
device). Without GPU resources every run sees the machine's GPUs, as a single run would. A run
that exits non-zero is started again up to `retries` times (it resumes from its workdir).
Interrupting the grid stops its runs; a later grid resumes them.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence

from transfusion_tf.grid import execute, runner, spec

_STOP_SECONDS = 10.0
DEFAULT_MAX_PARALLEL = 1


def visible_gpus() -> list[str]:
    """This machine's GPU ids: CUDA_VISIBLE_DEVICES when set, else those nvidia-smi lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


class DevicePool:
    """The free share of each GPU; a run takes whole GPUs or a share of one."""

    def __init__(self, gpu_ids: Sequence[str]) -> None:
        self.free = {str(i): 1.0 for i in gpu_ids}

    def check(self, gpus: float) -> None:
        """Raises GridError when a run needing `gpus` could never start here."""
        if gpus > 0 and (not self.free or gpus > len(self.free)):
            raise spec.GridError(
                f"--gpus_per_run={gpus:g} but this machine has {len(self.free)} GPU(s) "
                f"({', '.join(self.free) or 'none visible'})"
            )

    def take(self, gpus: float) -> list[str] | None:
        """Device ids for a run needing `gpus` (none needed: []), or None when not free now."""
        if gpus <= 0:
            return []
        if gpus >= 1:
            whole = [d for d, share in self.free.items() if share >= 1.0][: int(gpus)]
            if len(whole) < gpus:
                return None
            for d in whole:
                self.free[d] = 0.0
            return whole
        # Fill the busiest device that still fits, keeping whole devices for whole-GPU runs.
        fits = [d for d, share in self.free.items() if share >= gpus - 1e-9]
        if not fits:
            return None
        device = min(fits, key=lambda d: self.free[d])
        self.free[device] -= gpus
        return [device]

    def give(self, devices: Sequence[str], gpus: float) -> None:
        for d in devices:
            self.free[d] = min(1.0, self.free[d] + (1.0 if gpus >= 1 else gpus))


class LocalBackend:
    """Runs grid runs as child processes of this one."""

    def __init__(
        self,
        *,
        max_parallel: int = DEFAULT_MAX_PARALLEL,
        gpu_ids: Sequence[str] = (),
        retries: int = runner.DEFAULT_RETRIES,
        poll_seconds: float = 1.0,
    ) -> None:
        if max_parallel < 1:
            raise spec.GridError(f"--max_parallel must be >= 1, got {max_parallel}")
        if retries < 0:
            raise spec.GridError(f"--retries must be >= 0, got {retries}")
        self.max_parallel = max_parallel
        self.gpu_ids = tuple(gpu_ids)
        self.retries = retries
        self.poll_seconds = poll_seconds

    def run(
        self,
        runs: Sequence[spec.Run],
        *,
        command: Sequence[str],
        cwd: str,
        progress: runner.Progress,
    ) -> Mapping[str, runner.Outcome]:
        pool = DevicePool(self.gpu_ids)
        for run in runs:
            pool.check(run.resources.gpus)
        schedule = _Schedule(
            runs, pool=pool, command=command, cwd=cwd, progress=progress, retries=self.retries
        )
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.max_parallel) as waiters:
            try:
                while schedule.pending or schedule.running:
                    schedule.start_ready(waiters, max_parallel=self.max_parallel)
                    if not schedule.running:
                        if schedule.pending:  # cannot happen: sources come first, GPUs checked
                            names = [r.name for r in schedule.pending]
                            raise spec.GridError(f"cannot start {names}")
                        continue
                    schedule.collect(timeout=self.poll_seconds)
            except BaseException:
                _stop([proc for _, proc, _, _ in schedule.running.values()])
                raise
        return schedule.outcomes


class _Schedule:
    """The state of one local grid: runs pending, running (by their waiting future), ended."""

    def __init__(
        self,
        runs: Sequence[spec.Run],
        *,
        pool: DevicePool,
        command: Sequence[str],
        cwd: str,
        progress: runner.Progress,
        retries: int,
    ) -> None:
        self.names = {r.name for r in runs}
        self.pending = list(runs)
        self.outcomes: dict[str, runner.Outcome] = {}
        self.attempts: dict[str, int] = {}
        self.running: dict[concurrent.futures.Future, tuple] = {}
        self._pool = pool
        self._command = command
        self._cwd = cwd
        self._progress = progress
        self._retries = retries

    def _ready(self, run: spec.Run) -> bool:
        return all(
            d not in self.names or (d in self.outcomes and self.outcomes[d].status == runner.DONE)
            for d in run.depends_on
        )

    def _finish(self, outcome: runner.Outcome) -> None:
        self.outcomes[outcome.name] = outcome
        self._progress.finished(outcome)

    def start_ready(
        self, waiters: concurrent.futures.ThreadPoolExecutor, *, max_parallel: int
    ) -> None:
        """Starts every pending run whose sources are done and whose GPUs are free, up to
        `max_parallel` running; a run whose source failed ends as failed, not started."""
        for run in list(self.pending):
            if len(self.running) >= max_parallel:
                break
            source = runner.failed_dependency(run, self.outcomes)
            if source is not None:
                self.pending.remove(run)
                self._finish(
                    runner.Outcome(
                        name=run.name,
                        status=runner.FAILED,
                        reason=f"not started: its source run {source} failed",
                    )
                )
                continue
            if not self._ready(run):
                continue
            devices = self._pool.take(run.resources.gpus)
            if devices is None:
                continue
            env = {"CUDA_VISIBLE_DEVICES": ",".join(devices)} if run.resources.gpus > 0 else {}
            proc = execute.start_run(run, command=self._command, cwd=self._cwd, env=env)
            self.attempts[run.name] = self.attempts.get(run.name, 0) + 1
            self.pending.remove(run)
            future = waiters.submit(proc.wait)
            self.running[future] = (run, proc, devices, time.perf_counter())
            self._progress.started(run.name, f"GPUs {','.join(devices)}" if devices else "")

    def collect(self, *, timeout: float) -> None:
        """Waits up to `timeout` seconds for runs to exit; each ends done, is queued again
        (retries left) or ends failed."""
        done, _ = concurrent.futures.wait(
            self.running, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED
        )
        for future in done:
            run, _, devices, start = self.running.pop(future)
            self._pool.give(devices, run.resources.gpus)
            self._exited(run, future.result(), time.perf_counter() - start)

    def _exited(self, run: spec.Run, rc: int, seconds: float) -> None:
        attempts = self.attempts[run.name]
        if rc == 0:
            self._finish(
                runner.Outcome(
                    name=run.name,
                    status=runner.DONE,
                    exit_code=0,
                    seconds=seconds,
                    attempts=attempts,
                )
            )
        elif attempts <= self._retries:
            self.pending.insert(0, run)
            self._progress.requeued(
                run.name, f"exit {rc}, attempt {attempts + 1} of {self._retries + 1}"
            )
        else:
            self._finish(
                runner.Outcome(
                    name=run.name,
                    status=runner.FAILED,
                    exit_code=rc,
                    reason=f"exit {rc}, log {run.log_path}",
                    seconds=seconds,
                    attempts=attempts,
                )
            )


def _stop(procs: Sequence[subprocess.Popen]) -> None:
    """SIGTERM, then SIGKILL after a grace period: runs resume from their last backup."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + _STOP_SECONDS
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
