"""Exact AUC metrics: sklearn agreement, masking, undefined tasks, bootstrap CIs, thresholds."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from transfusion_tf.training import metrics


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=(n, 3)).astype(np.float32)
    scores = labels * 0.6 + rng.random((n, 3))
    mask = (rng.random((n, 3)) > 0.2).astype(np.float32)
    return labels, scores, mask


def test_auc_report_matches_sklearn_on_known_labels():
    labels, scores, mask = _data()
    rep = metrics.auc_report(labels=labels, scores=scores, mask=mask, tasks=["a", "b", "c"])
    for t, task in enumerate("abc"):
        keep = mask[:, t] > 0
        assert rep["auc"][task] == pytest.approx(roc_auc_score(labels[keep, t], scores[keep, t]))
        assert rep["auprc"][task] == pytest.approx(
            average_precision_score(labels[keep, t], scores[keep, t])
        )
        assert rep["num_labelled"][task] == keep.sum()
    assert rep["auc_mean"] == pytest.approx(np.mean(list(rep["auc"].values())))


def test_single_class_task_is_undefined_and_left_out_of_mean():
    labels, scores, mask = _data()
    labels[:, 1] = 1.0
    rep = metrics.auc_report(labels=labels, scores=scores, mask=mask, tasks=["a", "b", "c"])
    assert rep["auc"]["b"] is None and rep["auprc"]["b"] is None
    assert rep["auc_mean"] == pytest.approx((rep["auc"]["a"] + rep["auc"]["c"]) / 2)


def test_all_tasks_undefined_gives_none_mean():
    rep = metrics.auc_report(
        labels=np.ones((4, 1)), scores=np.random.rand(4, 1), mask=None, tasks=["x"]
    )
    assert rep["auc_mean"] is None


def test_perfect_and_inverted_scores():
    labels = np.array([[0.0], [0.0], [1.0], [1.0]])
    rep = metrics.auc_report(labels=labels, scores=labels, mask=None, tasks=["t"])
    assert rep["auc"]["t"] == 1.0
    rep = metrics.auc_report(labels=labels, scores=-labels, mask=None, tasks=["t"])
    assert rep["auc"]["t"] == 0.0


def test_shape_and_value_errors():
    with pytest.raises(ValueError, match="must all be"):
        metrics.auc_report(labels=np.ones((3, 2)), scores=np.ones((3, 1)), mask=None, tasks="ab")
    with pytest.raises(ValueError, match="task names"):
        metrics.auc_report(labels=np.ones((3, 2)), scores=np.ones((3, 2)), mask=None, tasks=["a"])
    with pytest.raises(ValueError, match="NaN"):
        metrics.auc_report(
            labels=np.ones((2, 1)), scores=np.array([[np.nan], [0.0]]), mask=None, tasks=["a"]
        )


def test_bootstrap_is_seeded_and_brackets_the_point_estimate():
    labels, scores, mask = _data(n=80)
    kwargs = dict(labels=labels, scores=scores, mask=mask, tasks=["a", "b", "c"], num_samples=30)
    a = metrics.bootstrap_report(seed=3, **kwargs)
    b = metrics.bootstrap_report(seed=3, **kwargs)
    c = metrics.bootstrap_report(seed=4, **kwargs)
    assert a["auc_ci"] == b["auc_ci"]
    assert a["auc_ci"] != c["auc_ci"]
    for task in "abc":
        low, high = a["auc_ci"][task]
        assert low <= a["auc"][task] <= high and low < high
    low, high = a["auc_mean_ci"]
    assert low <= a["auc_mean"] <= high
    with pytest.raises(ValueError, match="num_samples"):
        metrics.bootstrap_report(**{**kwargs, "num_samples": 0})


def test_steps_to_threshold():
    history = [
        {"step": 10, "auc_mean": 0.7},
        {"step": 20, "auc_mean": None},
        {"step": 30, "auc_mean": 0.92},
        {"step": 40, "auc_mean": 0.95},
    ]
    got = metrics.steps_to_threshold(history, (0.91, 0.95, 0.99))
    assert got == {"0.91": 30, "0.95": 40, "0.99": None}


def test_topk_accuracy_known_answer_ties_and_one_hot_rows():
    labels = np.eye(7)[[0, 1, 2, 3]]
    scores = np.array(
        [
            [0.9, 0.1, 0, 0, 0, 0, 0],  # class 0 first: top-1 hit
            [0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.0],  # class 1 second: top-5 hit only
            [0.6, 0.5, 0.0, 0.4, 0.3, 0.2, 0.1],  # class 2 last: a miss
            [0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2],  # all tied: a hit (as tf.math.in_top_k)
        ]
    )
    mask = np.ones_like(labels)
    assert metrics.topk_accuracy(labels=labels, scores=scores, mask=mask, k=1) == 0.5
    assert metrics.topk_accuracy(labels=labels, scores=scores, mask=mask, k=5) == 0.75
    mask[0, 3] = 0  # example 0 has an unknown label now: left out
    assert metrics.topk_accuracy(labels=labels, scores=scores, mask=mask, k=1) == pytest.approx(
        1 / 3
    )
    report = metrics.accuracy_report(labels=labels, scores=scores, mask=mask)
    assert set(report) == {"top1_accuracy", "top5_accuracy"}
    five = metrics.accuracy_report(labels=labels[:, :5], scores=scores[:, :5], mask=mask[:, :5])
    assert set(five) == {"top1_accuracy"}  # top-5 of 5 classes is always 1
    none = metrics.topk_accuracy(labels=np.zeros((2, 3)), scores=np.zeros((2, 3)), mask=None, k=1)
    assert none is None


def _history(*points, tasks=None):
    """Eval records from (step, mean AUC) points, or (step, {task: AUC}) with `tasks`."""
    out = []
    for step, value in points:
        if isinstance(value, dict):
            defined = [v for v in value.values() if v is not None]
            mean = sum(defined) / len(defined) if defined else None
            out.append({"step": step, "auc": value, "auc_mean": mean})
        else:
            out.append({"step": step, "auc": {"t": value}, "auc_mean": value})
    return out


def test_crossing_is_interpolated_between_the_bracketing_evals():
    history = _history((0, 0.5), (100, 0.7), (200, 0.9), (300, 0.95))
    got = metrics.threshold_crossing(history, threshold=0.8)
    assert got == {"step": 200, "interpolated": pytest.approx(150.0), "censored": False}
    # a threshold met exactly at an eval is crossed there
    assert metrics.threshold_crossing(history, threshold=0.9)["interpolated"] == 200.0


def test_crossing_at_the_step_zero_eval():
    history = _history((0, 0.92), (100, 0.95))
    got = metrics.threshold_crossing(history, threshold=0.91, rule="sustained")
    assert got == {"step": 0, "interpolated": 0.0, "censored": False}


def test_threshold_never_reached_is_censored():
    history = _history((0, 0.5), (100, 0.7), (200, 0.8))
    got = metrics.threshold_crossing(history, threshold=0.91)
    assert got == {"step": None, "interpolated": None, "censored": True}
    crossings = metrics.threshold_crossings(history, (0.6, 0.91))
    assert crossings["0.91"]["censored"] and not crossings["0.6"]["censored"]
    assert metrics.steps_to_threshold(history, (0.6, 0.91)) == {"0.6": 100, "0.91": None}


def test_sustained_rule_rejects_a_single_spike():
    history = _history((0, 0.5), (100, 0.95), (200, 0.8), (300, 0.92), (400, 0.93))
    first = metrics.threshold_crossing(history, threshold=0.91, rule="first")
    assert first["step"] == 100
    assert first["interpolated"] == pytest.approx(100 * 0.41 / 0.45)
    sustained = metrics.threshold_crossing(history, threshold=0.91, rule="sustained")
    assert sustained["step"] == 300
    assert sustained["interpolated"] == pytest.approx(200 + 100 * 0.11 / 0.12)
    # a spike that is the only crossing leaves the threshold censored
    spike = _history((0, 0.5), (100, 0.95), (200, 0.8), (300, 0.85))
    assert metrics.threshold_crossing(spike, threshold=0.91, rule="sustained")["censored"]
    # an undefined AUC at the next eval does not confirm a crossing
    gap = _history((0, 0.5), (100, 0.95), (200, None), (300, 0.96), (400, 0.97))
    assert metrics.threshold_crossing(gap, threshold=0.91, rule="sustained")["step"] == 300


def test_sustained_rule_counts_a_crossing_at_the_last_eval():
    history = _history((0, 0.5), (100, 0.7), (200, 0.95))
    got = metrics.threshold_crossing(history, threshold=0.91, rule="sustained")
    assert got["step"] == 200 and not got["censored"]


def test_per_task_thresholds_use_the_named_tasks_only():
    history = _history(
        (0, {"a": 0.5, "b": 0.6}), (100, {"a": 0.6, "b": 0.92}), (200, {"a": 0.9, "b": 0.95})
    )
    assert metrics.threshold_crossing(history, threshold=0.91)["step"] == 200  # mean
    assert metrics.threshold_crossing(history, threshold=0.91, tasks=("b",))["step"] == 100
    both = metrics.threshold_crossing(history, threshold=0.76, tasks=("a", "b"))
    assert both["step"] == 100  # mean of a and b: 0.55, 0.76, 0.925
    assert metrics.convergence_auc(history[1], tasks=("b",)) == 0.92
    assert metrics.convergence_auc({"auc": {"a": None}, "auc_mean": None}, tasks=("a",)) is None


def test_auc_curve_area_is_the_mean_auc_over_the_step_span():
    history = _history((0, 0.5), (100, 0.7), (300, 0.9))
    assert metrics.auc_curve_area(history) == pytest.approx((0.6 * 100 + 0.8 * 200) / 300)
    flat = _history((0, 0.8), (50, 0.8), (100, 0.8))
    assert metrics.auc_curve_area(flat) == pytest.approx(0.8)
    # a faster curve to the same end scores higher
    fast = _history((0, 0.5), (100, 0.9), (300, 0.9))
    assert metrics.auc_curve_area(fast) > metrics.auc_curve_area(history)
    assert metrics.auc_curve_area(_history((0, None), (10, 0.7))) == 0.7
    assert metrics.auc_curve_area([]) is None
    per_task = _history((0, {"a": 0.5, "b": 0.7}), (100, {"a": 0.5, "b": 0.9}))
    assert metrics.auc_curve_area(per_task, tasks=("b",)) == pytest.approx(0.8)


def test_unknown_threshold_rule_names_the_flag():
    with pytest.raises(ValueError, match="--threshold_rule"):
        metrics.threshold_crossing(_history((0, 0.5)), threshold=0.9, rule="median")
