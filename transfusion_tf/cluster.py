"""Connecting to Ray, for every part of the package that runs on it (grid runs, conversions).

`address`: None joins $RAY_ADDRESS when set (as Ray's own tools do) and otherwise starts a
private local instance (no dashboard, no usage statistics sent); `auto` joins the cluster this
machine joined with `ray start`; `host:port` names a cluster's head. Ray is the optional
extra `pip install 'transfusion_tf[ray]'`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from absl import logging

INSTALL_HINT = "pip install 'transfusion_tf[ray]'"


def import_ray(error: type[Exception] = ValueError) -> Any:
    """The `ray` module; `error` (a message saying how to install it) when it is missing."""
    try:
        import ray
    except ImportError:
        raise error(f"--backend=ray needs Ray: {INSTALL_HINT}") from None
    return ray


def resolved_address(address: str | None) -> str:
    """The address `connect` uses: `address`, else $RAY_ADDRESS, else `local`."""
    return address or os.environ.get("RAY_ADDRESS") or "local"


def connect(ray: Any, address: str | None, **init_kwargs: Any) -> bool:
    """Connects to Ray unless already connected; True when this call made the connection."""
    if ray.is_initialized():
        return False
    address = resolved_address(address)
    kwargs: dict[str, Any] = {"address": address, "log_to_driver": False, **init_kwargs}
    if address == "local":
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        kwargs.setdefault("include_dashboard", False)
    logging.info("connecting to Ray (address=%s)", address)
    ray.init(**kwargs)
    return True


@contextlib.contextmanager
def connected(
    address: str | None, *, error: type[Exception] = ValueError, **init_kwargs: Any
) -> Iterator[Any]:
    """Yields `ray`, connected; disconnects after when this block made the connection."""
    ray = import_ray(error)
    made = connect(ray, address, **init_kwargs)
    try:
        yield ray
    finally:
        if made:
            ray.shutdown()
