"""Starts one grid run as a process whose output goes to `<workdir>/train.log` (both backends).

The default commands (`transfusion-train`, `transfusion-report`) run as `python -m
transfusion_tf.cli.<verb>` with the interpreter executing this code, so a run uses the very
package and environment of the grid (on Ray: of the worker). Each attempt appends a header
line (time, host, CUDA_VISIBLE_DEVICES, command) to the log. On Linux a run dies with the
process that started it, so a killed grid or Ray worker leaves no training process behind
writing to a workdir that a retry resumes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

from transfusion_tf.grid import spec

_MODULES = {
    spec.TRAIN_COMMAND: "transfusion_tf.cli.train",
    spec.REPORT_COMMAND: "transfusion_tf.cli.report",
}
_PR_SET_PDEATHSIG = 1


def resolve_command(command: Sequence[str]) -> list[str]:
    """`command`, with the package's own console scripts run by this interpreter."""
    if len(command) == 1 and command[0] in _MODULES:
        return [sys.executable, "-m", _MODULES[command[0]]]
    return list(command)


def _die_with_parent() -> None:
    """In the child, before exec: receive SIGKILL when the parent thread exits (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def start_run(
    run: spec.Run,
    *,
    command: Sequence[str],
    cwd: str,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen:
    """Starts `command + run.argv` in `cwd` with `env` added to this process's environment."""
    argv = [*resolve_command(command), *run.argv]
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    log_path = os.path.join(cwd, run.log_path)
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    devices = full_env.get("CUDA_VISIBLE_DEVICES", "<unset>")
    with open(log_path, "ab") as log:
        header = (
            f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} on {socket.gethostname()} "
            f"CUDA_VISIBLE_DEVICES={devices}: {' '.join(argv)}\n"
        )
        log.write(header.encode())
        log.flush()
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )


def tail(path: str, lines: int = 5) -> str:
    """The last lines of a log file ('' when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])
