"""Tests of the tf.data input pipeline (SPEC D3, R)."""

import os

import numpy as np
import pytest
import tensorflow as tf

from transfusion_tf.data import info as info_lib
from transfusion_tf.data import pipeline, preprocess, schema, synthetic, writer
from transfusion_tf.data.encode import encode_jpeg, encode_png


@pytest.fixture(scope="module")
def fundus_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("fundus4"))
    synthetic.write_synthetic_dataset(
        kind="fundus", output_dir=out, num_examples=80, image_size=24, num_shards=4, seed=3
    )
    return out


def _build(dataset_dir, **kwargs):
    args = dict(dataset_dir=dataset_dir, split="train", batch_size=8, image_size=16, channels=3)
    args.update(kwargs)
    return pipeline.build_dataset(**args)


def _ids(ds, batches):
    return [i for b in ds.take(batches) for i in b["example_id"].numpy().tolist()]


def test_training_batches_shapes(fundus_dir):
    ds = _build(fundus_dir, training=True, preprocess_mode="torch")
    batch = next(iter(ds))
    assert batch["image"].shape == (8, 16, 16, 3) and batch["image"].dtype == tf.float32
    assert batch["labels"].shape == (8, 1) and batch["mask"].shape == (8, 1)
    assert batch["example_id"].dtype == tf.string
    assert batch["image"].numpy().min() < 0.0  # torch normalisation applied


def test_eval_is_one_ordered_pass_with_partial_batch(fundus_dir):
    num = info_lib.load_dataset_info(fundus_dir)["splits"]["valid"]["num_examples"]
    ds = _build(fundus_dir, split="valid", training=False, channels=1, batch_size=6)
    sizes = [int(b["image"].shape[0]) for b in ds]
    assert sum(sizes) == num
    assert sizes[-1] == (num % 6 or 6)  # the partial batch is the last one
    assert next(iter(ds))["image"].shape[1:] == (16, 16, 1)
    assert _ids(ds, 100) == _ids(ds, 100)


def test_deterministic_training_order(fundus_dir):
    a = _build(fundus_dir, training=True, seed=1, deterministic=True)
    b = _build(fundus_dir, training=True, seed=1, deterministic=True)
    c = _build(fundus_dir, training=True, seed=2, deterministic=True)
    ids_a = _ids(a, 12)
    assert ids_a == _ids(b, 12)
    assert ids_a != _ids(c, 12)
    np.testing.assert_array_equal(next(iter(a))["image"].numpy(), next(iter(b))["image"].numpy())


def test_input_contexts_see_disjoint_files(fundus_dir):
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2
        )
        ds = _build(fundus_dir, split="train", training=False, input_context=context)
        batch_sizes = {int(b["image"].shape[0]) for b in ds}
        assert max(batch_sizes) == 4  # per-replica share of the global batch of 8
        seen.append(set(_ids(ds, 1000)))
    assert not seen[0] & seen[1]
    total = info_lib.load_dataset_info(fundus_dir)["splits"]["train"]["num_examples"]
    assert len(seen[0] | seen[1]) == total


def test_train_examples_subset_is_seeded_and_shard_independent(fundus_dir, tmp_path):
    other = str(tmp_path / "fundus2")
    synthetic.write_synthetic_dataset(
        kind="fundus", output_dir=other, num_examples=80, image_size=24, num_shards=2, seed=3
    )
    subsets = []
    for directory in (fundus_dir, other):
        ds = _build(
            directory, training=True, repeat=False, train_examples=10, batch_size=5, subset_seed=4
        )
        subsets.append(set(_ids(ds, 20)))
    assert len(subsets[0]) == 10 and subsets[0] == subsets[1]
    ds = _build(fundus_dir, training=True, train_examples=10, batch_size=5, subset_seed=5)
    assert set(_ids(ds, 20)) != subsets[0]


def test_subset_seed_alone_draws_the_subset(fundus_dir):
    """--seed (and a resumed run's seed + step) orders the subset, never changes it."""
    want = pipeline.train_subset_ids(fundus_dir, num_examples=10, subset_seed=2)
    assert len(want) == 10 and want == sorted(want)
    for seed in (0, 1, 1 + 40):  # two seeds, and seed 1 resumed at step 40
        ds = _build(
            fundus_dir,
            training=True,
            repeat=False,  # one pass over the subset: each id exactly once
            train_examples=10,
            batch_size=5,
            seed=seed,
            subset_seed=2,
        )
        ids = _ids(ds, 100)
        assert len(ids) == 10 and sorted(ids) == want, seed
    assert pipeline.train_subset_ids(fundus_dir, num_examples=10, subset_seed=3) != want


def test_select_subset_is_a_pure_function_of_the_ids():
    ids = np.array([f"patient{i}/eye{i % 2}".encode() for i in range(50)], dtype=object)
    scan = {"example_id": ids}
    chosen = set(ids[pipeline.select_subset(scan, num_examples=7, subset_seed=11)])
    order = np.random.default_rng(0).permutation(len(ids))
    shuffled = {"example_id": ids[order]}
    again = set(
        shuffled["example_id"][pipeline.select_subset(shuffled, num_examples=7, subset_seed=11)]
    )
    assert len(chosen) == 7 and chosen == again
    other = set(ids[pipeline.select_subset(scan, num_examples=7, subset_seed=12)])
    assert other != chosen
    # A larger subset of one subset_seed holds the smaller one (the N lowest scores).
    larger = set(ids[pipeline.select_subset(scan, num_examples=20, subset_seed=11)])
    assert chosen <= larger


def test_subset_is_split_between_input_contexts(fundus_dir):
    """Under mirrored / multi-worker input sharding the pipelines together train on the subset."""
    want = pipeline.train_subset_ids(fundus_dir, num_examples=12, subset_seed=1)
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2
        )
        ds = _build(
            fundus_dir,
            training=True,
            train_examples=12,
            subset_seed=1,
            seed=3,  # every worker builds with the same seed
            repeat=False,  # one pass: each of the pipeline's ids exactly once
            batch_size=2,  # one example per replica: no partial batch is dropped
            input_context=context,
        )
        seen.append(_ids(ds, 100))
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == want


def test_balanced_sampling_ratio(tmp_path):
    out = str(tmp_path / "natural")
    synthetic.write_synthetic_dataset(kind="natural", output_dir=out, num_examples=60, image_size=8)
    info = info_lib.load_dataset_info(out)["splits"]["train"]
    assert info["positives"]["circle_solid"] / info["num_examples"] < 0.15  # 1 of 12 classes
    ds = _build(out, training=True, balanced=True, batch_size=50, augment="none", image_size=8)
    labels = np.concatenate([b["labels"].numpy()[:, 0] for b in ds.take(8)])
    assert abs(labels.mean() - 0.5) < 0.08


def test_augmentation_changes_images_and_is_seeded(fundus_dir):
    kwargs = dict(training=True, seed=7, deterministic=True, shuffle_buffer=1)
    plain = next(iter(_build(fundus_dir, augment="none", **kwargs)))
    aug1 = next(iter(_build(fundus_dir, augment="default", **kwargs)))
    aug2 = next(iter(_build(fundus_dir, augment="default", **kwargs)))
    assert plain["example_id"].numpy().tolist() == aug1["example_id"].numpy().tolist()
    assert aug1["image"].shape == plain["image"].shape
    assert not np.allclose(aug1["image"].numpy(), plain["image"].numpy())
    np.testing.assert_array_equal(aug1["image"].numpy(), aug2["image"].numpy())


def test_cache_gives_the_same_eval_images(fundus_dir):
    a = _build(fundus_dir, split="test", training=False, cache=True)
    b = _build(fundus_dir, split="test", training=False)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x["image"].numpy(), y["image"].numpy())


def test_bad_inputs(fundus_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        _build(str(tmp_path / "missing_dir"), training=False)
    with pytest.raises(FileNotFoundError, match="dataset_info.json"):
        _build(str(tmp_path), training=False)
    with pytest.raises(ValueError, match="unknown preprocess mode 'bgr'"):
        _build(fundus_dir, training=False, preprocess_mode="bgr")
    with pytest.raises(ValueError, match="unknown augmentation 'heavy'"):
        _build(fundus_dir, training=True, augment="heavy")
    with pytest.raises(ValueError, match="train_examples=1000 exceeds"):
        _build(fundus_dir, training=True, train_examples=1000)
    with pytest.raises(ValueError, match="subset_seed must be >= 0, got -1"):
        _build(fundus_dir, training=True, train_examples=10, subset_seed=-1)
    with pytest.raises(ValueError, match="train_examples=1000 exceeds"):
        pipeline.train_subset_ids(fundus_dir, num_examples=1000, subset_seed=0)
    with pytest.raises(info_lib.DatasetError, match="split 'holdout' not in"):
        _build(fundus_dir, split="holdout", training=False)


def test_empty_split_and_single_class_balanced(tmp_path):
    out = str(tmp_path / "nodata")
    synthetic.write_synthetic_dataset(
        kind="natural", output_dir=out, num_examples=6, image_size=8, test_fraction=0.0
    )
    with pytest.raises(info_lib.DatasetError, match="split 'test' of .*nodata has no examples"):
        _build(out, split="test", training=False)
    # natural class 0 ("circle_solid") holds indices 0, 12, ...: one positive among 6 at most.
    with pytest.raises(ValueError, match="balanced sampling needs positives and negatives"):
        _build(out, split="valid", training=True, balanced=True)


def test_corrupt_image_error_names_file_and_example(tmp_path):
    good = encode_png(np.zeros((8, 8, 3), np.uint8))
    examples = [
        dict(
            image_bytes=good if i != 2 else good[: len(good) // 2],
            height=8,
            width=8,
            channels=3,
            example_id=f"scan{i}",
            patient_id=f"p{i}",
            labels=[0.0],
            mask=[1.0],
        )
        for i in range(4)
    ]
    writer.write_dataset(
        output_dir=str(tmp_path),
        examples_by_split={"train": examples},
        tasks=["t"],
        source_format="test",
        label_policy="exact",
        image_encoding="png",
        num_shards=1,
    )
    ds = _build(str(tmp_path), training=False, batch_size=2)
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        list(ds)
    message = str(err.value)
    assert "scan2" in message
    assert os.path.join(str(tmp_path), "train-00000-of-00001.tfrecord") in message


def _write_images(out_dir, images, *, jpeg_every=0):
    """A one-split dataset of the given uint8/uint16 images; every jpeg_every-th one as JPEG."""
    examples = []
    for i, image in enumerate(images):
        jpeg = jpeg_every and i % jpeg_every == 0 and image.shape[2] == 3
        examples.append(
            dict(
                image_bytes=encode_jpeg(image) if jpeg else encode_png(image),
                height=image.shape[0],
                width=image.shape[1],
                channels=image.shape[2],
                example_id=f"img{i:03d}",
                patient_id=f"p{i}",
                labels=[float(i % 2)],
                mask=[1.0],
            )
        )
    writer.write_dataset(
        output_dir=str(out_dir),
        examples_by_split={"train": examples},
        tasks=["t"],
        source_format="test",
        label_policy="exact",
        image_encoding="png",
        num_shards=2,
    )
    return str(out_dir)


def _raw_bytes(dataset_dir):
    """example id -> encoded image bytes, read straight from the shards."""
    ds = tf.data.TFRecordDataset(info_lib.split_files(dataset_dir, "train"))
    out = {}
    for record in ds:
        ex = schema.parse_example(record, num_tasks=1)
        out[ex["example_id"].numpy()] = ex["image_bytes"]
    return out


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory):
    """RGB 8-bit PNG / JPEG, gray 16-bit PNG and RGBA images, two sizes."""
    rng = np.random.default_rng(8)
    images = []
    for i in range(12):
        size = 20 if i % 3 else 26
        kind = i % 4
        if kind == 0:
            images.append(rng.integers(0, 65536, (size, size, 1)).astype(np.uint16))
        elif kind == 1:
            images.append(rng.integers(0, 256, (size, size, 4)).astype(np.uint8))
        else:
            images.append(rng.integers(0, 256, (size, size, 3)).astype(np.uint8))
    return _write_images(tmp_path_factory.mktemp("mixed"), images, jpeg_every=5)


@pytest.mark.parametrize(("mode", "channels"), [("caffe", 3), ("torch", 1), ("unit", 3)])
def test_eval_pipeline_equals_decode_and_preprocess(mixed_dir, mode, channels):
    """What training evaluates on is what an exported model computes from the same bytes."""
    raw = _raw_bytes(mixed_dir)
    ds = _build(mixed_dir, training=False, preprocess_mode=mode, channels=channels, batch_size=5)
    seen = 0
    for batch in ds:
        for example_id, image in zip(
            batch["example_id"].numpy(), batch["image"].numpy(), strict=True
        ):
            expected = preprocess.decode_and_preprocess(
                raw[example_id], image_size=16, channels=channels, mode=mode
            )
            np.testing.assert_allclose(image, expected.numpy(), rtol=1e-5, atol=1e-4)
            seen += 1
    assert seen == len(raw)


@pytest.mark.parametrize(("mode", "channels"), [("caffe", 3), ("torch", 3), ("tf", 1)])
def test_flip_policy_gives_preprocessed_or_mirrored_images(mixed_dir, mode, channels):
    """The augmented path (integer pixels on the host, augment_batch per batch).

    With no zoom or colour jitter it must give the eval image or its mirror image, for 8-
    and 16-bit PNG, JPEG, gray, RGB and RGBA sources, stored larger than the model or not
    (this dataset holds 16-bit images, so all its pixels travel as uint16).
    """
    raw = _raw_bytes(mixed_dir)
    ds = _build(
        mixed_dir,
        training=True,
        augment="flip",
        preprocess_mode=mode,
        channels=channels,
        batch_size=4,
        image_size=20,
        deterministic=True,
        seed=3,
    )
    outcomes = []
    for batch in ds.take(6):
        assert batch["image"].shape == (4, 20, 20, channels)
        for example_id, image in zip(
            batch["example_id"].numpy(), batch["image"].numpy(), strict=True
        ):
            expected = preprocess.decode_and_preprocess(
                raw[example_id], image_size=20, channels=channels, mode=mode
            ).numpy()
            if np.allclose(image, expected[:, ::-1], rtol=1e-4, atol=2e-3):
                outcomes.append("mirrored")
            else:
                np.testing.assert_allclose(image, expected, rtol=1e-4, atol=2e-3)
                outcomes.append("kept")
    assert "mirrored" in outcomes and "kept" in outcomes


def test_augmented_batches_are_seeded_and_differ_from_plain(mixed_dir):
    kwargs = dict(training=True, seed=11, deterministic=True, shuffle_buffer=1, batch_size=6)
    a = next(iter(_build(mixed_dir, augment="default", preprocess_mode="torch", **kwargs)))
    b = next(iter(_build(mixed_dir, augment="default", preprocess_mode="torch", **kwargs)))
    plain = next(iter(_build(mixed_dir, augment="none", preprocess_mode="torch", **kwargs)))
    np.testing.assert_array_equal(a["image"].numpy(), b["image"].numpy())
    assert a["example_id"].numpy().tolist() == plain["example_id"].numpy().tolist()
    diff = np.abs(a["image"].numpy() - plain["image"].numpy()).reshape(6, -1).max(axis=1)
    assert (diff > 1e-2).all()  # every image was cropped, flipped or jittered
    assert np.isfinite(a["image"].numpy()).all()


@pytest.fixture(scope="module")
def rgb8_dir(tmp_path_factory):
    """8-bit RGB PNG / JPEG and RGBA images, stored at the model size (20) and larger (26)."""
    rng = np.random.default_rng(9)
    images = [
        rng.integers(
            0, 256, (20 if i % 2 else 26, 20 if i % 2 else 26, 4 if i % 3 == 1 else 3)
        ).astype(np.uint8)
        for i in range(8)
    ]
    return _write_images(tmp_path_factory.mktemp("rgb8"), images, jpeg_every=4)


def test_dataset_info_records_bit_depth(rgb8_dir, mixed_dir):
    assert info_lib.load_dataset_info(rgb8_dir)["bit_depth"] == 8
    assert info_lib.pixel_dtype(info_lib.load_dataset_info(rgb8_dir)) == tf.uint8
    assert info_lib.load_dataset_info(mixed_dir)["bit_depth"] == 16
    assert info_lib.pixel_dtype({"tasks": ["t"]}) == tf.uint16  # older info files: any image


@pytest.mark.parametrize("mode", ["caffe", "unit"])
def test_flip_policy_on_8_bit_pixels_within_half_a_step(rgb8_dir, mode):
    """8-bit images resized on the host are rounded back to uint8: half a step at most."""
    raw = _raw_bytes(rgb8_dir)
    ds = _build(
        rgb8_dir, training=True, augment="flip", preprocess_mode=mode, image_size=20, seed=1
    )
    step = {"caffe": 255.0, "unit": 1.0}[mode] / 255.0
    exact = near = 0
    for batch in ds.take(4):
        for example_id, image in zip(
            batch["example_id"].numpy(), batch["image"].numpy(), strict=True
        ):
            expected = preprocess.decode_and_preprocess(
                raw[example_id], image_size=20, channels=3, mode=mode
            ).numpy()
            err = min(np.abs(image - expected).max(), np.abs(image - expected[:, ::-1]).max())
            assert err <= 0.5 * step + 1e-4
            exact += err <= 1e-4
            near += err > 1e-4
    assert exact and near  # images of the model size are exact, resized ones near


@pytest.mark.parametrize("cache", [False, True])
def test_deferred_augmentation_equals_host_augmentation(rgb8_dir, cache):
    """defer_augment hands over integer pixels and draws; DeferredAugment finishes them."""
    kwargs = dict(
        training=True,
        augment="default",
        preprocess_mode="torch",
        image_size=20,
        seed=4,
        deterministic=True,
        shuffle_buffer=1,
        cache=cache,
    )
    host = next(iter(_build(rgb8_dir, **kwargs)))
    deferred = next(iter(_build(rgb8_dir, defer_augment=True, **kwargs)))
    assert "image" not in deferred
    assert deferred["pixels"].dtype == tf.uint8
    assert deferred["pixels"].shape == (8, 20, 20, 3)
    assert deferred["augment"].shape == (8, pipeline.augment_lib.NUM_DRAWS)
    finish = pipeline.deferred_augment(image_size=20, preprocess_mode="torch", augment="default")
    done = finish(deferred)
    assert set(done) == set(host)
    np.testing.assert_array_equal(done["image"].numpy(), host["image"].numpy())
    assert finish(done) is done  # finished batches pass through
    assert pipeline.deferred_augment(image_size=20, preprocess_mode="unit", augment="none") is None
    with pytest.raises(ValueError, match="unknown augmentation 'heavy'"):
        pipeline.deferred_augment(image_size=20, preprocess_mode="unit", augment="heavy")


def test_augmented_batches_differ_between_batches_and_epochs(rgb8_dir):
    """Draws are seeded per batch index, so the same image is augmented anew each epoch."""
    ds = _build(
        rgb8_dir,
        training=True,
        augment="default",
        image_size=20,
        batch_size=8,
        deterministic=True,
        shuffle_buffer=1,
        defer_augment=True,
        seed=2,
    )
    first, second = list(ds.take(2))
    assert not np.allclose(first["augment"].numpy(), second["augment"].numpy())


def test_parsers_have_one_output_structure_each(fundus_dir):
    """The parser, not the flags, fixes the batch keys: cache, subset and sharding keep them."""
    eval_keys = set(pipeline.EvalParser.output_keys)
    train_keys = set(pipeline.TrainParser.batch_keys)
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1)
    for kwargs in (
        dict(split="valid", training=False),
        dict(training=True, augment="none"),
        dict(training=True, augment="none", cache=True, train_examples=10),
    ):
        assert set(_build(fundus_dir, **kwargs).element_spec) == eval_keys, kwargs
    for kwargs in (
        dict(training=True, defer_augment=True),
        dict(training=True, defer_augment=True, cache=True, train_examples=10),
        dict(training=True, defer_augment=True, input_context=ctx),
    ):
        assert set(_build(fundus_dir, **kwargs).element_spec) == train_keys, kwargs
    # Host augmentation finishes the train parser's batches into images.
    assert set(_build(fundus_dir, training=True).element_spec) == eval_keys


def test_decoder_and_eval_parser_equal_the_exported_preprocessing(fundus_dir):
    files = info_lib.split_files(fundus_dir, "valid")
    record = next(iter(tf.data.TFRecordDataset(files[:1])))
    example = pipeline.Decoder(num_tasks=1).decode(record, tf.constant(files[0]))
    assert {"image_bytes", "labels", "mask", "example_id", "file"} <= set(example)
    parser = pipeline.EvalParser(image_size=16, channels=3, preprocess_mode="torch")
    got = parser.parse(example)
    assert set(got) == set(parser.output_keys)
    want = preprocess.decode_and_preprocess(
        example["image_bytes"], image_size=16, channels=3, mode="torch"
    )
    np.testing.assert_allclose(got["image"].numpy(), want.numpy(), atol=1e-6)
