"""CheXpert converter on the real CheXpert-v1.0-small layout (written by `layouts`): source
splits, test carved by patient, label/mask policies, frontal filter, reading back through the
input pipeline, and CheXpert-specific bad input."""

import csv
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from transfusion_tf.data import info as info_lib
from transfusion_tf.data import layouts, pipeline, schema
from transfusion_tf.data.converters import base, chexpert, registry

NUM_EXAMPLES = 30  # 10 patients x 3 studies; 2 patients in valid.csv


def read_split(dataset_dir, split):
    """example id -> parsed example (numpy) of one split of a prepared dataset."""
    num_tasks = len(info_lib.load_dataset_info(dataset_dir)["tasks"])
    files = info_lib.split_files(dataset_dir, split)
    ds = tf.data.TFRecordDataset(files).map(lambda s: schema.parse_example(s, num_tasks=num_tasks))
    return {ex["example_id"].decode(): ex for ex in ds.as_numpy_iterator()}


def expected_cell(cell, *, uncertain, blank):
    """(label, mask) of one CheXpert cell, written out from the CheXpert conventions."""
    if cell == "":
        return (0.0, 1.0) if blank == "negative" else (0.0, 0.0)
    value = float(cell)
    if value == -1.0:
        return {"ones": (1.0, 1.0), "zeros": (0.0, 1.0), "ignore": (0.0, 0.0)}[uncertain]
    return (value, 1.0)


def csv_rows(root, name):
    with open(os.path.join(root, name), newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    layout = layouts.write_layout(
        layout="chexpert",
        output_dir=str(tmp_path_factory.mktemp("chexpert_raw")),
        num_examples=NUM_EXAMPLES,
        image_size=32,
        seed=1,
    )
    return layout.input_path


def convert(raw_root, out, **options):
    return registry.prepare_dataset(
        source_format="chexpert",
        input_path=raw_root,
        output_dir=str(out),
        options=base.ConvertOptions(workers=1, progress=False, **options),
    )


@pytest.fixture(scope="module")
def default_dataset(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("chexpert_default")
    return convert(raw, out), str(out)


def test_layout_is_the_public_one(raw):
    assert os.path.basename(raw) == "CheXpert-v1.0-small"
    with open(os.path.join(raw, "train.csv"), newline="") as f:
        header = next(csv.reader(f))
    assert header[:5] == ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA"]
    assert header[5:] == list(chexpert.OBSERVATIONS)
    first = csv_rows(raw, "train.csv")[0]["Path"]
    assert first.startswith("CheXpert-v1.0-small/train/patient")
    assert os.path.isfile(os.path.join(os.path.dirname(raw), first))


def test_counts_splits_and_patients(raw, default_dataset):
    info, out = default_dataset
    assert info["tasks"] == list(chexpert.COMPETITION_TASKS)
    assert info["source_format"] == "chexpert" and info["skipped"] == []
    train_rows, valid_rows = csv_rows(raw, "train.csv"), csv_rows(raw, "valid.csv")
    splits = {s: read_split(out, s) for s in ("train", "valid", "test")}
    assert len(splits["valid"]) == len(valid_rows) == info["splits"]["valid"]["num_examples"]
    assert len(splits["train"]) + len(splits["test"]) == len(train_rows)
    patients = {s: {ex["patient_id"].decode() for ex in d.values()} for s, d in splits.items()}
    train_patients = {r["Path"].split("/")[2] for r in train_rows}
    assert len(patients["test"]) == round(0.1 * len(train_patients))  # carved by patient
    assert patients["valid"] == {r["Path"].split("/")[2] for r in valid_rows}  # source kept
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert not patients[a] & patients[b]
    for split, examples in splits.items():
        for example_id, ex in examples.items():
            assert example_id.split("/")[1] == ex["patient_id"].decode(), split


@pytest.mark.parametrize(
    ("uncertain", "blank"), [("ignore", "negative"), ("ones", "ignore"), ("zeros", "negative")]
)
def test_labels_and_masks_follow_the_policies(raw, tmp_path, uncertain, blank):
    info = convert(raw, tmp_path, uncertain_policy=uncertain, blank_policy=blank, test_fraction=0.0)
    assert info["label_policy"] == {"uncertain": uncertain, "blank": blank}
    got = {**read_split(str(tmp_path), "train"), **read_split(str(tmp_path), "valid")}
    rows = csv_rows(raw, "train.csv") + csv_rows(raw, "valid.csv")
    assert len(got) == len(rows)
    cells = set()
    for row in rows:
        ex = got[os.path.splitext(row["Path"].split("/", 1)[1])[0]]
        for t, task in enumerate(info["tasks"]):
            cells.add(row[task])
            want = expected_cell(row[task], uncertain=uncertain, blank=blank)
            assert (ex["labels"][t], ex["mask"][t]) == want, (row["Path"], task)
    assert {"1.0", "0.0", "-1.0", ""} <= cells  # every kind of cell was exercised


def test_frontal_only_and_task_selection(raw, tmp_path):
    info = convert(raw, tmp_path, frontal_only=True, tasks=("Edema", "No Finding"))
    rows = csv_rows(raw, "train.csv") + csv_rows(raw, "valid.csv")
    frontal = [r for r in rows if r["Frontal/Lateral"] == "Frontal"]
    assert 0 < len(frontal) < len(rows)
    assert sum(s["num_examples"] for s in info["splits"].values()) == len(frontal)
    assert info["tasks"] == ["Edema", "No Finding"]
    valid = read_split(str(tmp_path), "valid")
    positives = sum(int(ex["labels"][1]) for ex in valid.values())
    assert positives == info["splits"]["valid"]["positives"]["No Finding"]


def test_reads_back_through_the_input_pipeline(raw, default_dataset):
    info, out = default_dataset
    ds = pipeline.build_dataset(
        dataset_dir=out, split="valid", batch_size=4, image_size=32, channels=1, training=False
    )
    batches = list(ds.as_numpy_iterator())
    images = np.concatenate([b["image"] for b in batches])
    labels = np.concatenate([b["labels"] for b in batches])
    assert images.shape == (info["splits"]["valid"]["num_examples"], 32, 32, 1)
    assert images.min() >= 0.0 and images.max() <= 1.0 and images.std() > 0.05
    assert labels.sum(axis=0).tolist() == [
        info["splits"]["valid"]["positives"][t] for t in info["tasks"]
    ]


def _copy_raw(raw, tmp_path):
    root = tmp_path / "CheXpert-v1.0-small"
    shutil.copytree(raw, root)
    return root


def test_unknown_label_value_names_file_line_and_column(raw, tmp_path):
    root = _copy_raw(raw, tmp_path)
    text = (root / "train.csv").read_text().splitlines()
    cells = next(csv.reader([text[3]]))
    cells[5 + chexpert.OBSERVATIONS.index("Edema")] = "2.0"
    text[3] = ",".join(cells)
    (root / "train.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(base.ConversionError, match=r"train\.csv:4: column 'Edema'.*'2\.0'"):
        convert(str(root), tmp_path / "out")


def test_missing_column_and_missing_csv(raw, tmp_path):
    root = _copy_raw(raw, tmp_path)
    with open(root / "valid.csv", newline="") as f:
        rows = list(csv.reader(f))
    drop = rows[0].index("Cardiomegaly")
    with open(root / "valid.csv", "w", newline="") as f:
        csv.writer(f).writerows([r[:drop] + r[drop + 1 :] for r in rows])
    with pytest.raises(base.ConversionError, match=r"valid\.csv: missing required.*Cardiomegaly"):
        convert(str(root), tmp_path / "out")
    os.remove(root / "train.csv")
    with pytest.raises(base.ConversionError, match="no train.csv"):
        convert(str(root), tmp_path / "out")


def test_path_escaping_the_root_is_skipped_and_never_read(raw, tmp_path):
    root = _copy_raw(raw, tmp_path)
    secret = tmp_path / "secret.jpg"
    shutil.copy(next((root / "train").rglob("*.jpg")), secret)
    lines = (root / "train.csv").read_text().splitlines()
    lines.append(lines[1].replace(lines[1].split(",")[0], "CheXpert-v1.0-small/../secret.jpg"))
    lines.append(lines[1].replace(lines[1].split(",")[0], str(secret)))
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    info = convert(str(root), tmp_path / "out")
    reasons = [s["reason"] for s in info["skipped"]]
    assert reasons == ["path escapes the dataset root"] * 2
    assert all("secret.jpg" in s["path"] for s in info["skipped"])
    total = sum(s["num_examples"] for s in info["splits"].values())
    assert total == NUM_EXAMPLES
    with pytest.raises(base.StrictModeError, match="2 input.*skipped.*escapes"):
        convert(str(root), tmp_path / "strict", strict=True)
    assert not os.path.exists(tmp_path / "strict" / info_lib.DATASET_INFO_FILE)
