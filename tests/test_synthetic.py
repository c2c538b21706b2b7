"""Tests of the synthetic fundus / chest X-ray / natural datasets (SPEC D4)."""

import numpy as np
import pytest
import tensorflow as tf

from transfusion_tf.data import info as info_lib
from transfusion_tf.data import schema, splits, synthetic


def test_samplers_are_seeded_per_index():
    a = synthetic.sample_fundus(5, seed=1, size=32)
    b = synthetic.sample_fundus(5, seed=1, size=32)
    c = synthetic.sample_fundus(5, seed=2, size=32)
    np.testing.assert_array_equal(a.image, b.image)
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (32, 32, 3) and a.image.dtype == np.uint8
    assert (a.patient, a.eye) == (2, "right")
    x = synthetic.sample_cxr(4, seed=0, size=24)
    assert x.image.shape == (24, 24) and x.image.dtype == np.uint8
    assert (x.patient, x.study, x.patient_id) == (1, 2, "patient00002")
    n = synthetic.sample_natural(13, seed=0, size=16)
    assert n.image.shape == (16, 16, 3) and n.cls == 1


def test_fundus_grades_draw_more_lesions():
    # With the same generator, grades differ only where lesions are drawn.
    changed = np.zeros(5)
    for seed in range(3):
        images = [
            synthetic.fundus_image(np.random.default_rng(seed), size=64, grade=g).astype(int)
            for g in range(5)
        ]
        changed += [(np.abs(im - images[0]).sum(-1) > 40).sum() for im in images]
    assert changed[0] == 0
    assert 0 < changed[1] < changed[2] < changed[3] and changed[2] < changed[4]
    grades = [synthetic.sample_fundus(i, seed=0).grade for i in range(200)]
    assert set(grades) == {0, 1, 2, 3, 4}
    assert synthetic.fundus_labels(2, ["referable_dr", "dr_grade_2", "dr_grade_0"]) == [1, 1, 0]


def test_cxr_findings_change_the_image_and_raw_labels_are_chexpert_like():
    def heart_width(severity):
        image = synthetic.cxr_image(
            np.random.default_rng(3), size=96, findings={"Cardiomegaly": severity}
        )
        row = image[60].astype(float)  # through the heart
        return int((row > 140).sum())

    assert heart_width(1.0) > heart_width(0.0) + 5
    values = set()
    for i in range(150):
        raw = synthetic.sample_cxr(i, seed=0, size=16).raw_labels
        assert set(raw) == set(synthetic.CHEXPERT_OBSERVATIONS)
        values.update(raw[t] for t in synthetic.CHEXPERT_COMPETITION_TASKS)
    assert values == {1.0, 0.0, -1.0, None}


def test_cxr_uncertain_policies():
    raw = {"Edema": -1.0, "Atelectasis": None, "Cardiomegaly": 1.0}
    tasks = ["Edema", "Atelectasis", "Cardiomegaly"]
    assert synthetic.cxr_labels(raw, tasks) == ([0.0, 0.0, 1.0], [0.0, 1.0, 1.0])
    assert synthetic.cxr_labels(raw, tasks, uncertain_policy="ones")[0] == [1.0, 0.0, 1.0]
    assert synthetic.cxr_labels(raw, tasks, uncertain_policy="zeros") == (
        [0.0, 0.0, 1.0],
        [1.0, 1.0, 1.0],
    )
    with pytest.raises(ValueError, match="uncertain_policy"):
        synthetic.cxr_labels(raw, tasks, uncertain_policy="maybe")


def _read_split(directory, split, num_tasks):
    files = info_lib.split_files(directory, split)
    out = []
    for record in tf.data.TFRecordDataset(files):
        ex = schema.parse_example(record, num_tasks=num_tasks)
        out.append((ex["example_id"].numpy(), ex["patient_id"].numpy(), ex["image_bytes"].numpy()))
    return out


def test_dataset_is_split_by_patient_and_independent_of_workers(tmp_path):
    one, two = str(tmp_path / "w1"), str(tmp_path / "w2")
    kwargs = dict(kind="cxr", num_examples=30, image_size=16, seed=4)
    info = synthetic.write_synthetic_dataset(output_dir=one, workers=1, **kwargs)
    info2 = synthetic.write_synthetic_dataset(output_dir=two, workers=2, **kwargs)
    assert info["tasks"] == list(synthetic.CHEXPERT_COMPETITION_TASKS)
    assert info["splits"] == info2["splits"]
    assert info["label_policy"] == {"uncertain": "ignore", "blank": "zeros"}
    patients = {}
    for split in ("train", "valid", "test"):
        rows = _read_split(one, split, 5)
        assert rows == _read_split(two, split, 5)  # identical bytes whatever the worker count
        patients[split] = {p for _, p, _ in rows}
        assert len(rows) == info["splits"][split]["num_examples"] > 0
    assert not patients["train"] & patients["valid"]
    assert not patients["train"] & patients["test"]
    assert not patients["valid"] & patients["test"]
    assert sum(s["num_examples"] for s in info["splits"].values()) == 30


def test_fundus_and_natural_datasets(tmp_path):
    info = synthetic.write_synthetic_dataset(
        kind="fundus",
        output_dir=str(tmp_path / "f"),
        num_examples=20,
        image_size=16,
        tasks=["referable_dr", "dr_grade_4"],
    )
    assert info["tasks"] == ["referable_dr", "dr_grade_4"]
    assert info["source_format"] == "synthetic_fundus" and info["image_encoding"] == "png"
    assert info["single_label"] is False
    info = synthetic.write_synthetic_dataset(
        kind="natural", output_dir=str(tmp_path / "n"), num_examples=24, image_size=16
    )
    assert len(info["tasks"]) == 12
    total = sum(sum(s["positives"].values()) for s in info["splits"].values())
    assert total == 24  # one-hot: exactly one positive per image
    assert info["single_label"] is True  # mutually exclusive classes: softmax under --loss=auto
    grades = [f"dr_grade_{g}" for g in range(5)]
    info = synthetic.write_synthetic_dataset(
        kind="fundus", output_dir=str(tmp_path / "g"), num_examples=10, image_size=16, tasks=grades
    )
    assert info["single_label"] is True
    # A subset of the classes leaves images with no class: not single-label.
    info = synthetic.write_synthetic_dataset(
        kind="natural",
        output_dir=str(tmp_path / "n3"),
        num_examples=24,
        image_size=16,
        tasks=list(synthetic.NATURAL_CLASSES[:3]),
    )
    assert info["single_label"] is False


def test_bad_arguments(tmp_path):
    out = str(tmp_path)
    with pytest.raises(ValueError, match="unknown synthetic kind 'mri'"):
        synthetic.write_synthetic_dataset(kind="mri", output_dir=out, num_examples=4)
    with pytest.raises(ValueError, match="unknown fundus task 'glaucoma'"):
        synthetic.write_synthetic_dataset(
            kind="fundus", output_dir=out, num_examples=4, tasks=["glaucoma"]
        )
    with pytest.raises(ValueError, match="split fractions"):
        synthetic.write_synthetic_dataset(
            kind="cxr", output_dir=out, num_examples=4, valid_fraction=0.6, test_fraction=0.5
        )
    with pytest.raises(ValueError, match="num_examples"):
        synthetic.write_synthetic_dataset(kind="cxr", output_dir=out, num_examples=0)
    with pytest.raises(ValueError, match="grade"):
        synthetic.fundus_image(np.random.default_rng(0), size=16, grade=5)
    with pytest.raises(ValueError, match="unknown findings"):
        synthetic.cxr_image(np.random.default_rng(0), size=16, findings={"Pneumonia": 1.0})


def test_every_kind_is_registered_with_its_tasks_and_patients():
    """Registry completeness: each kind draws, labels and groups its examples by patient."""
    assert set(synthetic.SYNTHETIC_KINDS.names()) == set(synthetic.KINDS)
    for kind in synthetic.KINDS:
        entry = synthetic.get_kind(kind)
        assert entry.description and entry.tasks == synthetic.default_tasks(kind)
        sample = entry.draw(0, seed=0, size=16, style=synthetic.DEFAULT_FUNDUS_STYLE)
        labels, mask = entry.labels(sample, entry.tasks, "ignore")
        assert len(labels) == len(mask) == len(entry.tasks)
        per = entry.examples_per_patient
        assert synthetic.patient_of(kind, per - 1) == 0 and synthetic.patient_of(kind, per) == 1


def test_split_is_the_converters_patient_split():
    got = synthetic.split_patients("cxr", 30, seed=4, valid_fraction=0.2, test_fraction=0.2)
    want = splits.split_by_patient(list(range(10)), fractions={"valid": 0.2, "test": 0.2}, seed=4)
    assert got == want
