"""A training command for grid tests: `transfusion-train` that records what it saw.

Appends `{"event": "start"|"end", "time", "pid", "cuda_visible_devices"}` lines to
`<workdir>/probe.jsonl`, then runs the real trainer in this process (`--fake` instead sleeps
0.5 s and writes results.json, for tests of scheduling alone). When `<workdir>.kill_once`
exists, it is removed at the run's first backup and the process that started this one (the
grid's Ray worker) is killed with SIGKILL, as a lost node would be.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import threading
import time


def _record(workdir: str, event: str) -> None:
    os.makedirs(workdir, exist_ok=True)
    line = {
        "event": event,
        "time": time.time(),
        "pid": os.getpid(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    with open(os.path.join(workdir, "probe.jsonl"), "a") as f:
        f.write(json.dumps(line) + "\n")


def _kill_parent_at_first_backup(workdir: str, marker: str) -> None:
    backup = os.path.join(workdir, "checkpoints", "checkpoint")
    while not os.path.exists(backup):
        time.sleep(0.01)
    os.remove(marker)
    os.kill(os.getppid(), signal.SIGKILL)


def main() -> None:
    args = sys.argv[1:]
    fake = "--fake" in args
    args = [a for a in args if a != "--fake"]
    workdir = [a.split("=", 1)[1] for a in args if a.startswith("--workdir=")][-1]
    _record(workdir, "start")
    if fake:
        time.sleep(0.5)
        seed = [a.split("=", 1)[1] for a in args if a.startswith("--seed=")][-1]
        if os.path.exists(workdir.rstrip("/") + ".fail"):
            sys.exit(3)
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump({"seed": int(seed)}, f)
    else:
        marker = workdir.rstrip("/") + ".kill_once"
        if os.path.exists(marker):
            threading.Thread(
                target=_kill_parent_at_first_backup, args=(workdir, marker), daemon=True
            ).start()
        sys.argv = ["transfusion-train", *args]
        try:
            runpy.run_module("transfusion_tf.cli.train", run_name="__main__")
        except SystemExit as e:
            if e.code not in (0, None):
                raise
    _record(workdir, "end")


if __name__ == "__main__":
    main()
