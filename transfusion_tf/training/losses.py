"""Masked multi-label binary cross-entropy on logits (SPEC T1), the loss of every run.

Normalisation (our choice; the paper does not state one): each known label contributes
`w_t * BCE(y, logit)` and masked-out labels contribute 0. The per-example loss is the sum over
tasks divided by the number of tasks T, and `tf.nn.compute_average_loss` divides the sum of
per-example losses by the GLOBAL batch size B. The loss of a step is therefore

    sum over known labels (w_t * BCE) / (B * T),

a fixed denominator that does not depend on how many labels are masked in a batch or on how the
batch is split over replicas, so every strategy computes the same gradient for the same batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf


def masked_bce_per_example(
    *,
    labels: tf.Tensor,
    logits: tf.Tensor,
    mask: tf.Tensor,
    class_weights: Sequence[float] | None = None,
) -> tf.Tensor:
    """Per-example masked BCE on logits.

    Args:
      labels: float [batch, tasks] in {0, 1} (any value where `mask` is 0).
      logits: [batch, tasks] logits (cast to float32 here, so mixed precision is safe).
      mask: float [batch, tasks], 1 where the label is known.
      class_weights: optional per-task weights `w_t` (length `tasks`).

    Returns:
      float32 [batch]: sum over tasks of `w_t * mask * BCE` divided by the number of tasks.
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.float32)
    mask = tf.cast(mask, tf.float32)
    num_tasks = logits.shape[-1]
    if labels.shape[-1] is not None and num_tasks is not None and labels.shape[-1] != num_tasks:
        raise ValueError(f"labels have {labels.shape[-1]} tasks but logits have {num_tasks}")
    # Masked-out labels may hold any value (e.g. -1 for uncertain); zero them so the loss stays
    # finite, the mask removes them anyway.
    safe_labels = tf.where(mask > 0, labels, tf.zeros_like(labels))
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=safe_labels, logits=logits)
    weighted = bce * mask
    if class_weights is not None:
        weights = tf.constant(list(class_weights), dtype=tf.float32)
        if num_tasks is not None and weights.shape[0] != num_tasks:
            raise ValueError(
                f"class_weights has {weights.shape[0]} entries but the model has {num_tasks} tasks"
            )
        weighted = weighted * weights
    return tf.reduce_sum(weighted, axis=-1) / tf.cast(tf.shape(logits)[-1], tf.float32)


def masked_bce(
    *,
    labels: tf.Tensor,
    logits: tf.Tensor,
    mask: tf.Tensor,
    global_batch_size: int,
    class_weights: Sequence[float] | None = None,
) -> tf.Tensor:
    """Scalar step loss of one replica: per-example masked BCE averaged over the global batch.

    Summed over replicas (what the optimizer's all-reduce does to gradients) this equals the
    loss of the whole global batch; see the module docstring for the normalisation.
    """
    per_example = masked_bce_per_example(
        labels=labels, logits=logits, mask=mask, class_weights=class_weights
    )
    return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
