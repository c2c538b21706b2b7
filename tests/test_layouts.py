"""Raw public layouts written from the synthetic generators: file names, CSV columns, DICOM tags,
seed determinism, bad arguments (no TensorFlow needed)."""

import csv
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest

from transfusion_tf.data import layouts


def _files(root):
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, names in os.walk(root) for f in names
    )


def test_every_layout_writes_its_files(tmp_path):
    expected = {
        "chexpert": ("CheXpert-v1.0-small/train.csv", ".jpg"),
        "eyepacs": ("trainLabels.csv", ".jpeg"),
        "aptos": ("train.csv", ".png"),
        "medmnist": ("retinamnist.npz", ".npz"),
        "folder": (None, ".png"),
        "dicom": ("manifest.csv", ".dcm"),
    }
    assert set(expected) == set(layouts.LAYOUTS)
    for name, (index_file, ext) in expected.items():
        root = tmp_path / name
        layout = layouts.write_layout(
            layout=name, output_dir=str(root), num_examples=6, image_size=16
        )
        files = _files(root)
        if index_file:
            assert index_file in files, name
        if name != "medmnist":
            assert sum(f.endswith(ext) for f in files) == layout.num_images == 6, name
        assert os.path.exists(layout.input_path)


def test_layouts_are_deterministic_per_seed(tmp_path):
    a = layouts.write_layout(layout="eyepacs", output_dir=str(tmp_path / "a"), num_examples=4)
    b = layouts.write_layout(layout="eyepacs", output_dir=str(tmp_path / "b"), num_examples=4)
    c = layouts.write_layout(
        layout="eyepacs", output_dir=str(tmp_path / "c"), num_examples=4, seed=1
    )
    name = sorted(os.listdir(tmp_path / "a" / "train"))[0]
    data = [Path(x.input_path, "train", name).read_bytes() for x in (a, b, c)]
    assert data[0] == data[1] != data[2]


def test_eyepacs_and_aptos_csvs(tmp_path):
    layouts.write_layout(layout="eyepacs", output_dir=str(tmp_path / "e"), num_examples=4)
    with open(tmp_path / "e" / "trainLabels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == ["10_left", "10_right", "11_left", "11_right"]
    assert all(r["level"] in "01234" for r in rows)
    layouts.write_layout(layout="aptos", output_dir=str(tmp_path / "a"), num_examples=3)
    with open(tmp_path / "a" / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(len(r["id_code"]) == 12 for r in rows)
    assert all((tmp_path / "a" / "train_images" / f"{r['id_code']}.png").exists() for r in rows)


def test_dicom_files_carry_the_tags_converters_use(tmp_path):
    layouts.write_layout(layout="dicom", output_dir=str(tmp_path), num_examples=3, image_size=16)
    with open(tmp_path / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    seen = []
    for i, row in enumerate(rows):
        ds = pydicom.dcmread(tmp_path / row["path"])
        assert ds.PatientID == row["patient_id"]
        seen.append((ds.PhotometricInterpretation, int(ds.BitsStored)))
        if i < 2:
            assert float(ds.RescaleIntercept) == -1024 and float(ds.WindowWidth) == 4096
        assert ds.pixel_array.shape == (16, 16)
    assert seen == [("MONOCHROME2", 12), ("MONOCHROME1", 12), ("MONOCHROME2", 8)]


def test_medmnist_arrays(tmp_path):
    layout = layouts.write_layout(layout="medmnist", output_dir=str(tmp_path), num_examples=10)
    with np.load(layout.input_path, allow_pickle=False) as npz:
        assert npz["train_images"].shape == (7, 64, 64, 3) and npz["val_labels"].shape == (1, 1)
        assert npz["test_images"].dtype == np.uint8
    with np.load(layout.alternatives[0][1], allow_pickle=False) as npz:
        assert npz["train_images"].shape == (7, 64, 64) and npz["test_labels"].shape == (2, 14)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layout": "dicomdir"}, "unknown layout 'dicomdir'"),
        ({"num_examples": 0}, "num_examples"),
        ({"image_size": 4}, "image_size"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    args = {"layout": "folder", "output_dir": str(tmp_path), "num_examples": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        layouts.write_layout(**args)
