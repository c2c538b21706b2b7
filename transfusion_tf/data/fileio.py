"""Paths on any filesystem TensorFlow reads: local ones through `os`, URLs through tf.io.gfile.

A path with a scheme (`gs://bucket/x`, `s3://...` in TensorFlow builds that have it,
`hdfs://`, `file:///abs/path`) goes through `tf.io.gfile`, imported on first use; a plain path
goes through `os` and never imports TensorFlow, so conversion workers reading local files stay
free of it. Used where a dataset is read or written on machines that share no disk: converters'
inputs, the per-image reads, Ray's shard writes and the dataset directory.
"""

from __future__ import annotations

import builtins
import glob as glob_lib
import io
import os
from collections.abc import Iterator
from typing import IO, Any


def is_url(path: str) -> bool:
    """Whether `path` names a file through a filesystem scheme (`gs://...`)."""
    return "://" in path


def _gfile() -> Any:
    import tensorflow as tf

    return tf.io.gfile


def join(path: str, *parts: str) -> str:
    return os.path.join(path, *parts)  # '/'-separated on POSIX, URLs included


def absolute(path: str) -> str:
    """`os.path.abspath` for local paths; URLs unchanged."""
    return path if is_url(path) else os.path.abspath(path)


def exists(path: str) -> bool:
    return _gfile().exists(path) if is_url(path) else os.path.exists(path)


def isdir(path: str) -> bool:
    return _gfile().isdir(path) if is_url(path) else os.path.isdir(path)


def isfile(path: str) -> bool:
    if is_url(path):
        return _gfile().exists(path) and not _gfile().isdir(path)
    return os.path.isfile(path)


def listdir(path: str) -> list[str]:
    """Entry names (no trailing '/'), unsorted like os.listdir."""
    if is_url(path):
        return [name.rstrip("/") for name in _gfile().listdir(path)]
    return os.listdir(path)


def walk(top: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """`os.walk` (top-down; sorting `dirnames` in place orders the descent)."""
    if not is_url(top):
        yield from os.walk(top)
        return
    gfile = _gfile()
    dirs, files = [], []
    for name in gfile.listdir(top):
        name = name.rstrip("/")
        (dirs if gfile.isdir(join(top, name)) else files).append(name)
    yield top, dirs, files
    for name in dirs:
        yield from walk(join(top, name))


def glob(pattern: str) -> list[str]:
    return _gfile().glob(pattern) if is_url(pattern) else glob_lib.glob(pattern)


def escape(path: str) -> str:
    """`path` with glob metacharacters escaped (local paths; URLs as they are)."""
    return path if is_url(path) else glob_lib.escape(path)


def open(path: str, mode: str = "r", **kwargs: Any) -> IO:  # noqa: A001  (mirrors open)
    """A file object, as `builtins.open(path, mode, **kwargs)` gives for local paths.

    A URL opens as a tf.io.gfile.GFile; read as text, it is decoded whole with `encoding`
    (default UTF-8; `utf-8-sig` drops a byte-order mark) and `newline` as `open` reads them.
    """
    if not is_url(path):
        return builtins.open(path, mode, **kwargs)
    if "r" in mode and "b" not in mode:
        with _gfile().GFile(path, "rb") as f:
            text = f.read().decode(kwargs.get("encoding") or "utf-8")
        return io.StringIO(text, newline=kwargs.get("newline", "\n"))
    return _gfile().GFile(path, mode)


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def makedirs(path: str) -> None:
    if is_url(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def remove(path: str) -> None:
    if is_url(path):
        _gfile().remove(path)
    else:
        os.remove(path)


def replace(src: str, dst: str) -> None:
    """Renames `src` to `dst`, replacing it (atomic on local filesystems)."""
    if is_url(src) or is_url(dst):
        _gfile().rename(src, dst, overwrite=True)
    else:
        os.replace(src, dst)
