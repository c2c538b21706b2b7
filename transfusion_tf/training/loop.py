"""The one custom training loop used under every tf.distribute strategy (SPEC T2).

Keras 3 `fit()` does not run under MultiWorkerMirroredStrategy (keras-team/keras#20585) and
ends some runs with an idle stall while tf.data autotuning winds down, so the trainer owns its
loop: `strategy.run` of one step inside a `tf.function` that runs `steps_per_loop` steps with
`tf.range` per host call. The Keras optimizer all-reduces (sums) gradients across replicas, so
each replica's loss is divided by the GLOBAL batch size (`losses.step_loss`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from transfusion_tf.training import losses


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss becomes NaN or infinite (SPEC T4)."""


def make_train_loop(
    *,
    strategy: tf.distribute.Strategy,
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    global_batch_size: int,
    loss: str = "sigmoid",
    class_weights: Sequence[float] | None = None,
    prepare_batch: Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]] | None = None,
) -> Callable[[Iterator, tf.Tensor], tf.Tensor]:
    """Returns `train_loop(iterator, num_steps) -> mean loss` over `num_steps` steps.

    `iterator` yields per-replica batches {"image": [b, H, W, C], "labels": [b, T],
    "mask": [b, T], ...} from `strategy.distribute_datasets_from_function`; `num_steps` is a
    scalar int32 tensor (a tensor, so one trace serves every loop length). `prepare_batch`,
    if given, maps each batch first, inside the replica's step and so on its device: the
    trainer passes `pipeline.DeferredAugment`, which turns batches of integer pixels and
    augmentation draws into images. `loss` is a resolved name of `losses.LOSSES`.
    """

    def step_fn(batch: dict[str, tf.Tensor]) -> tf.Tensor:
        if prepare_batch is not None:
            batch = prepare_batch(batch)
        with tf.GradientTape() as tape:
            logits = model(batch["image"], training=True)
            value = losses.step_loss(
                loss,
                labels=batch["labels"],
                logits=logits,
                mask=batch["mask"],
                global_batch_size=global_batch_size,
                class_weights=class_weights,
            )
            if model.losses:
                value += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = optimizer.scale_loss(value)
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return value

    @tf.function
    def train_loop(iterator, num_steps):
        total = tf.constant(0.0, tf.float32)
        for _ in tf.range(num_steps):
            per_replica = strategy.run(step_fn, args=(next(iterator),))
            total += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        return total / tf.cast(num_steps, tf.float32)

    return train_loop


def images_spec(model: keras.Model) -> tf.TensorSpec:
    """float32 [None, H, W, C] of `model`'s input: a function traced with it serves every
    batch size (a split's smaller last batch included) from one trace."""
    return tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name="images")


def make_predict_fn(
    model: keras.Model, *, loss: str = "sigmoid"
) -> Callable[[tf.Tensor], tf.Tensor]:
    """Returns a tf.function mapping images [B, H, W, C] to float32 probabilities [B, T].

    The probabilities are those of the run's (resolved) `loss`: per-task sigmoids, or a softmax
    over the classes (`losses.probabilities`).
    """

    @tf.function(input_signature=[images_spec(model)])
    def predict(images):
        return losses.probabilities(model(images, training=False), loss=loss)

    return predict


def make_logits_fn(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """Returns a tf.function mapping images [B, H, W, C] to float32 logits [B, T]."""

    @tf.function(input_signature=[images_spec(model)])
    def logits(images):
        return tf.cast(model(images, training=False), tf.float32)

    return logits


def predict_dataset(
    predict: Callable[[tf.Tensor], tf.Tensor], dataset: tf.data.Dataset
) -> dict[str, Any]:
    """Runs `predict` over a finite dataset of batches; every worker sees the whole split.

    Returns numpy arrays {"scores": [N, T], "labels": [N, T], "mask": [N, T],
    "example_id": [N]} in dataset order.
    """
    scores, labels, masks, ids = [], [], [], []
    for batch in dataset:
        scores.append(predict(batch["image"]).numpy())
        labels.append(batch["labels"].numpy())
        masks.append(batch["mask"].numpy())
        if "example_id" in batch:
            ids.append(batch["example_id"].numpy())
    if not scores:
        raise ValueError("the evaluation split is empty")
    return {
        "scores": np.concatenate(scores),
        "labels": np.concatenate(labels),
        "mask": np.concatenate(masks),
        "example_id": np.concatenate(ids) if ids else np.array([], dtype=object),
    }
