"""Readers verify what they read (SPEC R): shards cut back by whole records, cut mid-record or
with changed bytes give one-line errors naming the split and counts, or the shard file and
offset; `transfusion-prepare --verify` reports records, CRC failures and undecodable images
per shard."""

import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf
import test_train_helpers as helpers

from transfusion_tf.data import info as info_lib
from transfusion_tf.data import pipeline, synthetic, verify, writer
from transfusion_tf.data.encode import encode_png

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "ds"
    synthetic.write_synthetic_dataset(
        kind="fundus", output_dir=str(out), num_examples=40, image_size=16, num_shards=2
    )
    return out


@pytest.fixture()
def dataset(clean, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(clean, out)
    return out


def _offsets(path):
    """Byte offsets where each record of a TFRecord file starts, and the file size."""
    with open(path, "rb") as f:
        data = f.read()
    offsets, at = [], 0
    while at < len(data):
        offsets.append(at)
        at += int.from_bytes(data[at : at + 8], "little") + 16
    return offsets, len(data)


def _cut(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


def _build(out, split, **kwargs):
    return pipeline.build_dataset(
        dataset_dir=str(out),
        split=split,
        batch_size=4,
        image_size=16,
        channels=3,
        training=split == "train",
        augment="none",
        **kwargs,
    )


def test_shards_cut_back_by_whole_records_are_an_error(dataset):
    info = info_lib.load_dataset_info(str(dataset))
    listed = info["splits"]["train"]["num_examples"]
    shard = info_lib.list_shards(str(dataset), "train")[0]
    offsets, _ = _offsets(shard)
    _cut(shard, offsets[3])  # keeps 3 whole records
    held = listed - (len(offsets) - 3)
    message = (
        f"split 'train' of {dataset}: its 2 shard(s) hold {held} examples but "
        f"dataset_info.json lists {listed}"
    )
    with pytest.raises(info_lib.DatasetError, match=re.escape(message)):
        _build(dataset, "train")
    with pytest.raises(info_lib.DatasetError, match="--verify="):
        _build(dataset, "train", train_examples=2)
    _build(dataset, "valid")  # the other splits still read


def test_a_shard_cut_mid_record_names_the_file_and_offset(dataset):
    shard = info_lib.list_shards(str(dataset), "valid")[0]
    offsets, size = _offsets(shard)
    _cut(shard, offsets[-1] + 30)
    with pytest.raises(info_lib.DatasetError) as err:
        _build(dataset, "valid")
    assert str(err.value).startswith(f"{shard}: truncated record at offset {offsets[-1]} (")
    assert "\n" not in str(err.value)


def _flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_changed_bytes_give_one_line_naming_the_shard_and_offset(dataset):
    shards = info_lib.list_shards(str(dataset), "valid")
    offsets, _ = _offsets(shards[-1])
    _flip(shards[-1], offsets[1] + 40)  # inside the data of the second record
    ds = _build(dataset, "valid")  # the counts are right: only reading finds the change
    with (
        pytest.raises(verify.CorruptShardError) as err,
        verify.data_loss_errors(dataset_dir=str(dataset), split="valid"),
    ):
        for _ in ds:
            pass
    message = str(err.value)
    assert message.startswith(
        f"{shards[-1]}: corrupted record at offset {offsets[1]} (record 2): CRC mismatch"
    )
    assert "\n" not in message and isinstance(err.value, ValueError)


def _prepare(*args):
    return helpers.run_cli_once("prepare", *args)


def test_verify_reports_each_shard(dataset, tmp_path):
    done = _prepare(f"--verify={dataset}")
    assert done.returncode == 0, done.stderr
    assert "no problems found" in done.stdout
    assert "train-00000-of-00002.tfrecord" in done.stdout
    train = info_lib.list_shards(str(dataset), "train")
    offsets, _ = _offsets(train[1])
    _cut(train[1], offsets[2] + 5)
    valid = info_lib.list_shards(str(dataset), "valid")[0]
    valid_offsets, _ = _offsets(valid)
    _flip(valid, valid_offsets[0] + 40)
    report = verify.verify_dataset(str(dataset))
    by_name = {os.path.basename(s.path): s for s in report.shards}
    cut = by_name[os.path.basename(train[1])]
    assert cut.records is None and cut.read == 2
    assert cut.error.startswith(f"truncated record at offset {offsets[2]}")
    flipped = by_name[os.path.basename(valid)]
    assert flipped.error == f"CRC failure at offset {valid_offsets[0]} (record 1): bytes changed"
    assert flipped.read == 0
    done = _prepare(f"--verify={dataset}")
    assert done.returncode == 1
    assert f"{os.path.basename(train[1])}: truncated record at offset" in done.stdout
    assert "split train: " in done.stdout and "MISMATCH" in done.stdout
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {dataset}: ")


def test_verify_finds_undecodable_images(tmp_path):
    image = encode_png(np.zeros((4, 5, 1), np.uint8))
    examples = [
        dict(
            image_bytes=data,
            height=4,
            width=5,
            channels=1,
            example_id=f"img{i}",
            patient_id=f"p{i}",
            labels=[1.0],
            mask=[1.0],
        )
        for i, data in enumerate([image, image[:-20] + b"\x00" * 8 + image[-12:], b"junk"])
    ]
    writer.write_dataset(
        output_dir=str(tmp_path),
        examples_by_split={"train": examples},
        tasks=["a"],
        source_format="test",
        label_policy="exact",
        image_encoding="png",
    )
    report = verify.verify_dataset(str(tmp_path))
    assert report.splits == {"train": (3, 3)}
    (shard,) = report.shards
    assert [example_id for example_id, _ in shard.undecodable] == ["img1", "img2"]
    assert shard.undecodable[1][1] == "not a PNG or JPEG image"
    assert not report.ok and "undecodable" in verify.format_report(report)


def test_verify_of_a_folder_without_a_dataset(tmp_path):
    done = _prepare(f"--verify={tmp_path}")
    assert done.returncode == 1
    assert "dataset_info.json not found" in done.stderr.strip().splitlines()[-1]
    done = _prepare("--format=folder")
    assert done.returncode == 1 and "--output_dir required" in done.stderr
    assert tf.io.gfile.exists(str(tmp_path))
