"""Masked multi-label BCE: known answers, masking, class weights, global-batch normalisation."""

import numpy as np
import pytest
import tensorflow as tf

from transfusion_tf.training import losses


def _bce(y, z):
    return max(z, 0) - z * y + np.log1p(np.exp(-abs(z)))


def test_per_example_known_answer_with_mask():
    labels = tf.constant([[1.0, 0.0], [0.0, -1.0]])
    logits = tf.constant([[2.0, -1.0], [0.5, 3.0]])
    mask = tf.constant([[1.0, 1.0], [1.0, 0.0]])
    got = losses.masked_bce_per_example(labels=labels, logits=logits, mask=mask).numpy()
    want = [(_bce(1, 2.0) + _bce(0, -1.0)) / 2, _bce(0, 0.5) / 2]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_masked_label_value_does_not_matter():
    logits = tf.constant([[0.3, -2.0]])
    mask = tf.constant([[1.0, 0.0]])
    a = losses.masked_bce_per_example(labels=tf.constant([[1.0, 0.0]]), logits=logits, mask=mask)
    b = losses.masked_bce_per_example(labels=tf.constant([[1.0, -1.0]]), logits=logits, mask=mask)
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_class_weights_and_global_batch():
    labels = tf.constant([[1.0, 1.0]] * 2)
    logits = tf.zeros([2, 2])
    mask = tf.ones([2, 2])
    loss = losses.masked_bce(
        labels=labels, logits=logits, mask=mask, global_batch_size=8, class_weights=(1.0, 3.0)
    )
    # sum over known labels of w * log 2 / (B_global * T)
    np.testing.assert_allclose(loss.numpy(), 2 * (1 + 3) * np.log(2) / (8 * 2), rtol=1e-6)


def test_float16_logits_give_float32_loss():
    loss = losses.masked_bce_per_example(
        labels=tf.ones([3, 1]), logits=tf.zeros([3, 1], tf.float16), mask=tf.ones([3, 1])
    )
    assert loss.dtype == tf.float32


def test_bad_class_weights_length():
    with pytest.raises(ValueError, match="class_weights has 3 entries"):
        losses.masked_bce_per_example(
            labels=tf.ones([1, 2]),
            logits=tf.zeros([1, 2]),
            mask=tf.ones([1, 2]),
            class_weights=(1.0, 2.0, 3.0),
        )


def _ce(z, c):
    z = np.asarray(z, np.float64)
    return float(np.log(np.sum(np.exp(z - z.max()))) + z.max() - z[c])


def test_softmax_known_answer_leaves_examples_without_a_class_out():
    labels = tf.constant([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    logits = tf.constant([[0.5, 2.0, -1.0], [1.0, 0.0, 3.0], [4.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    mask = tf.constant([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    got = losses.masked_softmax_ce_per_example(labels=labels, logits=logits, mask=mask).numpy()
    # Example 1 has an unknown label, 2 no class, 3 two classes: each contributes 0.
    np.testing.assert_allclose(got, [_ce([0.5, 2.0, -1.0], 1), 0.0, 0.0, 0.0], rtol=1e-6)
    weighted = losses.masked_softmax_ce_per_example(
        labels=labels, logits=logits, mask=mask, class_weights=(1.0, 3.0, 1.0)
    )
    np.testing.assert_allclose(weighted.numpy(), 3 * got, rtol=1e-6)
    step = losses.step_loss("softmax", labels=labels, logits=logits, mask=mask, global_batch_size=8)
    np.testing.assert_allclose(step.numpy(), got.sum() / 8, rtol=1e-6)


def test_softmax_gives_no_gradient_to_examples_without_a_class():
    logits = tf.Variable([[0.3, -1.0, 2.0], [1.0, 1.0, 1.0]])
    labels = tf.constant([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    mask = tf.constant([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    with tf.GradientTape() as tape:
        loss = losses.step_loss(
            "softmax", labels=labels, logits=logits, mask=mask, global_batch_size=2
        )
    grad = tape.gradient(loss, logits).numpy()
    assert np.all(grad[1] == 0.0) and np.any(grad[0] != 0.0)


def test_softmax_float16_logits_give_float32_loss_and_probabilities():
    logits = tf.constant([[1.0, 2.0, 0.5]], tf.float16)
    labels, mask = tf.constant([[0.0, 1.0, 0.0]]), tf.ones([1, 3])
    loss = losses.masked_softmax_ce_per_example(labels=labels, logits=logits, mask=mask)
    assert loss.dtype == tf.float32
    probs = losses.probabilities(logits, loss="softmax")
    assert probs.dtype == tf.float32
    np.testing.assert_allclose(probs.numpy().sum(axis=-1), 1.0, rtol=1e-6)
    sig = losses.probabilities(logits, loss="sigmoid").numpy()
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(-np.array([[1.0, 2.0, 0.5]]))), rtol=1e-3)


def test_sigmoid_step_loss_is_the_masked_bce():
    labels = tf.constant([[1.0, 0.0], [0.0, -1.0]])
    logits = tf.constant([[2.0, -1.0], [0.5, 3.0]])
    mask = tf.constant([[1.0, 1.0], [1.0, 0.0]])
    kwargs = dict(labels=labels, logits=logits, mask=mask, global_batch_size=4)
    np.testing.assert_array_equal(
        losses.step_loss("sigmoid", **kwargs).numpy(), losses.masked_bce(**kwargs).numpy()
    )


@pytest.mark.parametrize("loss", ["sigmoid", "softmax"])
def test_mean_loss_is_the_step_loss_of_the_whole_split(loss):
    rng = np.random.default_rng(0)
    labels = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 10)]
    logits = rng.normal(size=(10, 4)).astype(np.float32)
    mask = np.ones_like(labels)
    mask[3, 1] = 0.0
    got = losses.mean_loss(loss, labels=labels, logits=logits, mask=mask, class_weights=None)
    want = losses.step_loss(
        loss,
        labels=tf.constant(labels),
        logits=tf.constant(logits),
        mask=tf.constant(mask),
        global_batch_size=10,
    )
    assert got == pytest.approx(float(want.numpy()), rel=1e-6)


def test_resolve_loss_and_bad_values_name_the_flag():
    assert losses.resolve_loss("auto", single_label=True) == "softmax"
    assert losses.resolve_loss("auto", single_label=False) == "sigmoid"
    assert losses.resolve_loss("sigmoid", single_label=True) == "sigmoid"
    assert losses.resolve_loss("softmax", single_label=True) == "softmax"
    with pytest.raises(ValueError, match=r"--loss='hinge' is unknown; choose one of: auto, "):
        losses.resolve_loss("hinge", single_label=True)
    with pytest.raises(ValueError, match=r"--loss=softmax needs a single-label dataset.*data/cxr"):
        losses.resolve_loss("softmax", single_label=False, dataset="data/cxr")
    with pytest.raises(ValueError, match="resolved"):
        losses.probabilities(tf.zeros([1, 2]), loss="auto")
