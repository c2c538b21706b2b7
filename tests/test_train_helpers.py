"""Shared helpers of the training-side tests: one tiny dataset, one tiny run, CLI drivers.

Not a test module of its own (it holds no tests); the training tests import it. Shared results
are built once per test session, under a directory all pytest-xdist workers share, behind a
lock file: the first worker builds, the others wait and reuse.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

CLI_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "CUDA_VISIBLE_DEVICES": "",
    "MPLBACKEND": "Agg",
    "PYTHONUNBUFFERED": "1",
}
TINY_WIDTHS = "8,16"
IMAGE_SIZE = 32

# Runs several CLI invocations in ONE Python process (TensorFlow is imported once): for each
# argv the absl flags are reset and parsed, then the CLI's `main(argv)` runs exactly as
# `app.run` would call it. Usage errors and exits are caught and reported per invocation.
_DRIVER = r"""
import json, sys, io, contextlib, time, traceback
if sys.argv[2] == "1":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import importlib
from absl import app, flags
module = importlib.import_module("transfusion_tf.cli." + sys.argv[1])
for line in sys.stdin:
    argv = json.loads(line)
    flags.FLAGS.unparse_flags()
    out, err = io.StringIO(), io.StringIO()
    rec = {"argv": argv, "ok": True, "error": None, "exit_code": 0}
    start, cpu = time.perf_counter(), time.process_time()
    try:
        remaining = flags.FLAGS(argv)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            module.main(remaining)
    except app.UsageError as e:
        rec.update(ok=False, error="UsageError: " + str(e), exit_code=1)
    except flags.Error as e:
        rec.update(ok=False, error="FlagError: " + str(e), exit_code=1)
    except SystemExit as e:
        rec.update(ok=e.code in (0, None), error=err.getvalue(), exit_code=e.code)
    except Exception:
        rec.update(ok=False, error=traceback.format_exc(), exit_code=99)
    rec["stdout"] = out.getvalue()
    rec["seconds"] = [time.perf_counter() - start, time.process_time() - cpu]
    print("DRIVER " + json.dumps(rec), flush=True)
"""


def env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess."""
    out = dict(os.environ)
    out.update(CLI_ENV)
    out.update(extra)
    return out


def run_cli_once(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs `python -m transfusion_tf.cli.<module> ARGS` to the end; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", f"transfusion_tf.cli.{module}", *args],
        env=env(TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_cli_batch(
    module: str,
    argvs: list[list[str]],
    *,
    two_cpu_devices: bool = False,
    timeout: float = 600,
) -> list[dict]:
    """Runs `transfusion_tf.cli.<module>.main` for each argv (flags without program name)."""
    stdin = "".join(json.dumps([f"transfusion-{module}", *a]) + "\n" for a in argvs)
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, module, "1" if two_cpu_devices else "0"],
        input=stdin,
        capture_output=True,
        text=True,
        env=env(),
        timeout=timeout,
    )
    records = [
        json.loads(line[len("DRIVER ") :])
        for line in proc.stdout.splitlines()
        if line.startswith("DRIVER ")
    ]
    assert len(records) == len(argvs), proc.stderr[-4000:]
    return records


def run_cli(
    module: str, args: list[str], *, env_extra: dict[str, str] | None = None
) -> subprocess.Popen:
    """Starts the real console entry point (`python -m transfusion_tf.cli.<module>`)."""
    return subprocess.Popen(
        [sys.executable, "-m", f"transfusion_tf.cli.{module}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(**(env_extra or {})),
    )


def shared_root(tmp_path_factory) -> str:
    """A temp directory shared by all xdist workers of this session (else the base temp)."""
    base = tmp_path_factory.getbasetemp()
    return str(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)


@contextlib.contextmanager
def _locked(path: str, timeout: float = 1200) -> Iterator[None]:
    lock = path + ".lock"
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL)
            break
        except FileExistsError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{lock} held for more than {timeout} s") from None
            time.sleep(0.2)
    try:
        yield
    finally:
        os.close(fd)
        os.remove(lock)


def build_once(tmp_path_factory, name: str, done_file: str, build: Callable[[str], None]) -> str:
    """`<shared root>/<name>`, built by `build(path)` unless `path/done_file` exists."""
    path = os.path.join(shared_root(tmp_path_factory), name)
    with _locked(path):
        if not os.path.exists(os.path.join(path, done_file)):
            build(path)
    return path


def tiny_dataset(tmp_path_factory, kind: str = "fundus", num_examples: int = 48) -> str:
    """A tiny synthetic dataset (32 px), written once per test session."""
    from transfusion_tf.data import synthetic

    def build(path: str) -> None:
        synthetic.write_synthetic_dataset(
            kind=kind,
            output_dir=path,
            num_examples=num_examples,
            image_size=IMAGE_SIZE,
            seed=0,
            valid_fraction=0.25,
            test_fraction=0.25,
            overwrite=True,
        )

    return build_once(
        tmp_path_factory, f"train_tiny_{kind}_{num_examples}", "dataset_info.json", build
    )


def tiny_config(dataset_dir: str, workdir: str, **train):
    """A RunConfig of a cbr_tiny run on the tiny dataset, a few steps."""
    from transfusion_tf import config
    from transfusion_tf.data import info as info_lib

    tasks = info_lib.load_dataset_info(dataset_dir)["tasks"]
    settings = dict(
        workdir=workdir,
        train_steps=6,
        eval_every_steps=3,
        steps_per_loop=3,
        checkpoint_every_steps=3,
        learning_rate=0.05,
        auc_thresholds=(0.5, 0.99),
    )
    settings.update(train)
    return config.RunConfig(
        data=config.DataConfig(dataset_dir=dataset_dir, batch_size=8),
        model=config.ModelConfig(
            name="cbr_tiny", num_tasks=len(tasks), image_size=IMAGE_SIZE, widths=(8, 16)
        ),
        train=config.TrainConfig(**settings),
    )


def tiny_run(tmp_path_factory) -> str:
    """A finished tiny run (trained in-process once per session); returns its workdir."""
    from transfusion_tf.training import trainer

    dataset = tiny_dataset(tmp_path_factory)

    def build(workdir: str) -> None:
        trainer.train_and_evaluate(tiny_config(dataset, workdir))

    return build_once(tmp_path_factory, "train_tiny_run", "results.json", build)


def train_flags(dataset_dir: str, workdir: str, *extra: str) -> list[str]:
    """`transfusion-train` flags of a tiny cbr_tiny run."""
    return [
        f"--dataset_dir={dataset_dir}",
        f"--workdir={workdir}",
        "--model=cbr_tiny",
        f"--widths={TINY_WIDTHS}",
        f"--image_size={IMAGE_SIZE}",
        "--batch_size=8",
        "--train_steps=4",
        "--eval_every_steps=2",
        "--steps_per_loop=2",
        "--checkpoint_every_steps=2",
        "--learning_rate=0.05",
        *extra,
    ]
