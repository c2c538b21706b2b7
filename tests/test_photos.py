"""The `photo_patches` source task: regions of scikit-learn's bundled photographs."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from transfusion_tf.data import info as info_lib
from transfusion_tf.data import photos, schema


def test_classes_are_the_regions_of_both_photographs():
    rows, cols = photos.GRID
    assert len(photos.CLASSES) == len(photos.PHOTOS) * rows * cols == 24
    assert len(set(photos.CLASSES)) == len(photos.CLASSES)
    for image in photos.photographs():
        assert image.shape == (427, 640, 3) and image.dtype == np.float32
        assert image.min() >= 0.0 and image.max() <= 1.0


def test_patch_is_deterministic_and_comes_from_its_region():
    def patch(seed, cls):
        return photos.photo_patch(np.random.default_rng(seed), size=24, cls=cls)

    a = patch(0, 5)
    assert a.shape == (24, 24, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, patch(0, 5))
    assert not np.array_equal(a, patch(1, 5))

    # Sky (top row of the temple photograph) and the flower's centre differ in texture: the
    # mean gradient energy of many crops tells the two regions apart.
    def energy(cls):
        crops = [patch(s, cls).astype(np.float32).mean(axis=2) for s in range(40)]
        return np.mean([np.abs(np.diff(c, axis=1)).mean() for c in crops])

    sky, petals = energy(0), energy(12 + 5)
    assert sky != pytest.approx(petals, rel=0.1)


@pytest.mark.parametrize("cls", [-1, 24])
def test_patch_rejects_unknown_class(cls):
    with pytest.raises(ValueError, match="class must be 0..23"):
        photos.photo_patch(np.random.default_rng(0), size=16, cls=cls)


def test_writes_a_single_label_dataset(tmp_path):
    out = str(tmp_path / "photos")
    info = photos.write_photo_dataset(output_dir=out, num_examples=96, image_size=16, seed=3)
    assert info["tasks"] == list(photos.CLASSES)
    assert info["source_format"] == photos.SOURCE_FORMAT and info_lib.is_single_label(info)
    assert sum(s["num_examples"] for s in info["splits"].values()) == 96
    assert info_lib.load_dataset_info(out)["photo_patches"]["seed"] == 3
    for split in ("train", "valid", "test"):
        for record in tf.data.TFRecordDataset(info_lib.split_files(out, split)).take(5):
            parsed = schema.parse_example(record, num_tasks=len(photos.CLASSES))
            assert float(tf.reduce_sum(parsed["labels"])) == 1.0
            image = tf.io.decode_png(parsed["image_bytes"])
            assert tuple(image.shape) == (16, 16, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_examples": 10, "image_size": 16}, "num_examples must be >= 24"),
        ({"num_examples": 48, "image_size": 4}, "image_size must be >= 8"),
    ],
)
def test_bad_sizes_name_the_argument_and_write_nothing(tmp_path, kwargs, message):
    out = tmp_path / "photos"
    with pytest.raises(ValueError, match=message):
        photos.write_photo_dataset(output_dir=str(out), **kwargs)
    assert not out.exists()
