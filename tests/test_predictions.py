"""The per-example predictions files (training.predictions): round trip, no pickle, bad files."""

import numpy as np
import pytest

from transfusion_tf.training import predictions


def _arrays(n=6, tasks=2, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=(n, tasks)).astype(np.float32)
    return labels, rng.random((n, tasks)).astype(np.float32), np.ones((n, tasks), np.float32)


def test_round_trip_keeps_arrays_ids_tasks_and_step(tmp_path):
    labels, scores, mask = _arrays()
    ids = np.array([f"img{i}".encode() for i in range(6)], dtype=object)  # as tf.data gives them
    path = predictions.save_predictions(
        str(tmp_path / "p.npz"),
        labels=labels,
        scores=scores,
        mask=mask,
        tasks=["a", "b"],
        example_id=ids,
        step=40,
    )
    got = predictions.load_predictions(path)
    np.testing.assert_array_equal(got.labels, labels)
    np.testing.assert_array_equal(got.scores, scores)
    np.testing.assert_array_equal(got.mask, mask)
    assert got.example_id.tolist() == [f"img{i}" for i in range(6)]
    assert got.tasks == ("a", "b") and got.step == 40 and got.num_examples == 6
    # stored without pickled objects: numpy loads it with allow_pickle=False
    with np.load(path, allow_pickle=False) as data:
        assert data["example_id"].dtype.kind == "U"
    assert not list(tmp_path.glob(".predictions-*"))


def test_same_examples_compares_ids_labels_and_mask(tmp_path):
    labels, scores, mask = _arrays()
    a = predictions.Predictions(labels, scores, mask, np.array(["x"] * 6), ("a", "b"))
    assert a.same_examples(predictions.Predictions(labels, scores * 0, mask, a.example_id, a.tasks))
    assert not a.same_examples(
        predictions.Predictions(labels, scores, mask, np.array(["y"] * 6), a.tasks)
    )
    assert not a.same_examples(
        predictions.Predictions(1 - labels, scores, mask, a.example_id, a.tasks)
    )
    assert not a.same_examples(
        predictions.Predictions(labels, scores, mask, a.example_id, ("a", "c"))
    )


def test_bad_shapes_are_refused(tmp_path):
    labels, scores, mask = _arrays()
    with pytest.raises(ValueError, match="examples, tasks"):
        predictions.save_predictions(
            str(tmp_path / "p.npz"), labels=labels, scores=scores[:3], mask=mask, tasks=["a", "b"]
        )
    with pytest.raises(ValueError, match="task names"):
        predictions.save_predictions(
            str(tmp_path / "p.npz"), labels=labels, scores=scores, mask=mask, tasks=["a"]
        )


def test_malformed_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="bad.npz"):
        predictions.load_predictions(str(bad))
    partial = tmp_path / "partial.npz"
    np.savez(partial, labels=np.zeros((2, 1)))
    with pytest.raises(ValueError, match="partial.npz.*missing arrays"):
        predictions.load_predictions(str(partial))
    pickled = tmp_path / "pickled.npz"
    labels, scores, mask = _arrays()
    np.savez(
        pickled,
        labels=labels,
        scores=scores,
        mask=mask,
        example_id=np.array([object()] * 6, dtype=object),
        tasks=np.array(["a", "b"]),
        step=np.array(1),
    )
    with pytest.raises(ValueError, match="pickled.npz"):
        predictions.load_predictions(str(pickled))
