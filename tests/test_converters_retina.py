"""EyePACS (Kaggle DR) and APTOS 2019 converters on their public layouts: referable-DR and grade
labels, both eyes of a patient in one split, exact counts, worker-count independence, resizing,
and bad input (corrupt/truncated/missing images, bad grades, missing columns, --strict)."""

import csv
import os
import shutil
from pathlib import Path

import pytest
import tensorflow as tf

from transfusion_tf.data import decode, layouts, schema
from transfusion_tf.data import info as info_lib
from transfusion_tf.data.converters import base, registry

NUM_EXAMPLES = 24


def read_split(dataset_dir, split):
    """example id -> parsed example (numpy) of one split of a prepared dataset."""
    num_tasks = len(info_lib.load_dataset_info(dataset_dir)["tasks"])
    files = info_lib.split_files(dataset_dir, split)
    ds = tf.data.TFRecordDataset(files).map(lambda s: schema.parse_example(s, num_tasks=num_tasks))
    return {ex["example_id"].decode(): ex for ex in ds.as_numpy_iterator()}


def read_all(dataset_dir):
    info = info_lib.load_dataset_info(dataset_dir)
    return {s: read_split(dataset_dir, s) for s in info["splits"]}


def convert(source_format, raw_root, out, **options):
    options.setdefault("workers", 1)
    return registry.prepare_dataset(
        source_format=source_format,
        input_path=str(raw_root),
        output_dir=str(out),
        options=base.ConvertOptions(progress=False, **options),
    )


def grades(csv_path, key, value):
    with open(csv_path, newline="") as f:
        return {row[key]: int(row[value]) for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def eyepacs_raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("eyepacs_raw")
    layouts.write_layout(
        layout="eyepacs", output_dir=str(root), num_examples=NUM_EXAMPLES, image_size=32, seed=2
    )
    return root


@pytest.fixture(scope="module")
def aptos_raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("aptos_raw")
    layouts.write_layout(
        layout="aptos", output_dir=str(root), num_examples=NUM_EXAMPLES, image_size=32, seed=2
    )
    return root


def test_eyepacs_labels_patients_and_counts(eyepacs_raw, tmp_path):
    tasks = ("referable_dr", "dr_grade_0", "dr_grade_3")
    info = convert("eyepacs", eyepacs_raw, tmp_path, tasks=tasks, valid_fraction=0.2)
    assert info["tasks"] == list(tasks) and info["image_encoding"] == "jpeg"
    assert info["single_label"] is False  # referable_dr beside the grades: multi-label
    level = grades(eyepacs_raw / "trainLabels.csv", "image", "level")
    splits = read_all(str(tmp_path))
    assert sum(len(d) for d in splits.values()) == len(level) == NUM_EXAMPLES
    seen_split = {}
    for split, examples in splits.items():
        assert len(examples) == info["splits"][split]["num_examples"] > 0
        for name, ex in examples.items():
            grade = level[name]
            want = [float(grade >= 2), float(grade == 0), float(grade == 3)]
            assert ex["labels"].tolist() == want and ex["mask"].tolist() == [1.0] * 3
            patient = ex["patient_id"].decode()
            assert name in (f"{patient}_left", f"{patient}_right")
            assert seen_split.setdefault(patient, split) == split  # both eyes, one split
    assert len(seen_split) == NUM_EXAMPLES // 2
    # Without resizing the source JPEG bytes are stored unchanged.
    name, ex = next(iter(splits["train"].items()))
    assert ex["image_bytes"] == (eyepacs_raw / "train" / f"{name}.jpeg").read_bytes()


def test_eyepacs_competition_test_labels_are_the_test_split(tmp_path):
    """retinopathy_solution.csv + test/ become the test split; valid comes from train."""
    raw = tmp_path / "raw"
    layouts.write_eyepacs(str(raw), num_examples=11, image_size=24, seed=4, test_examples=6)
    (raw / "test" / "16_left.jpeg").write_bytes(b"not a jpeg")  # reported, not fatal
    info = convert("eyepacs", raw, tmp_path / "out", valid_fraction=0.3, test_fraction=0.5)
    splits = read_all(str(tmp_path / "out"))
    train_level = grades(raw / "trainLabels.csv", "image", "level")
    test_level = grades(raw / "retinopathy_solution.csv", "image", "level")
    assert set(splits["test"]) == set(test_level) - {"16_left"}
    assert set(splits["train"]) | set(splits["valid"]) == set(train_level)
    assert splits["valid"] and splits["train"]
    for name, ex in splits["test"].items():
        assert ex["labels"].tolist() == [float(test_level[name] >= 2)]
    assert [s["path"] for s in info["skipped"]] == [str(raw / "test" / "16_left.jpeg")]
    # Without the test images the solution file is left aside: test is drawn from train.
    shutil.rmtree(raw / "test")
    info = convert("eyepacs", raw, tmp_path / "carved", valid_fraction=0.2, test_fraction=0.3)
    splits = read_all(str(tmp_path / "carved"))
    assert set().union(*map(set, splits.values())) == set(train_level)
    assert splits["test"] and not info["skipped"]


def test_eyepacs_output_does_not_depend_on_worker_count(eyepacs_raw, tmp_path):
    one = convert("eyepacs", eyepacs_raw, tmp_path / "one", workers=1, image_size=16)
    two = convert("eyepacs", eyepacs_raw, tmp_path / "two", workers=2, image_size=16)
    assert one["splits"] == two["splits"]
    for split in one["splits"]:
        a = info_lib.split_files(str(tmp_path / "one"), split)
        b = info_lib.split_files(str(tmp_path / "two"), split)
        assert [Path(p).read_bytes() for p in a] == [Path(p).read_bytes() for p in b]
    example = next(iter(read_split(str(tmp_path / "two"), "train").values()))
    image = decode.decode_image(example["image_bytes"])
    assert tuple(image.shape) == (16, 16, 3)


def test_aptos_labels_and_counts(aptos_raw, tmp_path):
    info = convert("aptos", aptos_raw, tmp_path, test_fraction=0.0, valid_fraction=0.25)
    assert info["tasks"] == ["referable_dr"] and info["image_encoding"] == "png"
    assert sorted(info["splits"]) == ["train", "valid"]
    diagnosis = grades(aptos_raw / "train.csv", "id_code", "diagnosis")
    splits = read_all(str(tmp_path))
    assert len(splits["valid"]) == round(0.25 * NUM_EXAMPLES)
    assert sum(len(d) for d in splits.values()) == NUM_EXAMPLES
    assert info["single_label"] is False  # one binary task
    grades5 = tuple(f"dr_grade_{g}" for g in range(5))
    graded = convert("aptos", aptos_raw, tmp_path / "grades", tasks=grades5, test_fraction=0.0)
    assert graded["single_label"] is True  # the five one-hot grades are classes
    for examples in splits.values():
        for code, ex in examples.items():
            assert ex["labels"].tolist() == [float(diagnosis[code] >= 2)]
            assert ex["patient_id"].decode() == code
            stored = decode.decode_image(ex["image_bytes"]).numpy()
            assert stored.shape == (32, 32, 3)


def test_corrupt_truncated_and_missing_images_are_skipped(eyepacs_raw, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(eyepacs_raw, raw)
    names = sorted(os.listdir(raw / "train"))
    truncated, junk, missing = names[0], names[1], names[2]
    data = (raw / "train" / truncated).read_bytes()
    (raw / "train" / truncated).write_bytes(data[: len(data) // 3])
    (raw / "train" / junk).write_bytes(b"\xff\xd8 definitely not a jpeg")
    os.remove(raw / "train" / missing)
    info = convert("eyepacs", raw, tmp_path / "out")
    skipped = {os.path.basename(s["path"]): s["reason"] for s in info["skipped"]}
    assert set(skipped) == {truncated, junk, missing}
    assert skipped[missing] == "missing file"
    assert skipped[truncated].startswith("corrupt image") and skipped[junk].startswith("corrupt")
    assert sum(s["num_examples"] for s in info["splits"].values()) == NUM_EXAMPLES - 3
    stored = set().union(*(read_split(str(tmp_path / "out"), s) for s in info["splits"]))
    assert not stored & {n.removesuffix(".jpeg") for n in (truncated, junk, missing)}
    with pytest.raises(base.StrictModeError, match=r"3 input\(s\) skipped under --strict"):
        convert("eyepacs", raw, tmp_path / "strict", strict=True)
    assert not os.path.exists(tmp_path / "strict" / info_lib.DATASET_INFO_FILE)
    assert not info_lib.list_shards(str(tmp_path / "strict"), "train")


def test_unknown_grade_and_missing_column(aptos_raw, eyepacs_raw, tmp_path):
    shutil.copytree(aptos_raw, tmp_path / "aptos")
    csv_path = tmp_path / "aptos" / "train.csv"
    lines = csv_path.read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0] + ",5"
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(base.ConversionError, match=r"train\.csv:3: column 'diagnosis'.*'5'"):
        convert("aptos", tmp_path / "aptos", tmp_path / "out")
    shutil.copytree(eyepacs_raw, tmp_path / "eyepacs")
    labels = tmp_path / "eyepacs" / "trainLabels.csv"
    labels.write_text(labels.read_text().replace("image,level", "image,grade", 1))
    with pytest.raises(base.ConversionError, match=r"trainLabels\.csv: missing.*\['level'\]"):
        convert("eyepacs", tmp_path / "eyepacs", tmp_path / "out")


def test_unknown_task_and_empty_input(eyepacs_raw, tmp_path):
    with pytest.raises(base.ConversionError, match=r"unknown task\(s\) \['grade_9'\]"):
        convert("eyepacs", eyepacs_raw, tmp_path / "out", tasks=("grade_9",))
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "trainLabels.csv").write_text("image,level\n")
    with pytest.raises(base.ConversionError, match="empty input"):
        convert("eyepacs", tmp_path / "empty", tmp_path / "out")
    with pytest.raises(base.ConversionError, match="no trainLabels.csv"):
        convert("eyepacs", tmp_path / "empty" / "train", tmp_path / "out")


def test_empty_split(eyepacs_raw, tmp_path):
    raw = tmp_path / "raw"
    (raw / "train").mkdir(parents=True)
    shutil.copy(eyepacs_raw / "train" / "10_left.jpeg", raw / "train")
    shutil.copy(eyepacs_raw / "train" / "10_right.jpeg", raw / "train")
    (raw / "trainLabels.csv").write_text("image,level\n10_left,0\n10_right,1\n")
    with pytest.raises(base.ConversionError, match="split 'valid' is empty"):
        convert("eyepacs", raw, tmp_path / "out")
    info = convert("eyepacs", raw, tmp_path / "out", valid_fraction=0.0, test_fraction=0.0)
    assert info["splits"]["train"]["num_examples"] == 2
    # A split whose every image is unreadable is empty too.
    raw2 = tmp_path / "raw2"
    shutil.copytree(eyepacs_raw, raw2)
    out = convert("eyepacs", raw2, tmp_path / "probe")
    for name in read_split(str(tmp_path / "probe"), "test"):
        (raw2 / "train" / f"{name}.jpeg").write_bytes(b"broken")
    with pytest.raises(base.ConversionError, match="split 'test' is empty: all of its"):
        convert("eyepacs", raw2, tmp_path / "out2")
    assert out["splits"]["test"]["num_examples"] > 0
