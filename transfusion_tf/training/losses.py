"""The training losses on logits (SPEC T1): masked per-task sigmoids, or a softmax over classes.

`LOSSES` are the values of `--loss`: "sigmoid" (multi-label masked binary cross-entropy, one
sigmoid per task: the medical tasks), "softmax" (categorical cross-entropy over mutually
exclusive classes: a single-label source task such as ImageNet or `synthetic_natural`), and
"auto" = softmax for a single-label dataset (`dataset_info.json` "single_label": true), else
sigmoid. `resolve_loss` turns "auto" into one of the two; a run records the resolved name.

Sigmoid normalisation (our choice; the paper does not state one): each known label contributes
`w_t * BCE(y, logit)` and masked-out labels contribute 0. The per-example loss is the sum over
tasks divided by the number of tasks T, and `tf.nn.compute_average_loss` divides the sum of
per-example losses by the GLOBAL batch size B. The loss of a step is therefore

    sum over known labels (w_t * BCE) / (B * T),

a fixed denominator that does not depend on how many labels are masked in a batch or on how the
batch is split over replicas, so every strategy computes the same gradient for the same batch.

Softmax: an example with a one-hot label (every label known, exactly one positive: class c)
contributes `w_c * CE(c, logits)`; any other example contributes 0 (it has no class to learn).
The step loss is the sum over examples divided by the global batch size B, as above.

Both cast logits to float32 first (the head is float32 under mixed precision anyway). The same
functions give the evaluation loss (`mean_loss`, the whole split as one batch), so the train
and eval losses cannot drift apart; `probabilities` is the matching output activation, used by
evaluation and by the exported model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

LOSSES = ("auto", "sigmoid", "softmax")


def resolve_loss(name: str, *, single_label: bool, dataset: str = "the dataset") -> str:
    """The loss a run trains with: "sigmoid" or "softmax" ("auto" decided by `single_label`).

    Raises ValueError naming `--loss` for an unknown name, or softmax on a multi-label dataset.
    """
    if name not in LOSSES:
        raise ValueError(f"--loss={name!r} is unknown; choose one of: {', '.join(LOSSES)}")
    if name == "auto":
        return "softmax" if single_label else "sigmoid"
    if name == "softmax" and not single_label:
        raise ValueError(
            f"--loss=softmax needs a single-label dataset (mutually exclusive classes, one "
            f"positive per example), but {dataset} is multi-label (its dataset_info.json "
            '"single_label" is false or absent); use --loss=sigmoid or --loss=auto'
        )
    return name


def _check_trained(loss: str) -> None:
    if loss not in ("sigmoid", "softmax"):
        raise ValueError(f"loss must be 'sigmoid' or 'softmax' (resolved); got {loss!r}")


def _class_weights(class_weights: Sequence[float], num_tasks: int | None) -> tf.Tensor:
    weights = tf.constant(list(class_weights), dtype=tf.float32)
    if num_tasks is not None and weights.shape[0] != num_tasks:
        raise ValueError(
            f"class_weights has {weights.shape[0]} entries but the model has {num_tasks} tasks"
        )
    return weights


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
        weighted = weighted * _class_weights(class_weights, num_tasks)
    return tf.reduce_sum(weighted, axis=-1) / tf.cast(tf.shape(logits)[-1], tf.float32)


def one_hot_mask(labels: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """float32 [batch]: 1 where the label vector is one-hot (`schema.is_one_hot`), else 0."""
    labels = tf.cast(labels, tf.float32)
    known = tf.reduce_all(tf.cast(mask, tf.float32) > 0, axis=-1)
    positives = tf.reduce_sum(tf.cast(labels >= 0.5, tf.float32), axis=-1)
    return tf.cast(tf.logical_and(known, tf.equal(positives, 1.0)), tf.float32)


def masked_softmax_ce_per_example(
    *,
    labels: tf.Tensor,
    logits: tf.Tensor,
    mask: tf.Tensor,
    class_weights: Sequence[float] | None = None,
) -> tf.Tensor:
    """Per-example categorical cross-entropy over classes, on logits.

    Args:
      labels: float [batch, classes], one-hot where the example has a class.
      logits: [batch, classes] logits (cast to float32 here, so mixed precision is safe).
      mask: float [batch, classes], 1 where the label is known.
      class_weights: optional per-class weights `w_c` (length `classes`).

    Returns:
      float32 [batch]: `w_c * CE(c, logits)` for an example of class c (one-hot label), 0 for
      an example without one (an unknown label, no positive or several).
    """
    logits = tf.cast(logits, tf.float32)
    num_classes = logits.shape[-1]
    if labels.shape[-1] is not None and num_classes is not None and labels.shape[-1] != num_classes:
        raise ValueError(f"labels have {labels.shape[-1]} classes but logits have {num_classes}")
    valid = one_hot_mask(labels, mask)
    # All-zero targets for an example without a class: its loss and gradient are exactly 0.
    targets = tf.cast(tf.cast(labels, tf.float32) >= 0.5, tf.float32) * valid[:, None]
    ce = tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits) * valid
    if class_weights is not None:
        ce = ce * tf.reduce_sum(targets * _class_weights(class_weights, num_classes), axis=-1)
    return ce


def per_example_loss(
    loss: str,
    *,
    labels: tf.Tensor,
    logits: tf.Tensor,
    mask: tf.Tensor,
    class_weights: Sequence[float] | None = None,
) -> tf.Tensor:
    """float32 [batch]: the per-example loss of a resolved `loss` ("sigmoid" or "softmax")."""
    _check_trained(loss)
    fn = masked_softmax_ce_per_example if loss == "softmax" else masked_bce_per_example
    return fn(labels=labels, logits=logits, mask=mask, class_weights=class_weights)


def step_loss(
    loss: str,
    *,
    labels: tf.Tensor,
    logits: tf.Tensor,
    mask: tf.Tensor,
    global_batch_size: int,
    class_weights: Sequence[float] | None = None,
) -> tf.Tensor:
    """Scalar step loss of one replica: per-example `loss` averaged over the global batch."""
    per_example = per_example_loss(
        loss, labels=labels, logits=logits, mask=mask, class_weights=class_weights
    )
    return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)


def mean_loss(
    loss: str,
    *,
    labels: np.ndarray,
    logits: np.ndarray,
    mask: np.ndarray,
    class_weights: Sequence[float] | None = None,
) -> float:
    """The training loss of a whole split [N, T] taken as one batch (the evaluation loss)."""
    n = int(np.shape(labels)[0])
    value = step_loss(
        loss,
        labels=tf.constant(labels, tf.float32),
        logits=tf.constant(logits, tf.float32),
        mask=tf.constant(mask, tf.float32),
        global_batch_size=max(n, 1),
        class_weights=class_weights,
    )
    return float(value.numpy())


def probabilities(logits: tf.Tensor, *, loss: str) -> tf.Tensor:
    """float32 [batch, tasks]: per-task sigmoids, or a softmax over the classes."""
    _check_trained(loss)
    logits = tf.cast(logits, tf.float32)
    return tf.nn.softmax(logits, axis=-1) if loss == "softmax" else tf.sigmoid(logits)


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
