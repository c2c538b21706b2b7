"""`transfusion-prepare --backend=ray` writes the local backend's dataset byte for byte, on a
real local Ray instance (2 CPUs), from synthetic layouts with corrupt and missing images."""

from __future__ import annotations

import json
import os

import pytest
import ray_helpers

from transfusion_tf.data import info as info_lib
from transfusion_tf.data import layouts
from transfusion_tf.data.converters import base, registry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_instance():
    with ray_helpers.local_ray() as ray:
        yield ray


def convert(layout: layouts.Layout, output_dir, *, input_path=None, **options) -> dict:
    settings = {"workers": 1, "progress": False, **options}
    return registry.prepare_dataset(
        source_format=layout.format,
        input_path=input_path or layout.input_path,
        output_dir=str(output_dir),
        options=base.ConvertOptions(**settings),
    )


def files(directory) -> dict[str, bytes]:
    return {n: (directory / n).read_bytes() for n in sorted(os.listdir(directory))}


@pytest.fixture(scope="module")
def chexpert(tmp_path_factory):
    """A CheXpert layout of 30 JPEGs, one truncated and one missing."""
    root = tmp_path_factory.mktemp("chexpert_raw")
    layout = layouts.write_layout(layout="chexpert", output_dir=str(root), num_examples=30)
    walk = os.walk(layout.input_path)
    jpegs = sorted(os.path.join(d, f) for d, _, fs in walk for f in fs if f.endswith(".jpg"))
    with open(jpegs[3], "r+b") as f:
        f.truncate(200)
    os.remove(jpegs[7])
    return layout


def test_chexpert_with_skips_equals_local(ray_instance, chexpert, tmp_path):
    local = convert(chexpert, tmp_path / "local", image_size=32, num_shards=3)
    ray = convert(chexpert, tmp_path / "ray", image_size=32, num_shards=3, backend="ray")
    assert ray == local
    assert len(local["skipped"]) == 2
    assert files(tmp_path / "ray") == files(tmp_path / "local")
    assert "train-00002-of-00003.tfrecord" in files(tmp_path / "ray")
    assert not [n for n in os.listdir(tmp_path / "ray") if n.startswith(".")]


def test_dicom_manifest_and_more_shards_than_examples(ray_instance, tmp_path):
    """16-bit DICOM decoded to PNG; the small splits keep only their non-empty shards."""
    layout = layouts.write_layout(
        layout="dicom", output_dir=str(tmp_path / "raw"), num_examples=16, image_size=32
    )
    local = convert(layout, tmp_path / "local", num_shards=5)
    ray = convert(layout, tmp_path / "ray", num_shards=5, backend="ray")
    assert ray == local and local["bit_depth"] == 16
    written = files(tmp_path / "ray")
    assert written == files(tmp_path / "local")
    valid = [n for n in written if n.startswith("valid-")]
    assert len(valid) == min(5, local["splits"]["valid"]["num_examples"])


def test_urls_in_and_out(ray_instance, chexpert, tmp_path):
    """file:// URLs go through tf.io.gfile on the driver and in the tasks, as gs:// would."""
    convert(chexpert, tmp_path / "local", image_size=32, num_shards=2)
    url_out = f"file://{tmp_path / 'url'}"
    info = convert(
        chexpert,
        url_out,
        image_size=32,
        num_shards=2,
        backend="ray",
        input_path=f"file://{chexpert.input_path}",
    )
    local = files(tmp_path / "local")
    remote = files(tmp_path / "url")
    assert {n: b for n, b in remote.items() if n != info_lib.DATASET_INFO_FILE} == {
        n: b for n, b in local.items() if n != info_lib.DATASET_INFO_FILE
    }
    local_info = json.loads(local[info_lib.DATASET_INFO_FILE])
    assert info["conversion"]["input"] == f"file://{chexpert.input_path}"
    # Only the input's spelling differs: the URL, and the skipped files named by URL.
    info["conversion"]["input"] = local_info["conversion"]["input"]
    for item in info["skipped"]:
        item["path"] = item["path"].removeprefix("file://")
    assert info == local_info
    assert info_lib.load_dataset_info(url_out)["splits"] == local_info["splits"]
    assert len(info_lib.list_shards(url_out, "train")) == 2


def test_strict_leaves_no_shards(ray_instance, chexpert, tmp_path):
    with pytest.raises(base.StrictModeError, match="skipped under --strict"):
        convert(chexpert, tmp_path / "ray", image_size=32, backend="ray", strict=True)
    assert not (tmp_path / "ray").exists()  # the folder it created for nothing is removed


def test_local_backend_refuses_a_url_output(chexpert, tmp_path):
    with pytest.raises(base.ConversionError, match="write to a URL with --backend=ray"):
        convert(chexpert, f"file://{tmp_path}/x", image_size=32)


def test_synthetic_format_is_local_only(tmp_path):
    with pytest.raises(base.ConversionError, match="renders its images on this machine"):
        registry.prepare_dataset(
            source_format="synthetic",
            input_path="",
            output_dir=str(tmp_path),
            options=base.ConvertOptions(backend="ray"),
        )
    with pytest.raises(ValueError, match="backend must be one of"):
        base.ConvertOptions(backend="spark")
