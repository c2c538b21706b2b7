"""Converter building blocks: label policies, CSV reading, safe paths, patient-level splits,
options, per-image processing, the registry and the summary (no TensorFlow needed)."""

import inspect
import io
import os

import numpy as np
import pytest
from PIL import Image

from transfusion_tf.data import encode
from transfusion_tf.data.converters import base, driver, imageio, registry

FORMATS = ("aptos", "chexpert", "csv", "eyepacs", "folder", "medmnist", "synthetic")


def test_registry_is_complete_and_keyword_only():
    assert registry.CONVERTERS.names() == sorted(FORMATS)
    for name in registry.CONVERTERS.names():
        fn = registry.CONVERTERS.get(name)
        params = inspect.signature(fn).parameters
        assert list(params) == ["input_path", "output_dir", "options"], name
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values()), name
        assert fn.__doc__, name


def test_registry_import_does_not_load_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys; import transfusion_tf.data.converters.registry, transfusion_tf.cli.prepare;"
        "sys.exit(int('tensorflow' in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_unknown_format_is_an_error_naming_the_choices():
    with pytest.raises(base.ConversionError, match=r"unknown --format 'dicomdir'.*chexpert"):
        registry.prepare_dataset(
            source_format="dicomdir", input_path="x", output_dir="y", options=base.ConvertOptions()
        )


@pytest.mark.parametrize(
    ("cell", "uncertain", "blank", "expected"),
    [
        ("1.0", "ignore", "negative", (1.0, 1.0)),
        ("1", "ignore", "negative", (1.0, 1.0)),
        ("0.0", "ones", "negative", (0.0, 1.0)),
        ("-1.0", "ones", "negative", (1.0, 1.0)),
        ("-1", "zeros", "negative", (0.0, 1.0)),
        ("-1.0", "ignore", "negative", (0.0, 0.0)),
        ("", "ignore", "negative", (0.0, 1.0)),
        ("  ", "ignore", "ignore", (0.0, 0.0)),
        (None, "ones", "ignore", (0.0, 0.0)),
    ],
)
def test_parse_label_policies(cell, uncertain, blank, expected):
    got = base.parse_label(cell, uncertain_policy=uncertain, blank_policy=blank, where="f.csv:2")
    assert got == expected


@pytest.mark.parametrize("cell", ["2.0", "yes", "0.5", "nan"])
def test_parse_label_unknown_value_names_the_place(cell):
    with pytest.raises(base.ConversionError, match=rf"f\.csv:7: column 'Edema'.*{cell!r}"):
        base.parse_label(
            cell, uncertain_policy="ones", blank_policy="negative", where="f.csv:7: column 'Edema'"
        )


def test_read_csv_checks_columns_and_skips_blank_lines(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("\ufeffpath,Edema\nx.png,1\n\n y.png ,0\nz.png\n", encoding="utf-8")
    table = base.read_csv(str(path), required=["path", "Edema"])
    assert table.columns == ["path", "Edema"]
    assert [line for line, _ in table.rows] == [2, 4, 5]
    assert table.rows[1][1]["Edema"] == "0"
    assert table.rows[2][1] == {"path": "z.png", "Edema": ""}  # short row: blank cells
    with pytest.raises(base.ConversionError, match=r"a\.csv: missing required column.*'level'"):
        base.read_csv(str(path), required=["level"])


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "empty"), ("a,b\n1,2,3\n", "row has 3 cells"), (b"\xff\xfe\x00bad", "UTF-8")],
)
def test_read_csv_malformed(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(base.ConversionError, match=rf"bad\.csv.*{message}"):
        base.read_csv(str(path))
    with pytest.raises(base.ConversionError, match=r"missing\.csv: CSV file not found"):
        base.read_csv(str(tmp_path / "missing.csv"))


@pytest.mark.parametrize(
    ("relative", "inside"),
    [
        ("a/b.png", True),
        ("./a/../b.png", True),
        ("../b.png", False),
        ("a/../../b.png", False),
        ("/etc/passwd", False),
        ("..\\..\\b.png", False),
        ("C:/data/b.png", False),
        ("", False),
    ],
)
def test_resolve_under_refuses_paths_leaving_the_root(tmp_path, relative, inside):
    resolved = base.resolve_under(str(tmp_path), relative)
    assert (resolved is not None) == inside
    if inside:
        assert os.path.commonpath([resolved, str(tmp_path)]) == str(tmp_path)


def test_split_by_patient_is_seeded_disjoint_and_sized():
    patients = [f"p{i}" for i in range(50)] * 2
    fractions = {"valid": 0.2, "test": 0.1}
    a = base.split_by_patient(patients, fractions=fractions, seed=3)
    b = base.split_by_patient(list(reversed(patients)), fractions=fractions, seed=3)
    c = base.split_by_patient(patients, fractions=fractions, seed=4)
    assert a == b  # depends on the set of ids and the seed only
    assert a != c
    counts = {s: sum(1 for v in a.values() if v == s) for s in ("train", "valid", "test")}
    assert counts == {"train": 35, "valid": 10, "test": 5}


def test_split_by_patient_gives_small_splits_one_patient_but_keeps_train():
    got = base.split_by_patient(["a", "b", "c"], fractions={"valid": 0.01, "test": 0.01}, seed=0)
    assert sorted(got.values()) == ["test", "train", "valid"]
    one = base.split_by_patient(["a"], fractions={"valid": 0.5}, seed=0)
    assert one == {"a": "train"}


def _record(example_id, patient, split=None):
    return base.SourceRecord(example_id, patient, (0.0,), (1.0,), path=example_id, split=split)


def test_assign_splits_keeps_source_splits_and_carves_the_missing_ones():
    records = [_record(f"t{i}", f"p{i // 2}", "train") for i in range(40)]
    records += [_record(f"v{i}", f"q{i}", "valid") for i in range(5)]
    out, expected = base.assign_splits(records, valid_fraction=0.3, test_fraction=0.25, seed=0)
    assert expected == ["train", "valid", "test"]
    assert [r.split for r in out if r.example_id.startswith("v")] == ["valid"] * 5
    carved = {r.patient_id for r in out if r.split == "test"}
    assert len(carved) == 5  # 25% of the 20 train patients; valid is not carved again
    assert not any(r.split == "valid" for r in out if r.example_id.startswith("t"))
    base.check_patients_disjoint(out, input_path="in")


def test_leaky_source_splits_are_an_error():
    records = [_record("a", "p1", "train"), _record("b", "p1", "valid")]
    with pytest.raises(base.ConversionError, match="patient 'p1' appears in splits"):
        base.check_patients_disjoint(records, input_path="in.csv")


def test_select_tasks():
    assert base.select_tasks(["a", "b", "c"], None, default=["b"]) == ["b"]
    assert base.select_tasks(["a", "b", "c"], ["c", "a"], default=["b"]) == ["c", "a"]
    with pytest.raises(base.ConversionError, match=r"unknown task\(s\) \['Nodule'\].*a, b"):
        base.select_tasks(["a", "b"], ["Nodule"], default=["a"])
    with pytest.raises(base.ConversionError, match="twice"):
        base.select_tasks(["a", "b"], ["a", "a"], default=["a"])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("uncertain_policy", "maybe", "uncertain_policy"),
        ("blank_policy", "zeros", "blank_policy"),
        ("valid_fraction", 1.2, "valid_fraction"),
        ("test_fraction", 0.6, r"valid_fraction \+ test_fraction"),
        ("image_size", 0, "image_size"),
        ("num_shards", 0, "num_shards"),
        ("workers", 0, "workers"),
        ("num_examples", 0, "num_examples"),
    ],
)
def test_convert_options_validation(field, value, message):
    kwargs = {"valid_fraction": 0.5} if field == "test_fraction" else {}
    with pytest.raises(ValueError, match=message):
        base.ConvertOptions(**{**kwargs, field: value})


def _png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_process_image_passes_through_and_resizes(tmp_path):
    gray = (np.arange(48 * 40).reshape(48, 40) % 251).astype(np.uint8)
    path = tmp_path / "g.png"
    path.write_bytes(_png_bytes(gray))
    same = imageio.process_image(imageio.ImageTask(0, str(path), None, None))
    assert same.error is None and same.data == path.read_bytes()
    assert (same.height, same.width, same.channels, same.encoding) == (48, 40, 1, "png")
    small = imageio.process_image(imageio.ImageTask(1, str(path), None, 16))
    assert (small.height, small.width, small.channels) == (16, 16, 1)
    decoded = np.asarray(Image.open(io.BytesIO(small.data)))
    assert decoded.shape == (16, 16) and decoded.dtype == np.uint8


def test_process_image_keeps_16_bit_and_converts_odd_modes(tmp_path):
    deep = (np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)
    resized = imageio.process_image(imageio.ImageTask(0, None, deep, 8))
    image = Image.open(io.BytesIO(resized.data))
    assert resized.encoding == "png" and image.mode == "I;16"
    assert np.asarray(image).max() > 60000
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 0] = 200
    path = tmp_path / "a.png"
    Image.fromarray(rgba).save(path)
    out = imageio.process_image(imageio.ImageTask(0, str(path), None, None))
    assert out.error is None and out.channels == 3
    assert np.asarray(Image.open(io.BytesIO(out.data)))[0, 0].tolist() == [200, 0, 0]


def test_process_image_reports_missing_truncated_and_corrupt_files(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    jpeg = encode.encode_jpeg(rgb)
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    (tmp_path / "empty.jpg").write_bytes(b"")
    cases = {"cut.jpg": "corrupt image", "junk.png": "corrupt image", "empty.jpg": "empty file"}
    for name, reason in cases.items():
        out = imageio.process_image(imageio.ImageTask(0, str(tmp_path / name), None, None))
        assert out.error is not None and reason in out.error, (name, out.error)
    missing = imageio.process_image(imageio.ImageTask(0, str(tmp_path / "nope.png"), None, None))
    assert missing.error == "missing file"


def test_auto_shards():
    assert driver.shards_for(10, None) == 1
    assert driver.shards_for(2500, None) == 3
    assert driver.shards_for(10, 4) == 4


def test_format_summary_lists_counts_positives_and_skips():
    info = {
        "source_format": "eyepacs",
        "tasks": ["referable_dr"],
        "image_encoding": "jpeg",
        "splits": {
            "train": {
                "num_examples": 8,
                "labelled": {"referable_dr": 8},
                "positives": {"referable_dr": 3},
            },
            "valid": {
                "num_examples": 2,
                "labelled": {"referable_dr": 2},
                "positives": {"referable_dr": 1},
            },
        },
        "skipped": [{"path": f"train/{i}_left.jpeg", "reason": "missing file"} for i in range(12)],
    }
    text = driver.format_summary(info)
    assert "3/8" in text and "1/2" in text
    assert "tasks: 1 (multi-label)" in text  # no single_label key: an older directory
    assert "(single-label classes)" in driver.format_summary(dict(info, single_label=True))
    assert "skipped inputs: 12" in text and "12 x missing file" in text
    assert "and 4 more" in text
    assert len(text.splitlines()) < 25
