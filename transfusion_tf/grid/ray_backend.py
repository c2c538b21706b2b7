"""The Ray backend: one Ray Core task per run, on a private local instance or a cluster (SPEC X4).

Each run is a task reserving its resources' `num_gpus` and `num_cpus` (fractions allowed); Ray
places it on a node where they are free and sets CUDA_VISIBLE_DEVICES to the GPUs it reserved.
A run that loads a source run's workdir receives that run's task's object ref as an argument,
so Ray starts it only once the source has finished, and never when the source failed. A run
that exits non-zero, or whose worker or node dies, is retried by Ray up to `retries` times and
resumes from its workdir. Every task runs its command in the grid's directory, which must be
at the same path on every node (flags/, the runs directory and the datasets on a shared
filesystem). Needs `pip install 'transfusion_tf[ray]'`.

`address` is read as `cluster.connect` reads it (None: $RAY_ADDRESS or a private instance).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

from absl import logging

from transfusion_tf import cluster
from transfusion_tf.grid import execute, runner, spec


class RunFailedError(RuntimeError):
    """A run's command exited non-zero (Ray retries these)."""

    def __init__(self, name: str, exit_code: int, log_path: str) -> None:
        super().__init__(name, exit_code, log_path)
        self.name, self.exit_code, self.log_path = name, exit_code, log_path

    def __str__(self) -> str:
        return f"exit {self.exit_code}, log {self.log_path}"


class _Status:
    """A Ray actor the tasks tell when they start, so the driver can count running runs."""

    def __init__(self) -> None:
        self._events: list[tuple[str, str, str]] = []

    def started(self, name: str, host: str, devices: str) -> None:
        self._events.append((name, host, devices))

    def take(self) -> list[tuple[str, str, str]]:
        events, self._events = self._events, []
        return events


def _execute(
    run: spec.Run, command: tuple[str, ...], cwd: str, status: Any, *sources: Any
) -> dict[str, Any]:
    """The task of one run (`sources`: the finished source runs' results, unused)."""
    del sources
    host = socket.gethostname()
    if not os.path.isdir(cwd):
        raise spec.GridError(
            f"{cwd} does not exist on node {host}: the grid's directory, runs and datasets must "
            "be on a filesystem every node shares"
        )
    status.started.remote(run.name, host, os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    start = time.perf_counter()
    if not spec.is_finished(run, cwd=cwd):  # a retry after the run itself had finished
        rc = execute.start_run(run, command=command, cwd=cwd).wait()
        if rc != 0:
            raise RunFailedError(run.name, rc, run.log_path)
    return {"seconds": time.perf_counter() - start, "host": host}


class RayBackend:
    """Runs grid runs as Ray tasks."""

    def __init__(
        self,
        *,
        address: str | None = None,
        retries: int = runner.DEFAULT_RETRIES,
        poll_seconds: float = 1.0,
        init_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if retries < 0:
            raise spec.GridError(f"--retries must be >= 0, got {retries}")
        self.address = address
        self.retries = retries
        self.poll_seconds = poll_seconds
        self.init_kwargs = dict(init_kwargs or {})

    def run(
        self,
        runs: Sequence[spec.Run],
        *,
        command: Sequence[str],
        cwd: str,
        progress: runner.Progress,
    ) -> Mapping[str, runner.Outcome]:
        private = cluster.resolved_address(self.address) == "local"
        ray = cluster.import_ray(spec.GridError)
        made = cluster.connect(ray, self.address, **self.init_kwargs)
        try:
            self._check_resources(ray, runs, private=private and made)
            return self._run(
                ray, runs, command=tuple(command), cwd=os.path.abspath(cwd), progress=progress
            )
        finally:
            if made:
                ray.shutdown()

    @staticmethod
    def _check_resources(ray: Any, runs: Sequence[spec.Run], *, private: bool) -> None:
        total = ray.cluster_resources()
        for kind, key in (("gpus", "GPU"), ("cpus", "CPU")):
            need = max((getattr(r.resources, kind) for r in runs), default=0.0)
            have = total.get(key, 0.0)
            if need > have:
                message = (
                    f"--{kind}_per_run={need:g} but the Ray cluster has {have:g} {key}(s) in all"
                )
                if private:
                    raise spec.GridError(message)
                logging.warning("%s; runs wait until the cluster grows", message)

    def _run(
        self,
        ray: Any,
        runs: Sequence[spec.Run],
        *,
        command: tuple[str, ...],
        cwd: str,
        progress: runner.Progress,
    ) -> dict[str, runner.Outcome]:
        status = ray.remote(_Status).options(num_cpus=0).remote()
        task = ray.remote(_execute)
        refs: dict[str, Any] = {}
        for run in runs:  # dependency order: a source's ref exists before its dependants'
            sources = [refs[d] for d in run.depends_on if d in refs]
            refs[run.name] = task.options(
                num_gpus=run.resources.gpus,
                num_cpus=run.resources.cpus,
                max_retries=self.retries,
                retry_exceptions=[RunFailedError],
                name=f"transfusion-grid {run.name}",
            ).remote(run, command, cwd, status, *sources)
        names = {ref: name for name, ref in refs.items()}
        attempts: dict[str, int] = {}
        started: dict[str, float] = {}
        outcomes: dict[str, runner.Outcome] = {}
        waiting = list(refs.values())
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1, timeout=self.poll_seconds)
            for name, host, devices in ray.get(status.take.remote()):
                attempts[name] = attempts.get(name, 0) + 1
                started[name] = time.perf_counter()
                if attempts[name] > 1:
                    progress.requeued(name, f"attempt {attempts[name]} of {self.retries + 1}")
                progress.started(name, f"{host}, CUDA_VISIBLE_DEVICES={devices or '(none)'}")
            for ref in ready:
                name = names[ref]
                outcome = self._outcome(ray, ref, name, attempts.get(name, 0), started)
                outcomes[name] = outcome
                progress.finished(outcome)
        return outcomes

    @staticmethod
    def _outcome(
        ray: Any, ref: Any, name: str, attempts: int, started: Mapping[str, float]
    ) -> runner.Outcome:
        seconds = time.perf_counter() - started[name] if name in started else 0.0
        try:
            result = ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            cause = err.cause
            if isinstance(cause, RunFailedError) and cause.name != name:
                reason = f"not started: its source run {cause.name} failed"
                return runner.Outcome(name=name, status=runner.FAILED, reason=reason)
            exit_code = cause.exit_code if isinstance(cause, RunFailedError) else None
            return runner.Outcome(
                name=name,
                status=runner.FAILED,
                exit_code=exit_code,
                reason=str(cause),
                seconds=seconds,
                attempts=attempts,
            )
        except ray.exceptions.RayError as err:  # worker or node lost more often than retried
            return runner.Outcome(
                name=name,
                status=runner.FAILED,
                reason=f"{type(err).__name__}: {str(err).splitlines()[0]}",
                seconds=seconds,
                attempts=attempts,
            )
        return runner.Outcome(
            name=name,
            status=runner.DONE,
            exit_code=0,
            seconds=result["seconds"],
            attempts=attempts,
        )
