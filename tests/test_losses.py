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
