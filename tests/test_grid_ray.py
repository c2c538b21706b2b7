"""`transfusion-grid --backend=ray` on a real local Ray instance (2 CPUs, 2 logical GPUs).

One grid of real tiny training runs runs once for the module: a source pretraining run, a
transfer run that loads its workdir, and a random-init run whose Ray worker is killed at its
first backup. The tests read what the runs recorded (tests/grid_probe.py): overlap and
CUDA_VISIBLE_DEVICES, the source finishing before its dependant starts, the killed run
retried and resumed to its full step count, logs, and a second grid skipping every run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import ray_helpers
import test_train_helpers as helpers

from transfusion_tf.grid import ray_backend, runner, spec

pytestmark = pytest.mark.slow
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grid_probe.py")
KILLED_STEPS = 40


@pytest.fixture(scope="module")
def ray_instance():
    with ray_helpers.local_ray() as ray:
        yield ray


def write_flagfiles(root, dataset: str) -> None:
    """A tiny experiment tree: flags/base/tiny.flags and three experiment flagfiles."""
    base = root / "flags" / "base"
    base.mkdir(parents=True)
    flags = helpers.train_flags(dataset, "unused")
    (base / "tiny.flags").write_text(
        "\n".join(f for f in flags if not f.startswith("--workdir=")) + "\n"
    )
    experiments = {
        "imagenet_tiny": ["--init=random"],
        "retina_tiny_imagenet": ["--init=imagenet", "--source_weights=runs/imagenet_tiny/seed0"],
        "retina_tiny_random": [
            "--init=random",
            f"--train_steps={KILLED_STEPS}",
            "--eval_every_steps=20",
        ],
    }
    for stem, own in experiments.items():
        lines = ["--flagfile=flags/base/tiny.flags", *own]
        (root / "flags" / f"{stem}.flags").write_text("\n".join(lines) + "\n")


def probe(root, name: str) -> list[dict]:
    path = root / "runs" / name / "probe.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def tiny_grid(root, runs_dir="runs") -> spec.Grid:
    cwd = os.getcwd()
    os.chdir(root)
    try:
        return spec.build_grid(
            ["flags/*.flags"],
            seeds=[0],
            runs_dir=runs_dir,
            resources=spec.Resources(gpus=1, cpus=1),
            train_command=(sys.executable, PROBE),
            report_command=(sys.executable, "-c", "open('report_ran', 'w')"),
        )
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def ran(ray_instance, tmp_path_factory):
    """(root, result) of the grid, run once; the random run's worker killed once."""
    dataset = helpers.tiny_dataset(tmp_path_factory)
    root = tmp_path_factory.mktemp("ray_grid")
    write_flagfiles(root, dataset)
    (root / "runs" / "retina_tiny_random").mkdir(parents=True)
    (root / "runs" / "retina_tiny_random" / "seed0.kill_once").write_text("")
    grid = tiny_grid(root)
    backend = ray_backend.RayBackend(retries=2, poll_seconds=0.2)
    result = runner.run_grid(grid, backend=backend, cwd=str(root))
    return root, result


def test_every_run_done_and_report_written(ran):
    root, result = ran
    assert result.ok, result.outcomes
    assert {o.name: o.status for o in result.outcomes} == {
        "imagenet_tiny/seed0": "done",
        "retina_tiny_imagenet/seed0": "done",
        "retina_tiny_random/seed0": "done",
    }
    assert (root / "report_ran").exists()


def test_runs_overlap_each_on_its_own_gpu(ran):
    root, _ = ran
    source = probe(root, "imagenet_tiny/seed0")
    other = probe(root, "retina_tiny_random/seed0")
    # The source and the first attempt of the random run both start before either ends.
    first_end = min(source[-1]["time"], other[1]["time"] if len(other) > 1 else 1e20)
    assert source[0]["time"] < first_end and other[0]["time"] < first_end
    assert {source[0]["cuda_visible_devices"], other[0]["cuda_visible_devices"]} == {"0", "1"}


def test_source_finishes_before_its_dependant_starts(ran):
    root, result = ran
    source = probe(root, "imagenet_tiny/seed0")
    dependant = probe(root, "retina_tiny_imagenet/seed0")
    assert source[-1]["event"] == "end"
    assert source[-1]["time"] < dependant[0]["time"]
    init = json.loads((root / "runs/retina_tiny_imagenet/seed0/init_report.json").read_text())
    assert "imagenet_tiny" in json.dumps(init)


def test_killed_run_is_retried_and_resumes_to_full_steps(ran):
    root, result = ran
    events = probe(root, "retina_tiny_random/seed0")
    assert [e["event"] for e in events] == ["start", "start", "end"]
    assert not (root / "runs" / "retina_tiny_random" / "seed0.kill_once").exists()
    results = json.loads((root / "runs/retina_tiny_random/seed0/results.json").read_text())
    assert results["train_steps"] == KILLED_STEPS and results["resumed"] is True
    outcome = {o.name: o for o in result.outcomes}["retina_tiny_random/seed0"]
    assert outcome.attempts == 2
    log = (root / "runs/retina_tiny_random/seed0" / spec.LOG_FILE).read_text()
    assert log.count("=== ") == 2 and "CUDA_VISIBLE_DEVICES=" in log


def test_second_grid_skips_finished_runs(ran):
    root, _ = ran
    again = runner.run_grid(
        tiny_grid(root), backend=ray_backend.RayBackend(), cwd=str(root), report=False
    )
    assert [o.status for o in again.outcomes] == ["finished"] * 3
    assert len(probe(root, "imagenet_tiny/seed0")) == 2


def test_cli_runs_on_the_instance_and_reports_failures(ray_instance, tmp_path):
    """The console command against the running instance (--ray_address): one run fails, the
    other finishes; the progress line counts them and the failure is named."""
    root = tmp_path
    (root / "flags" / "base").mkdir(parents=True)
    (root / "flags" / "retina_fake.flags").write_text("# the probe fakes the run\n")
    (root / "runs" / "retina_fake").mkdir(parents=True)
    (root / "runs" / "retina_fake" / "seed1.fail").write_text("")
    address = ray_instance.get_runtime_context().gcs_address
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "transfusion_tf.cli.grid",
            "--flagfiles=flags/*.flags",
            "--seeds=0,1",
            "--backend=ray",
            f"--ray_address={address}",
            "--gpus_per_run=0.5",
            "--cpus_per_run=0",
            "--retries=1",
            f"--train_command={sys.executable} {PROBE} --fake",
            f"--report_command={sys.executable} -c pass",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "1 of 2 runs failed: retina_fake/seed1 (exit 3" in proc.stderr
    assert "[1 done, 0 running, 1 failed, 0 queued]" in proc.stderr
    assert len(probe(root, "retina_fake/seed1")) == 2  # retried once
    assert (root / "runs" / "retina_fake" / "seed0" / "results.json").exists()
    assert probe(root, "retina_fake/seed0")[0]["cuda_visible_devices"] in ("0", "1")


def test_infeasible_resources_are_refused(ray_instance, tmp_path):
    run = spec.Run(
        name="x/seed0",
        flagfile="flags/x.flags",
        seed=0,
        workdir="runs/x/seed0",
        argv=(),
        resources=spec.Resources(gpus=3),
    )
    with pytest.raises(spec.GridError, match="the Ray cluster has 2 GPU"):
        ray_backend.RayBackend._check_resources(ray_instance, [run], private=True)
