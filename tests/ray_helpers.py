"""A private local Ray instance for a test module: 2 CPUs and 2 logical GPUs, loopback only.

Not a test module of its own. The GPUs are Ray resources, not devices: Ray hands them to tasks
as CUDA_VISIBLE_DEVICES values, which is what the tests check; TensorFlow still runs on CPU.
Ray refuses logical GPUs while CUDA_VISIBLE_DEVICES is empty (as the tests set it), so the
instance starts without that variable and it is restored after.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

SKIP_REASON = "the ray extra is not installed (pip install -e '.[ray]')"


@contextlib.contextmanager
def local_ray() -> Iterator[object]:
    """Yields the `ray` module connected to a fresh instance; shuts it down after."""
    ray = pytest.importorskip("ray", reason=SKIP_REASON)
    saved = os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    try:
        ray.init(
            address="local",
            num_cpus=2,
            num_gpus=2,
            include_dashboard=False,
            log_to_driver=False,
        )
    finally:
        if saved is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
    try:
        yield ray
    finally:
        ray.shutdown()
