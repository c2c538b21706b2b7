"""DICOM reading (rescale, window, MONOCHROME1, 16-bit) and the folder and CSV-manifest
converters, on the DICOM layout and on PNG class folders; CSV-manifest bad input."""

import csv
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from transfusion_tf.data import decode, layouts, pipeline, schema, synthetic
from transfusion_tf.data import info as info_lib
from transfusion_tf.data.converters import base, dicom, registry

NUM_EXAMPLES = 18  # 6 patients x 3 studies


def read_split(dataset_dir, split):
    """example id -> parsed example (numpy) of one split of a prepared dataset."""
    num_tasks = len(info_lib.load_dataset_info(dataset_dir)["tasks"])
    files = info_lib.split_files(dataset_dir, split)
    ds = tf.data.TFRecordDataset(files).map(lambda s: schema.parse_example(s, num_tasks=num_tasks))
    return {ex["example_id"].decode(): ex for ex in ds.as_numpy_iterator()}


def read_all(dataset_dir):
    info = info_lib.load_dataset_info(dataset_dir)
    out = {}
    for split in info["splits"]:
        for example_id, ex in read_split(dataset_dir, split).items():
            out[example_id] = (split, ex)
    return out


def convert(source_format, path, out, **options):
    return registry.prepare_dataset(
        source_format=source_format,
        input_path=str(path),
        output_dir=str(out),
        options=base.ConvertOptions(workers=1, progress=False, **options),
    )


@pytest.fixture(scope="module")
def dicom_raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom_raw")
    layout = layouts.write_layout(
        layout="dicom", output_dir=str(root), num_examples=NUM_EXAMPLES, image_size=32, seed=4
    )
    assert layout.format == "csv" and layout.alternatives == (("folder", str(root / "images")),)
    return root


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_read_dicom_recovers_the_image(tmp_path, variant):
    image = synthetic.sample_cxr(0, seed=0, size=24).image
    ds, stored = layouts.dicom_dataset(image, patient_id="p7", variant=variant, uid_seed="t")
    path = str(tmp_path / "x.dcm")
    ds.save_as(path, enforce_file_format=True)
    out = dicom.read_dicom(path)
    assert out.shape == (24, 24, 1)
    assert out.dtype == (np.uint8 if variant == 2 else np.uint16)
    if variant == 1:  # MONOCHROME1: stored values are inverted, the display is not
        assert np.corrcoef(stored.ravel(), image.ravel())[0, 1] < -0.99
    unit = out[..., 0] / np.iinfo(out.dtype).max
    np.testing.assert_allclose(unit, image / 255.0, atol=0.01)
    assert dicom.read_patient_id(path) == "p7"


def test_read_dicom_applies_a_voi_lut(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    image = synthetic.sample_cxr(1, seed=0, size=24).image
    ds, _ = layouts.dicom_dataset(image, patient_id="p", variant=1, uid_seed="lut")
    del ds.WindowCenter, ds.WindowWidth
    ds.RescaleIntercept = "0"
    lut = Dataset()
    lut.add_new("LUTDescriptor", "US", [4096, 0, 16])
    ramp = np.round(np.linspace(0, 65535, 4096))
    lut.add_new("LUTData", "OW", ramp.astype("<u2").tobytes())
    ds.VOILUTSequence = Sequence([lut])
    ds.save_as(str(tmp_path / "lut.dcm"), enforce_file_format=True)
    out = dicom.read_dicom(str(tmp_path / "lut.dcm"))
    assert out.dtype == np.uint16
    np.testing.assert_allclose(out[..., 0] / 65535.0, image / 255.0, atol=0.01)


def test_unreadable_dicom_files(tmp_path):
    (tmp_path / "junk.dcm").write_bytes(b"\x00" * 200)
    with pytest.raises(dicom.DicomError, match=r"junk\.dcm"):
        dicom.read_dicom(str(tmp_path / "junk.dcm"))
    image = np.zeros((8, 8), np.uint8)
    ds, _ = layouts.dicom_dataset(image, patient_id="p", variant=0, uid_seed="u")
    del ds.PixelData
    ds.save_as(str(tmp_path / "nopixels.dcm"), enforce_file_format=True)
    with pytest.raises(dicom.DicomError, match=r"nopixels\.dcm: DICOM file has no pixel data"):
        dicom.read_dicom(str(tmp_path / "nopixels.dcm"))
    assert dicom.read_patient_id(str(tmp_path / "junk.dcm")) is None


def test_csv_manifest_of_dicom_files(dicom_raw, tmp_path):
    info = convert("csv", dicom_raw / "manifest.csv", tmp_path, uncertain_policy="ones")
    assert info["tasks"] == list(layouts.DICOM_TASKS)
    assert info["image_encoding"] == "png" and info["skipped"] == []
    with open(dicom_raw / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    got = read_all(str(tmp_path))
    assert len(got) == len(rows) == NUM_EXAMPLES
    patient_split = {}
    for i, row in enumerate(rows):
        split, ex = got[row["path"].removesuffix(".dcm")]
        assert ex["patient_id"].decode() == row["patient_id"]
        assert patient_split.setdefault(row["patient_id"], split) == split
        for t, task in enumerate(info["tasks"]):
            cell = row[task]
            want = (0.0, 1.0) if cell == "" else (float(float(cell) != 0.0), 1.0)
            assert (ex["labels"][t], ex["mask"][t]) == want
        pixels = decode.decode_image(ex["image_bytes"]).numpy()
        assert pixels.dtype == (np.uint8 if i % 3 == 2 else np.uint16)  # 8-bit files stay 8-bit
    assert set(patient_split.values()) == {"train", "valid", "test"}
    # 16-bit and 8-bit PNGs side by side go through the input pipeline.
    ds = pipeline.build_dataset(
        dataset_dir=str(tmp_path),
        split="train",
        batch_size=32,
        image_size=32,
        channels=1,
        training=False,
    )
    batch = next(iter(ds.as_numpy_iterator()))
    assert batch["image"].shape == (info["splits"]["train"]["num_examples"], 32, 32, 1)
    for image, example_id in zip(batch["image"], batch["example_id"], strict=True):
        original = got[example_id.decode()][1]
        pixels = decode.decode_image(original["image_bytes"]).numpy()
        np.testing.assert_allclose(
            image[..., 0], pixels[..., 0] / np.iinfo(pixels.dtype).max, atol=1e-3
        )


def test_folder_of_dicom_files_takes_patient_ids_from_the_tags(dicom_raw, tmp_path):
    info = convert("folder", dicom_raw / "images", tmp_path, valid_fraction=0.34, test_fraction=0)
    assert info["tasks"] == sorted(os.listdir(dicom_raw / "images"))
    got = read_all(str(tmp_path))
    assert len(got) == NUM_EXAMPLES
    splits_of = {}
    for example_id, (split, ex) in got.items():
        cls = example_id.split("/")[0]
        assert ex["labels"].tolist() == [float(t == cls) for t in info["tasks"]]
        patient = ex["patient_id"].decode()
        assert os.path.basename(example_id).startswith(patient + "_study")
        splits_of.setdefault(patient, set()).add(split)
    assert all(len(s) == 1 for s in splits_of.values()) and len(splits_of) == 6


def test_unreadable_dicom_is_skipped(dicom_raw, tmp_path):
    root = tmp_path / "images"
    shutil.copytree(dicom_raw / "images", root)
    victim = sorted(root.rglob("*.dcm"))[0]
    victim.write_bytes(b"DICM but not really" * 4)
    info = convert("folder", root, tmp_path / "out")
    assert [s["path"] for s in info["skipped"]] == [str(victim)]
    assert info["skipped"][0]["reason"].startswith("unreadable DICOM")
    assert sum(s["num_examples"] for s in info["splits"].values()) == NUM_EXAMPLES - 1


@pytest.fixture(scope="module")
def folder_raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder_raw")
    layouts.write_layout(layout="folder", output_dir=str(root), num_examples=24, image_size=16)
    return root


def test_class_folders_and_split_folders(folder_raw, tmp_path):
    info = convert("folder", folder_raw, tmp_path / "a", test_fraction=0.0, valid_fraction=0.25)
    assert info["tasks"] == sorted(synthetic.NATURAL_CLASSES)
    assert info["single_label"] is True  # one class folder per image: softmax under --loss=auto
    assert {s: v["num_examples"] for s, v in info["splits"].items()} == {"train": 18, "valid": 6}
    for split in info["splits"]:
        for example_id, ex in read_split(str(tmp_path / "a"), split).items():
            cls = example_id.split("/")[0]
            assert ex["labels"].tolist() == [float(t == cls) for t in info["tasks"]]
    # root/<split>/<class>/... keeps the given splits (val -> valid).
    split_root = tmp_path / "split_root"
    for i, path in enumerate(sorted(folder_raw.rglob("*.png"))):
        split = "train" if i % 4 else "val"
        target = split_root / split / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    info = convert("folder", split_root, tmp_path / "b", test_fraction=0.0)
    assert {s: v["num_examples"] for s, v in info["splits"].items()} == {"train": 18, "valid": 6}


def test_empty_folder_and_unknown_class_task(folder_raw, tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "cls" / "notes.txt").write_text("no images here")
    with pytest.raises(base.ConversionError, match=r"empty: no images found"):
        convert("folder", tmp_path / "empty", tmp_path / "out")
    with pytest.raises(base.ConversionError, match=r"unknown task\(s\) \['dog'\]"):
        convert("folder", folder_raw, tmp_path / "out", tasks=("dog",))


def _manifest(tmp_path, lines):
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_manifest_options_and_bad_input(folder_raw, tmp_path):
    images = sorted(folder_raw.rglob("*.png"))[:8]
    shutil.copytree(folder_raw, tmp_path / "imgs")
    rel = [os.path.relpath(p, folder_raw) for p in images]
    lines = ["file,subject,split,a,b"] + [
        f"imgs/{r},s{i // 2},{'train' if i < 6 else 'val'},{i % 2},{'-1' if i == 3 else ''}"
        for i, r in enumerate(rel)
    ]
    path = _manifest(tmp_path, lines)
    info = convert(
        "csv",
        path,
        tmp_path / "out",
        path_column="file",
        patient_column="subject",
        label_columns=("a", "b"),
        blank_policy="ignore",
        test_fraction=0.0,
    )
    assert {s: v["num_examples"] for s, v in info["splits"].items()} == {"train": 6, "valid": 2}
    assert info["splits"]["train"]["labelled"] == {"a": 6, "b": 0}  # blank ignored, -1 ignored
    got = read_all(str(tmp_path / "out"))
    assert {ex["patient_id"].decode() for _, ex in got.values()} == {"s0", "s1", "s2", "s3"}
    path.write_text(path.read_text().replace("subject", "who", 1))
    with pytest.raises(base.ConversionError, match=r"manifest\.csv: missing.*\['subject'\]"):
        convert("csv", path, tmp_path / "x", path_column="file", patient_column="subject")
    bad = [
        (["path,a", "imgs/" + rel[0] + ",7"], r"manifest\.csv:2: column 'a'.*'7'"),
        (["path,a,split", "imgs/" + rel[0] + ",1,dev"], r"manifest\.csv:2: unknown split 'dev'"),
        (["path"] + ["imgs/" + r for r in rel], "no label columns"),
    ]
    for lines, message in bad:
        with pytest.raises(base.ConversionError, match=message):
            convert("csv", _manifest(tmp_path, lines), tmp_path / "x")
    outside = tmp_path.parent / "outside.png"
    shutil.copy(images[0], outside)
    lines = ["path,a"] + [f"imgs/{r},{i % 2}" for i, r in enumerate(rel)]
    lines += ["imgs/missing.png,1", "../outside.png,1", f"{outside},0"]
    manifest = _manifest(tmp_path, lines)
    info = convert("csv", manifest, tmp_path / "y", valid_fraction=0.2, test_fraction=0.0)
    reasons = sorted(s["reason"] for s in info["skipped"])
    assert reasons == ["missing file"] + ["path escapes the dataset root"] * 2
    assert sum(v["num_examples"] for v in info["splits"].values()) == 8
