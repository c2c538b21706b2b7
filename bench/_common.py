"""What the benchmarks share: argument handling, a scratch folder, a synthetic fundus dataset,
clocks, and the JSON line each prints last.

The benchmarks run as scripts (`python bench/<name>.py`), so this module is imported as
`_common` from the script's own folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from absl import app


def run(main: Callable[[], None]) -> None:
    """`app.run` of a benchmark that takes flags only: a positional argument is a UsageError."""

    def checked(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        main()

    app.run(checked)


@contextlib.contextmanager
def scratch(work_dir: str | None, *, prefix: str) -> Iterator[str]:
    """`work_dir` (kept afterwards) or, when None, a temporary folder removed on exit."""
    if work_dir:
        yield work_dir
        return
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_fundus(output_dir: str, *, num_examples: int, image_size: int, **options: Any) -> str:
    """A synthetic fundus dataset of `num_examples` [image_size, image_size, 3] images.

    `options` go to `synthetic.write_synthetic_dataset` (splits, shards, workers, seed).
    """
    from transfusion_tf.data import synthetic

    synthetic.write_synthetic_dataset(
        kind="fundus",
        output_dir=output_dir,
        num_examples=num_examples,
        image_size=image_size,
        **options,
    )
    return output_dir


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its reaped children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@dataclasses.dataclass
class Clock:
    """Seconds of a `with` block: wall, CPU of this process, CPU of children reaped in it."""

    wall: float = 0.0
    cpu: float = 0.0
    children_cpu: float = 0.0

    def __enter__(self) -> Clock:
        self._start = (time.perf_counter(), *cpu_seconds())
        return self

    def __exit__(self, *exc: object) -> None:
        wall, cpu, children = self._start
        cpu_now, children_now = cpu_seconds()
        self.wall = time.perf_counter() - wall
        self.cpu = cpu_now - cpu
        self.children_cpu = children_now - children


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The fastest of `repeats` calls of `fn` (wall seconds) and the last call's result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        with Clock() as clock:
            out = fn()
        best = min(best, clock.wall)
    return best, out


def print_result(result: dict[str, Any], *, sort_keys: bool = False) -> None:
    """Prints the benchmark's figures as its last line, one JSON object."""
    print(json.dumps(result, sort_keys=sort_keys))
