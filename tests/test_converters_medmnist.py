"""MedMNIST converter on `.npz` files in the MedMNIST layout: multi-class (RetinaMNIST-like) and
multi-label (ChestMNIST-like) labels, source splits, lossless pixels, and malformed archives
(pickle-needing object arrays, missing or mismatched arrays, bad labels, not an archive)."""

import numpy as np
import pytest
import tensorflow as tf

from transfusion_tf.data import decode, layouts, schema
from transfusion_tf.data import info as info_lib
from transfusion_tf.data.converters import base, medmnist, registry

NUM_EXAMPLES = 20  # 14 train, 2 val, 4 test


def read_split(dataset_dir, split):
    """example id -> parsed example (numpy) of one split of a prepared dataset."""
    num_tasks = len(info_lib.load_dataset_info(dataset_dir)["tasks"])
    files = info_lib.split_files(dataset_dir, split)
    ds = tf.data.TFRecordDataset(files).map(lambda s: schema.parse_example(s, num_tasks=num_tasks))
    return {ex["example_id"].decode(): ex for ex in ds.as_numpy_iterator()}


def convert(path, out, **options):
    return registry.prepare_dataset(
        source_format="medmnist",
        input_path=str(path),
        output_dir=str(out),
        options=base.ConvertOptions(workers=1, progress=False, **options),
    )


@pytest.fixture(scope="module")
def npz_files(tmp_path_factory):
    layout = layouts.write_layout(
        layout="medmnist",
        output_dir=str(tmp_path_factory.mktemp("medmnist_raw")),
        num_examples=NUM_EXAMPLES,
        image_size=28,
        seed=3,
    )
    return layout.input_path, layout.alternatives[0][1]


def test_multiclass_npz(npz_files, tmp_path):
    retina, _ = npz_files
    info = convert(retina, tmp_path)
    with np.load(retina) as npz:
        arrays = dict(npz)
    num_classes = int(max(arrays[f"{s}_labels"].max() for s in ("train", "val", "test"))) + 1
    assert info["tasks"] == [f"class_{k}" for k in range(num_classes)]
    assert info["single_label"] is True
    for key, split in (("train", "train"), ("val", "valid"), ("test", "test")):
        examples = read_split(str(tmp_path), split)
        assert (
            len(examples) == len(arrays[f"{key}_images"]) == info["splits"][split]["num_examples"]
        )
        for i in range(len(examples)):
            ex = examples[f"{split}-{i:06d}"]
            one_hot = np.eye(num_classes)[arrays[f"{key}_labels"][i, 0]]
            assert ex["labels"].tolist() == one_hot.tolist()
            pixels = decode.decode_image(ex["image_bytes"]).numpy()
            np.testing.assert_array_equal(pixels, arrays[f"{key}_images"][i])  # lossless


def test_multilabel_npz_uses_the_chestmnist_names(npz_files, tmp_path):
    _, chest = npz_files
    info = convert(chest, tmp_path, tasks=("effusion", "cardiomegaly"))
    assert info["tasks"] == ["effusion", "cardiomegaly"]
    assert info["single_label"] is False
    with np.load(chest) as npz:
        labels, images = npz["test_labels"], npz["test_images"]
    columns = [medmnist.CHESTMNIST_TASKS.index(t) for t in info["tasks"]]
    examples = read_split(str(tmp_path), "test")
    for i in range(len(labels)):
        ex = examples[f"test-{i:06d}"]
        assert ex["labels"].tolist() == labels[i, columns].astype(float).tolist()
        pixels = decode.decode_image(ex["image_bytes"]).numpy()
        assert pixels.shape == (28, 28, 1)
        np.testing.assert_array_equal(pixels[..., 0], images[i])


def test_binary_labels_give_one_task_and_missing_splits_are_drawn(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "pneumoniamnist.npz"
    np.savez(
        path,
        train_images=rng.integers(0, 255, (30, 8, 8), dtype=np.uint8),
        train_labels=(np.arange(30) % 2).reshape(-1, 1),
    )
    info = convert(path, tmp_path / "out", valid_fraction=0.2, test_fraction=0.1)
    assert info["tasks"] == ["class_1"] and info["single_label"] is False
    counts = {s: v["num_examples"] for s, v in info["splits"].items()}
    assert counts == {"train": 21, "valid": 6, "test": 3}
    assert sum(v["positives"]["class_1"] for v in info["splits"].values()) == 15


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_object_array_needing_pickle_is_refused(tmp_path):
    images = np.zeros((2, 4, 4), np.uint8)
    labels = np.array([[0], ["x"]], dtype=object)
    path = _write(tmp_path / "evil.npz", train_images=images, train_labels=labels)
    with pytest.raises(base.ConversionError, match=r"evil\.npz: array 'train_labels'.*pickle"):
        convert(path, tmp_path / "out")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"val_images": np.zeros((2, 4, 4), np.uint8)}, "missing array 'val_labels'"),
        ({"train_labels": np.zeros((3, 1))}, "3 rows"),
        ({"train_labels": np.array([[0], [-1]])}, "unknown label value"),
        ({"train_labels": np.array([[0, 2], [1, 0]])}, "unknown label value 2"),
        ({"train_images": np.zeros((2, 4, 4), np.float32)}, "must be uint8"),
        ({"train_images": np.zeros((2, 4, 4, 2), np.uint8)}, "2 channels"),
    ],
)
def test_malformed_arrays(tmp_path, arrays, message):
    base_arrays = {"train_images": np.zeros((2, 4, 4), np.uint8), "train_labels": np.zeros((2, 1))}
    path = _write(tmp_path / "bad.npz", **{**base_arrays, **arrays})
    with pytest.raises(base.ConversionError, match=rf"bad\.npz.*{message}"):
        convert(path, tmp_path / "out")


def test_not_an_archive_missing_file_and_no_train_arrays(tmp_path):
    (tmp_path / "text.npz").write_bytes(b"hello, not a zip")
    with pytest.raises(base.ConversionError, match=r"text\.npz: unreadable"):
        convert(tmp_path / "text.npz", tmp_path / "out")
    with pytest.raises(base.ConversionError, match=r"nope\.npz: MedMNIST .npz file not found"):
        convert(tmp_path / "nope.npz", tmp_path / "out")
    val_only = {"val_images": np.zeros((1, 4, 4), np.uint8), "val_labels": np.zeros((1, 1))}
    path = _write(tmp_path / "val_only.npz", **val_only)
    with pytest.raises(base.ConversionError, match="missing arrays 'train_images'"):
        convert(path, tmp_path / "out")
