"""Conversions atomic across kills (SPEC R): an old dataset stays loadable while --overwrite
runs and after it is killed; SIGTERM stops workers and leaves the folder as it was; workers
end when their parent is SIGKILLed; leftovers of dead runs are removed (or an interrupted
publish completed) by the next run; output paths that are files get their own message."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import test_train_helpers as helpers

from transfusion_tf.data import atomic, layouts
from transfusion_tf.data import info as info_lib
from transfusion_tf.data.converters import base, registry

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def _children(pid):
    """Pids of the live child processes of `pid` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out")


def _dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("atomic_raw")
    layouts.write_layout(layout="folder", output_dir=str(root), num_examples=60, image_size=16)
    return root


def _convert(raw, out, **options):
    return registry.prepare_dataset(
        source_format="folder",
        input_path=str(raw),
        output_dir=str(out),
        options=base.ConvertOptions(workers=1, progress=False, **options),
    )


def _synthetic(out, **options):
    return registry.prepare_dataset(
        source_format="synthetic",
        input_path="",
        output_dir=str(out),
        options=base.ConvertOptions(
            workers=1, progress=False, num_examples=40, image_size=16, **options
        ),
    )


def _frozen_conversion(out):
    """Starts `transfusion-prepare --format=synthetic --overwrite` on 2 (spawned) workers and
    freezes it mid-conversion: its workers are stopped as soon as they exist, after its
    staging shards. Returns (process, [worker and resource-tracker pids])."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "transfusion_tf.cli.prepare",
            "--format=synthetic",
            "--num_examples=20000",
            "--image_size=16",
            f"--output_dir={out}",
            "--workers=2",
            "--overwrite",
        ],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Spawn's resource tracker and the 2 workers.
    children = _wait_for(lambda: (c := _children(proc.pid)) and len(c) >= 3 and c)
    for pid in children:
        os.kill(pid, signal.SIGSTOP)
    assert proc.poll() is None, proc.communicate()
    stages = [n for n in atomic.leftover_temporaries(str(out)) if n.startswith(".staging-")]
    assert any(n.endswith(f".tmp-{proc.pid}") for n in os.listdir(out / stages[0]))
    return proc, children


def _assert_old_dataset(out, info):
    assert json.loads((out / info_lib.DATASET_INFO_FILE).read_text()) == info
    for split, counts in info["splits"].items():
        assert len(info_lib.split_files(str(out), split)) == counts["num_shards"]


def test_sigkill_during_overwrite_keeps_the_old_dataset_and_ends_the_workers(tmp_path):
    out = tmp_path / "ds"
    info = _synthetic(out, num_shards=3)
    proc, children = _frozen_conversion(out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for pid in children:
        os.kill(pid, signal.SIGCONT)
    # Workers notice the dead parent (atomic.worker_init) and end within a second or so; the
    # resource tracker ends once they have.
    _wait_for(lambda: not any(_alive(pid) for pid in children), timeout=10)
    _assert_old_dataset(out, info)  # the old dataset loads as it was
    assert [n for n in atomic.leftover_temporaries(str(out)) if n.startswith(".staging-")]
    # The next run into the folder removes the dead run's staging folder and temporaries.
    again = _synthetic(out, num_shards=2, overwrite=True)
    assert atomic.leftover_temporaries(str(out)) == []
    assert again["splits"]["train"]["num_shards"] == 2
    _assert_old_dataset(out, again)


def test_sigterm_stops_workers_and_leaves_the_folder_as_it_was(tmp_path):
    out = tmp_path / "ds"
    info = _synthetic(out, num_shards=3)
    before = sorted(os.listdir(out))
    proc, children = _frozen_conversion(out)
    os.kill(proc.pid, signal.SIGTERM)
    for pid in children:
        os.kill(pid, signal.SIGCONT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    # (spawn's resource tracker, which shares stderr, may add a line after it)
    assert (
        f"error: stopped by SIGTERM before the new dataset was complete; {out} is as it was "
        "(workers and temporary files removed)"
    ) in stderr.splitlines()
    # No traceback of ours (a spawned worker stopped while it was still starting up may
    # report the closed pipe of its dead parent).
    assert not [line for line in stderr.splitlines() if "File" in line and "transfusion_tf" in line]
    _wait_for(lambda: not any(_alive(pid) for pid in children), timeout=10)
    assert sorted(os.listdir(out)) == before
    _assert_old_dataset(out, info)


def test_workers_end_when_the_parent_dies_without_cleanup(tmp_path):
    """A pool with atomic.worker_init, its parent gone by os._exit (as after SIGKILL): the
    workers end, and so does spawn's resource tracker once they have."""
    script = textwrap.dedent(
        """
        import multiprocessing, os, sys, time
        from transfusion_tf.data import atomic
        pool = multiprocessing.get_context(sys.argv[1]).Pool(
            2, initializer=atomic.worker_init, initargs=(os.getpid(),))
        pool.map(time.sleep, [0.01] * 4)
        pids = [p.pid for p in multiprocessing.active_children()]
        from multiprocessing import resource_tracker
        tracker = resource_tracker._resource_tracker._pid  # spawn starts one; fork does not
        print(" ".join(map(str, pids + ([tracker] if tracker else []))), flush=True)
        os._exit(0)
        """
    )
    for method in ("fork", "spawn"):
        done = subprocess.run(
            [sys.executable, "-c", script, method],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        workers = [int(p) for p in done.stdout.split()]
        assert len(workers) == (3 if method == "spawn" else 2)
        _wait_for(lambda w=workers: not any(_alive(p) for p in w), timeout=10)


def test_stale_temporaries_of_dead_runs_are_removed(raw, tmp_path):
    out = tmp_path / "ds"
    info = _convert(raw, out)
    dead, live = _dead_pid(), subprocess.Popen(["sleep", "60"])
    try:
        host = atomic.staging_dir(str(out)).rsplit("-", 1)[0]
        stale = [
            f".train-00000.tfrecord.tmp-{dead}",
            f"dataset_info.json.tmp-{dead}",
            f"{os.path.basename(host)}-{dead}",
        ]
        kept = [f".valid-00000.tfrecord.tmp-{live.pid}", f"{os.path.basename(host)}-{live.pid}"]
        for name in stale[:2] + kept[:1]:
            (out / name).write_bytes(b"partial")
        os.makedirs(out / stale[2])
        (out / stale[2] / "train-00000-of-00001.tfrecord").write_bytes(b"partial")
        os.makedirs(out / kept[1])
        removed = atomic.clean_stale(str(out))
        assert sorted(removed) == sorted(stale)
        assert sorted(atomic.leftover_temporaries(str(out))) == sorted(kept)
        _assert_old_dataset(out, info)
    finally:
        live.kill()
        live.wait()


def test_an_interrupted_publish_is_completed_by_the_next_run(raw, tmp_path):
    """Killed between removing the old info file and moving the new one in (a SIGKILL in the
    publish step): the staging folder holds the complete new dataset, and is published."""
    new = tmp_path / "new"
    info = _convert(raw, new, num_shards=2)
    out = tmp_path / "ds"
    _convert(raw, out, num_shards=3)
    stage = out / f"{os.path.basename(atomic.staging_dir(str(out))).rsplit('-', 1)[0]}-"
    stage = stage.with_name(stage.name + str(_dead_pid()))
    os.rename(new, stage)
    os.remove(out / info_lib.DATASET_INFO_FILE)  # the publish had begun
    assert atomic.clean_stale(str(out)) == [stage.name]
    _assert_old_dataset(out, info)
    assert atomic.leftover_temporaries(str(out)) == []


def test_failed_overwrite_leaves_the_old_dataset(raw, tmp_path):
    out = tmp_path / "ds"
    info = _convert(raw, out)
    bad = tmp_path / "raw"
    shutil.copytree(raw, bad)
    first_class = sorted(p for p in os.listdir(bad) if os.path.isdir(bad / p))[0]
    (bad / first_class / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    # Fails after every image was processed and written into the staging folder.
    with pytest.raises(base.StrictModeError, match="zz_corrupt.png"):
        _convert(bad, out, overwrite=True, strict=True)
    _assert_old_dataset(out, info)
    with pytest.raises(base.StrictModeError):
        _convert(bad, tmp_path / "fresh", strict=True)
    assert not (tmp_path / "fresh").exists()  # a folder made for nothing is removed
    assert atomic.leftover_temporaries(str(out)) == []


def _prepare(*args):
    return helpers.run_cli_once("prepare", *args)


def test_output_paths_that_are_files_or_hold_a_dataset(raw, tmp_path):
    regular = tmp_path / "file.txt"
    regular.write_text("not a folder")
    for extra in ([], ["--overwrite"]):
        done = _prepare("--format=folder", f"--input={raw}", f"--output_dir={regular}", *extra)
        assert done.returncode == 1
        assert done.stderr.strip().splitlines()[-1] == (
            f"error: --output_dir: {regular} is a file, not a folder; a dataset is a folder of "
            "shards (choose a folder path, or move the file away)"
        )
    done = _prepare("--format=folder", f"--input={raw}", f"--output_dir={regular}/ds")
    assert f"{regular} is a file, so {regular}/ds cannot be created" in done.stderr
    out = tmp_path / "ds"
    _convert(raw, out)
    done = _prepare("--format=folder", f"--input={raw}", f"--output_dir={out}")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {out} already holds a dataset (")
    assert last.endswith("; rerun with --overwrite to replace it")
    assert "pass overwrite" not in last and "(use --overwrite)" not in last
