"""The grid as data (grid/spec.py) and its local backend (grid/local.py), with a fake trainer
(tests/grid_probe.py --fake) that records when it ran and which GPUs it saw."""

from __future__ import annotations

import json
import os
import sys

import pytest

from transfusion_tf.grid import local, runner, spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = os.path.join(ROOT, "tests", "grid_probe.py")
FAKE = (sys.executable, PROBE, "--fake")


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A tree with flags/base, a source flagfile and two experiments (one loads the source)."""
    (tmp_path / "flags" / "base").mkdir(parents=True)
    (tmp_path / "flags" / "base" / "cbr.flags").write_text("--model=cbr_tiny\n")
    (tmp_path / "flags" / "imagenet_cbr.flags").write_text("--flagfile=flags/base/cbr.flags\n")
    (tmp_path / "flags" / "retina_cbr_imagenet.flags").write_text(
        "# transfer\n--flagfile=flags/base/cbr.flags\n--source_weights=runs/imagenet_cbr/seed0\n"
    )
    (tmp_path / "flags" / "retina_cbr_random.flags").write_text("--flagfile=flags/base/cbr.flags\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def probe(root, name: str) -> list[dict]:
    path = root / "runs" / name / "probe.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_name(grid: spec.Grid) -> dict[str, spec.Run]:
    return {r.name: r for r in grid.runs}


def test_grid_is_flagfile_by_seed_sources_first_once(repo):
    grid = spec.build_grid(["flags/*.flags"], seeds=[3, 4], extra=["--dataset_dir=/d"])
    assert [r.name for r in grid.runs] == [
        "imagenet_cbr/seed3",
        "retina_cbr_imagenet/seed3",
        "retina_cbr_imagenet/seed4",
        "retina_cbr_random/seed3",
        "retina_cbr_random/seed4",
    ]
    run = by_name(grid)["retina_cbr_random/seed4"]
    assert run.workdir == os.path.join("runs", "retina_cbr_random", "seed4")
    assert run.argv == (
        "--flagfile=flags/retina_cbr_random.flags",
        "--seed=4",
        "--workdir=runs/retina_cbr_random/seed4",
        "--dataset_dir=/d",
    )
    assert run.log_path == os.path.join(run.workdir, spec.LOG_FILE)
    assert grid.commands()[-1] == [
        "transfusion-report",
        "--workdirs=runs/*/seed*",
        "--output_dir=runs/report",
    ]


def test_runs_that_load_a_source_depend_on_it(repo):
    grid = spec.build_grid(["flags/*.flags"], seeds=[0])
    runs = by_name(grid)
    # The flagfile names seed0; the grid's only seed is 0, so the source run is in the grid.
    assert runs["retina_cbr_imagenet/seed0"].depends_on == ("imagenet_cbr/seed0",)
    assert runs["retina_cbr_random/seed0"].depends_on == ()
    # Without the source flagfile the path is still read, but nothing to wait for.
    alone = spec.build_grid(["flags/retina_*.flags"], seeds=[0])
    assert by_name(alone)["retina_cbr_imagenet/seed0"].depends_on == ()


def test_source_weights_are_read_under_runs_dir(repo):
    grid = spec.build_grid(["flags/*.flags"], seeds=[0], runs_dir="/scratch/r")
    run = by_name(grid)["retina_cbr_imagenet/seed0"]
    assert "--source_weights=/scratch/r/imagenet_cbr/seed0" in run.argv
    assert run.depends_on == ("imagenet_cbr/seed0",)
    # A --source_weights after `--` wins over the flagfile's, and is no grid run.
    other = spec.build_grid(["flags/*.flags"], seeds=[0], extra=["--source_weights=/w.h5"])
    assert by_name(other)["retina_cbr_imagenet/seed0"].depends_on == ()


def test_flag_value_follows_nested_flagfiles(repo):
    (repo / "flags" / "base" / "src.flags").write_text("--source_weights=a\n")
    (repo / "flags" / "x.flags").write_text(
        "--flagfile=flags/base/src.flags\n--source_weights=b\n--flagfile=flags/base/cbr.flags\n"
    )
    assert spec.flag_value("flags/x.flags", "source_weights") == "b"
    assert spec.flag_value("flags/x.flags", "model") == "cbr_tiny"
    (repo / "flags" / "loop.flags").write_text("--flagfile=flags/loop.flags\n")
    with pytest.raises(spec.GridError, match="includes itself"):
        spec.flag_value("flags/loop.flags", "model")


def test_bad_grids(repo):
    with pytest.raises(spec.GridError, match="matches no .flags file"):
        spec.build_grid(["flags/nothing_*.flags"], seeds=[0])
    with pytest.raises(spec.GridError, match="--seeds is empty"):
        spec.build_grid(["flags/*.flags"], seeds=[])
    with pytest.raises(spec.GridError, match="whole number"):
        spec.Resources(gpus=1.5)
    with pytest.raises(spec.GridError, match="max_parallel"):
        local.LocalBackend(max_parallel=0)


def test_results_file_is_the_trainers():
    from transfusion_tf import workdir

    assert spec.RESULTS_FILE == workdir.RESULTS_FILE


def fake_grid(patterns=("flags/retina_cbr_random.flags",), seeds=(0, 1), **resources):
    return spec.build_grid(
        list(patterns),
        seeds=list(seeds),
        resources=spec.Resources(**resources),
        train_command=FAKE,
        report_command=(sys.executable, "-c", "open('report_ran', 'w')"),
    )


def test_max_parallel_runs_overlap_and_pin_gpus(repo):
    backend = local.LocalBackend(max_parallel=2, gpu_ids=["4", "7"], poll_seconds=0.05)
    result = runner.run_grid(fake_grid(gpus=1), backend=backend)
    assert result.ok and (repo / "report_ran").exists()
    a, b = probe(repo, "retina_cbr_random/seed0"), probe(repo, "retina_cbr_random/seed1")
    assert max(a[0]["time"], b[0]["time"]) < min(a[1]["time"], b[1]["time"])
    assert {a[0]["cuda_visible_devices"], b[0]["cuda_visible_devices"]} == {"4", "7"}
    log = (repo / "runs" / "retina_cbr_random" / "seed0" / spec.LOG_FILE).read_text()
    assert log.startswith("=== ") and "CUDA_VISIBLE_DEVICES=" in log


def test_one_at_a_time_by_default(repo):
    runner.run_grid(fake_grid(), backend=local.LocalBackend(poll_seconds=0.05))
    a, b = probe(repo, "retina_cbr_random/seed0"), probe(repo, "retina_cbr_random/seed1")
    assert a[1]["time"] <= b[0]["time"]
    assert a[0]["cuda_visible_devices"] == os.environ.get("CUDA_VISIBLE_DEVICES")


def test_fractional_gpus_share_a_device(repo):
    backend = local.LocalBackend(max_parallel=4, gpu_ids=["0"], poll_seconds=0.05)
    runner.run_grid(fake_grid(seeds=(0, 1), gpus=0.5), backend=backend, report=False)
    seen = {probe(repo, f"retina_cbr_random/seed{s}")[0]["cuda_visible_devices"] for s in (0, 1)}
    assert seen == {"0"}
    with pytest.raises(spec.GridError, match="has 1 GPU"):
        runner.run_grid(fake_grid(seeds=(5,), gpus=2), backend=backend, report=False)


def test_device_pool():
    pool = local.DevicePool(["0", "1"])
    assert pool.take(0.25) == ["0"] and pool.take(0.5) == ["0"]
    assert pool.take(1) == ["1"]
    assert pool.take(0.5) is None and pool.take(0.25) == ["0"]
    pool.give(["1"], 1)
    assert pool.take(2) is None and pool.take(1) == ["1"]


def test_sources_finish_before_dependants_start(repo):
    backend = local.LocalBackend(max_parallel=3, poll_seconds=0.05)
    grid = fake_grid(patterns=("flags/*.flags",), seeds=(0,))
    assert runner.run_grid(grid, backend=backend, report=False).ok
    source = probe(repo, "imagenet_cbr/seed0")
    assert source[1]["time"] <= probe(repo, "retina_cbr_imagenet/seed0")[0]["time"]


def test_failed_run_is_retried_and_never_stops_the_others(repo):
    (repo / "runs" / "imagenet_cbr").mkdir(parents=True)
    (repo / "runs" / "imagenet_cbr" / "seed0.fail").write_text("")
    backend = local.LocalBackend(max_parallel=2, retries=1, poll_seconds=0.05)
    grid = fake_grid(patterns=("flags/*.flags",), seeds=(0,))
    result = runner.run_grid(grid, backend=backend)
    outcomes = {o.name: o for o in result.outcomes}
    assert outcomes["imagenet_cbr/seed0"].status == "failed"
    assert outcomes["imagenet_cbr/seed0"].attempts == 2
    assert len(probe(repo, "imagenet_cbr/seed0")) == 2
    assert outcomes["retina_cbr_imagenet/seed0"].reason == (
        "not started: its source run imagenet_cbr/seed0 failed"
    )
    assert not (repo / "runs" / "retina_cbr_imagenet").exists()
    assert outcomes["retina_cbr_random/seed0"].status == "done"
    assert not result.ok and (repo / "report_ran").exists()
    # A second grid starts only the unfinished runs.
    (repo / "runs" / "imagenet_cbr" / "seed0.fail").unlink()
    again = runner.run_grid(grid, backend=backend, report=False)
    assert [o.status for o in again.outcomes] == ["done", "done", "finished"]


def test_visible_gpus_from_the_environment(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert local.visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert local.visible_gpus() == []
