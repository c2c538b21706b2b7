"""`transfusion-stats` and `transfusion-models` as users run them (real entry points)."""

import json
import os
import subprocess
import sys

import pytest

from transfusion_tf import config, models
from transfusion_tf.init import load_stats_file


def _run(module, *args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [sys.executable, "-m", f"transfusion_tf.cli.{module}", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("stats_source")
    model = models.build_model("cbr_tiny", num_tasks=2, image_size=32, widths=(4, 8))
    run = config.RunConfig(
        model=config.ModelConfig(name="cbr_tiny", num_tasks=2, image_size=32, widths=(4, 8))
    )
    (root / "weights").mkdir()
    (root / "config.json").write_text(run.to_json())
    model.save_weights(str(root / "weights" / "final.weights.h5"))
    return root, {v.path: v.numpy() for v in model.weights}


def test_stats_cli_writes_a_stats_file_and_rejects_bad_input(workdir, tmp_path):
    root, values = workdir
    output = tmp_path / "stats.json"
    done = _run("stats", "--model=cbr_tiny", f"--source_weights={root}", f"--output={output}")
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    stats = load_stats_file(str(output))
    kernel = stats.layers["conv2_conv"][0]
    assert kernel.shape == (5, 5, 4, 8)
    assert kernel.mean == pytest.approx(float(values["conv2_conv/kernel"].mean()), abs=1e-6)
    assert kernel.var == pytest.approx(float(values["conv2_conv/kernel"].var()), rel=1e-4)

    missing = _run("stats", "--model=cbr_tiny", "--source_weights=nowhere.h5", f"--output={output}")
    assert missing.returncode != 0
    assert "source weights not found: nowhere.h5" in missing.stderr
    assert "Traceback" not in missing.stderr
    both = _run("stats", "--model=cbr_tiny", f"--output={output}")
    assert both.returncode != 0 and "exactly one of --source_weights" in both.stderr


def test_models_cli_lists_counts_and_units():
    done = _run("models", "--json", "--names=cbr_small,cbr_large_tall", "--num_tasks=5")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["cbr_small"]["param_count"] == 2_115_301
    assert rows["cbr_small"]["paper_param_count"] == 2_108_672
    assert rows["cbr_large_tall"]["paper_param_count"] == 8_532_480
    assert [u["name"] for u in rows["cbr_large_tall"]["units"]][-1] == "conv5"
    bad = _run("models", "--names=vgg16")
    assert bad.returncode != 0 and "unknown models ['vgg16']" in bad.stderr
    assert "Traceback" not in bad.stderr
