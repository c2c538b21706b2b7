"""Dataset conversions that survive kills (SPEC R): staging, publishing, signals, workers.

A conversion writes its whole dataset (shards, read-back check, `dataset_info.json`) into a
hidden staging folder inside the output directory, `.staging-<host>-<pid>/`, then publishes it
with signals held back: the old info file and shards are removed and the new ones moved in,
info last. So during `--overwrite` the old dataset stays loadable until the new one is
complete, a failed or interrupted conversion leaves the folder as it was, and a kill can only
interrupt the few renames of the publish step, which the next run completes (the staging
folder then holds a complete dataset with its info file).

The next run into the same folder also removes what dead runs left behind: staging folders
and the hidden temporary shards (`.<split>-NNNNN.tfrecord.tmp-<pid>`) and info files
(`dataset_info.json.tmp-<pid>`) whose process no longer runs on this host.

Worker processes die with their parent: `interruptible` turns SIGTERM into an `Interrupted`
exception in the parent (SIGINT already raises KeyboardInterrupt), so the `with` blocks that
own the pool terminate it; and `worker_init`, the workers' initializer, leaves SIGINT to the
parent and starts a thread that ends the worker as soon as its parent is gone, even after a
SIGKILL.

Dataset directories on any TensorFlow filesystem (`gs://...`, see `fileio`) are staged the
same way; there the renames are copies and no longer atomic, but the old info file still
stays until the new dataset is complete. Local paths never import TensorFlow: the conversion
driver uses this module before TensorFlow loads.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator

from absl import logging

from transfusion_tf.data import fileio
from transfusion_tf.data import info as info_lib

STAGING_PREFIX = ".staging-"
_STAGING_RE = re.compile(r"^\.staging-(?P<host>.+)-(?P<pid>\d+)$")
_TMP_RE = re.compile(r"^(\..+\.tfrecord|dataset_info\.json)\.tmp-(?P<pid>\d+)$")
_SHARD_RE = re.compile(r"^.+-\d{5}-of-\d{5}\.tfrecord$")
PARENT_POLL_SECONDS = 0.5


class Interrupted(KeyboardInterrupt):
    """The conversion was stopped by a signal (`signum`); nothing was published."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class DatasetExistsError(FileExistsError):
    """The output directory already holds a dataset and overwriting was not asked for."""


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def staging_dir(output_dir: str) -> str:
    """This process's staging folder inside `output_dir`."""
    return fileio.join(output_dir, f"{STAGING_PREFIX}{_host()}-{os.getpid()}")


def _dataset_files(directory: str) -> list[str]:
    """Final-named shards and the info file in `directory` (what a publish replaces)."""
    names = [n for n in fileio.listdir(directory) if _SHARD_RE.match(n)]
    if fileio.isfile(fileio.join(directory, info_lib.DATASET_INFO_FILE)):
        names.append(info_lib.DATASET_INFO_FILE)
    return sorted(names)


def _rmtree(path: str) -> None:
    """Removes a folder and everything in it, ignoring errors (local or URL)."""
    if not fileio.is_url(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    import tensorflow as tf

    with contextlib.suppress(Exception):  # tf.errors of any kind: best effort
        tf.io.gfile.rmtree(path)


def _fsync_dir(directory: str) -> None:
    if fileio.is_url(directory):
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Holds SIGINT and SIGTERM back (delivered when the block ends), in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def publish(stage: str, output_dir: str) -> None:
    """Replaces the dataset in `output_dir` by the complete one in `stage`, then removes it.

    The old info file goes first (so no moment shows the old info over new shards) and the
    new info file last (its presence means the shards are complete). Signals are held back
    for the few renames this takes.
    """
    with held_signals():
        staged = [n for n in _dataset_files(stage) if n != info_lib.DATASET_INFO_FILE]
        old_info = fileio.join(output_dir, info_lib.DATASET_INFO_FILE)
        if fileio.exists(old_info):
            fileio.remove(old_info)
        for name in _dataset_files(output_dir):
            fileio.remove(fileio.join(output_dir, name))
        for name in staged:
            fileio.replace(fileio.join(stage, name), fileio.join(output_dir, name))
        fileio.replace(fileio.join(stage, info_lib.DATASET_INFO_FILE), old_info)
        _fsync_dir(output_dir)
        _rmtree(stage)


def clean_stale(output_dir: str) -> list[str]:
    """Removes what dead runs left in `output_dir`; returns the names removed or completed.

    A staging folder of a dead process on this host whose info file is complete, in a folder
    that has no info file, was killed while publishing: its publish is completed. Any other
    dead staging folder, and hidden temporary shards and info files of dead processes, are
    removed. Files of live processes (another conversion running now) are left alone.
    """
    if not fileio.isdir(output_dir):
        return []
    done = []
    host = _host()
    for name in sorted(fileio.listdir(output_dir)):
        path = fileio.join(output_dir, name)
        staging = _STAGING_RE.match(name)
        if staging and fileio.isdir(path):
            if staging.group("host") != host or _pid_alive(int(staging.group("pid"))):
                continue
            info_done = fileio.isfile(fileio.join(path, info_lib.DATASET_INFO_FILE))
            if info_done and not fileio.exists(fileio.join(output_dir, info_lib.DATASET_INFO_FILE)):
                logging.warning("completing the interrupted publish of %s", path)
                publish(path, output_dir)
            else:
                _rmtree(path)
            done.append(name)
            continue
        tmp = _TMP_RE.match(name)
        if tmp and fileio.isfile(path) and not _pid_alive(int(tmp.group("pid"))):
            fileio.remove(path)
            done.append(name)
    if done:
        logging.info("removed %d leftover(s) of dead conversions in %s", len(done), output_dir)
    return done


def check_output_dir(output_dir: str, *, overwrite: bool) -> None:
    """Raises before any work when `output_dir` cannot take a new dataset.

    NotADirectoryError when it (or a parent) is a file; DatasetExistsError when it holds a
    dataset (shards or info file) and `overwrite` is False.
    """
    if fileio.exists(output_dir) and not fileio.isdir(output_dir):
        raise NotADirectoryError(
            f"{output_dir} is a file, not a folder; a dataset is a folder of shards "
            "(choose a folder path, or move the file away)"
        )
    if not fileio.is_url(output_dir):
        parent = os.path.dirname(os.path.abspath(output_dir))
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if parent and not os.path.isdir(parent):
            raise NotADirectoryError(f"{parent} is a file, so {output_dir} cannot be created")
    if not overwrite and fileio.isdir(output_dir):
        existing = _dataset_files(output_dir)
        if existing:
            raise DatasetExistsError(f"{output_dir} already holds a dataset ({existing[0]}, ...)")


@contextlib.contextmanager
def staged_dataset(output_dir: str, *, overwrite: bool) -> Iterator[str]:
    """Yields a fresh staging folder to write a whole dataset into; publishes it on success.

    Checks `output_dir` first (`check_output_dir`) and removes leftovers of dead runs
    (`clean_stale`). The block must leave a complete dataset (shards and dataset_info.json)
    in the staging folder; if it raises (or is interrupted), the staging folder is removed and
    `output_dir` is left as it was (a folder this call created is removed again).
    """
    check_output_dir(output_dir, overwrite=overwrite)
    created = not fileio.exists(output_dir)
    fileio.makedirs(output_dir)
    clean_stale(output_dir)
    check_output_dir(output_dir, overwrite=overwrite)  # a completed publish may have landed
    stage = staging_dir(output_dir)
    if fileio.exists(stage):
        _rmtree(stage)
    fileio.makedirs(stage)
    published = False
    try:
        yield stage
        if not fileio.isfile(fileio.join(stage, info_lib.DATASET_INFO_FILE)):
            raise RuntimeError(f"{stage}: no {info_lib.DATASET_INFO_FILE} was written")
        publish(stage, output_dir)
        published = True
    finally:
        if fileio.isdir(stage):
            _rmtree(stage)
        if created and not published and not fileio.is_url(output_dir):
            with contextlib.suppress(OSError):
                os.rmdir(output_dir)  # only if empty: a folder this run made for nothing


def _raise_interrupted(signum: int, frame) -> None:
    del frame
    raise Interrupted(signum)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, SIGTERM raises `Interrupted` (SIGINT raises KeyboardInterrupt as
    always), so worker pools and staging folders are cleaned up by their `with` blocks.

    Only the main thread can install signal handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(PARENT_POLL_SECONDS)
        if os.getppid() != parent:
            os._exit(1)  # the parent is gone: nobody will read our results


def worker_init(parent: int | None = None) -> None:
    """Initializer of conversion worker processes.

    SIGINT is left to the parent (a Ctrl-C reaches the whole process group; the parent then
    terminates the pool), SIGTERM ends the worker at once (what `Pool.terminate` sends), and a
    daemon thread ends the worker when its parent process `parent` (default: the current
    parent) is gone, e.g. after a SIGKILL.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parent = os.getppid() if parent is None else parent
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def leftover_temporaries(output_dir: str) -> list[str]:
    """Hidden temporary files and staging folders in `output_dir` (for checks and tests)."""
    return sorted(n for n in fileio.listdir(output_dir) if _STAGING_RE.match(n) or _TMP_RE.match(n))
