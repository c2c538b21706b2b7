"""Tests of the sharded writer and dataset_info.json (SPEC D1, R)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from transfusion_tf.data import info as info_lib
from transfusion_tf.data import writer
from transfusion_tf.data.encode import encode_png

TASKS = ("a", "b")


def _example(i, *, label_a=None):
    image = np.full((4, 5, 1), i % 256, np.uint8)
    return dict(
        image_bytes=encode_png(image),
        height=4,
        width=5,
        channels=1,
        example_id=f"img{i:03d}",
        patient_id=f"p{i // 2}",
        labels=[float(i % 2 if label_a is None else label_a), 1.0],
        mask=[1.0, float(i % 3 == 0)],
    )


def _write(out, splits=None, **kwargs):
    splits = splits or {"train": [_example(i) for i in range(7)], "valid": [_example(7)]}
    return writer.write_dataset(
        output_dir=str(out),
        examples_by_split=splits,
        tasks=TASKS,
        source_format="test",
        label_policy="exact",
        image_encoding="png",
        num_shards=3,
        **kwargs,
    )


def test_write_dataset_counts_and_layout(tmp_path):
    skipped = [{"path": "bad.png", "reason": "truncated"}]
    info = _write(tmp_path, skipped=skipped)
    assert sorted(os.listdir(tmp_path)) == [
        "dataset_info.json",
        "train-00000-of-00003.tfrecord",
        "train-00001-of-00003.tfrecord",
        "train-00002-of-00003.tfrecord",
        "valid-00000-of-00001.tfrecord",  # fewer examples than shards: only non-empty ones
    ]
    train = info["splits"]["train"]
    assert train["num_examples"] == 7
    assert train["labelled"] == {"a": 7, "b": 3}  # ids 0, 3, 6 have b labelled
    assert train["positives"] == {"a": 3, "b": 3}
    assert info["skipped"] == skipped
    on_disk = info_lib.load_dataset_info(str(tmp_path))
    assert on_disk["tasks"] == list(TASKS) and on_disk["schema_version"] == 1
    assert on_disk["splits"] == info["splits"]
    assert len(info_lib.split_files(str(tmp_path), "train")) == 3


def _one_hot_example(i, cls):
    return dict(_example(i), labels=[float(cls == 0), float(cls == 1)], mask=[1.0, 1.0])


def test_single_label_is_recorded_only_when_every_example_is_one_hot(tmp_path):
    one_hot = {"train": [_one_hot_example(i, i % 2) for i in range(6)]}
    assert _write(tmp_path / "a", splits=one_hot, single_label=True)["single_label"] is True
    assert info_lib.is_single_label(info_lib.load_dataset_info(str(tmp_path / "a")))
    assert _write(tmp_path / "b", splits=one_hot)["single_label"] is False  # not declared
    # Declared, but example 0 has no class and example 9 two: recorded multi-label.
    broken = [dict(_one_hot_example(0, 0), labels=[0.0, 0.0]), _example(9)]
    info = _write(
        tmp_path / "c", splits={"train": broken + one_hot["train"][2:]}, single_label=True
    )
    assert info["single_label"] is False
    # Older directories without the key read as multi-label.
    path = tmp_path / "a" / "dataset_info.json"
    old = json.loads(path.read_text())
    del old["single_label"]
    path.write_text(json.dumps(old))
    assert not info_lib.is_single_label(info_lib.load_dataset_info(str(tmp_path / "a")))


def test_info_is_written_after_all_shards(tmp_path, monkeypatch):
    real = info_lib.write_dataset_info
    seen = {}

    def spy(dataset_dir, info):
        seen["files"] = sorted(os.listdir(dataset_dir))
        return real(dataset_dir, info)

    monkeypatch.setattr(info_lib, "write_dataset_info", spy)
    _write(tmp_path)
    assert "dataset_info.json" not in seen["files"]
    assert len([f for f in seen["files"] if f.endswith(".tfrecord")]) == 4
    assert not [f for f in seen["files"] if ".tmp" in f]


def test_exception_mid_write_leaves_no_shard(tmp_path):
    with (
        pytest.raises(RuntimeError, match="worker died"),
        writer.ShardedWriter(str(tmp_path), "train", tasks=TASKS, num_shards=2) as w,
    ):
        for i in range(3):
            w.write(**_example(i))
        assert len(os.listdir(tmp_path)) == 2  # both shards open under temporary names
        assert not info_lib.list_shards(str(tmp_path), "train")
        raise RuntimeError("worker died")
    assert os.listdir(tmp_path) == []


def test_count_mismatch_is_an_error_and_writes_no_info(tmp_path):
    with writer.ShardedWriter(str(tmp_path), "train", tasks=TASKS, num_shards=1) as w:
        for i in range(4):
            w.write(**_example(i))
    # A record appended behind the writer's back: the read-back must notice it.
    shard = info_lib.list_shards(str(tmp_path), "train")[0]
    records = [r.numpy() for r in tf.data.TFRecordDataset(shard)]
    with tf.io.TFRecordWriter(shard) as f:
        for r in [*records, records[0]]:
            f.write(r)
    with pytest.raises(writer.DatasetIntegrityError, match="train"):
        writer.finalize_dataset(
            str(tmp_path),
            tasks=TASKS,
            source_format="test",
            label_policy="exact",
            image_encoding="png",
            split_stats={"train": w.stats},
        )
    assert not os.path.exists(tmp_path / "dataset_info.json")


def test_duplicate_ids_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="duplicate example id 'img001'"):
        _write(tmp_path, splits={"train": [_example(1), _example(1)]})
    with pytest.raises(writer.DatasetIntegrityError, match="img002"):
        _write(tmp_path / "x", splits={"train": [_example(2)], "valid": [_example(2)]})


def test_existing_shards_need_overwrite(tmp_path):
    _write(tmp_path)
    with pytest.raises(FileExistsError, match="overwrite"):
        _write(tmp_path)
    info = _write(tmp_path, splits={"train": [_example(i) for i in range(2)]}, overwrite=True)
    assert info["splits"]["train"]["num_examples"] == 2
    assert len(info_lib.list_shards(str(tmp_path), "train")) == 2


def test_wrong_label_count_is_rejected(tmp_path):
    bad = _example(0)
    bad["labels"], bad["mask"] = [1.0], [1.0]
    with pytest.raises(ValueError, match="1 labels, dataset has 2 tasks"):
        _write(tmp_path, splits={"train": [bad]})


def test_missing_directory_and_info_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        info_lib.load_dataset_info(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="dataset_info.json not found"):
        info_lib.load_dataset_info(str(tmp_path))
    (tmp_path / "dataset_info.json").write_text("{not json")
    with pytest.raises(info_lib.DatasetError, match="not valid JSON"):
        info_lib.load_dataset_info(str(tmp_path))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"tasks": ["a"]}))
    with pytest.raises(info_lib.DatasetError, match="lacks required keys"):
        info_lib.load_dataset_info(str(tmp_path))


def test_unknown_split_and_missing_shard(tmp_path):
    _write(tmp_path)
    with pytest.raises(info_lib.DatasetError, match="split 'test' not in"):
        info_lib.split_files(str(tmp_path), "test")
    os.remove(tmp_path / "train-00001-of-00003.tfrecord")
    with pytest.raises(info_lib.DatasetError, match="incomplete or mixed"):
        info_lib.split_files(str(tmp_path), "train")
