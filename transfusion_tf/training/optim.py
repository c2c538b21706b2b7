"""Optimizers and learning-rate schedules (SPEC T1): the same policy for every init.

The paper does not state its optimizer or schedule; these are our defaults, all flags:
- schedules: `constant`, `cosine` (to 0 at `train_steps`), `step` (x0.1 at 50% and 75% of
  `train_steps`), each with an optional linear warmup over `warmup_steps` from lr/warmup to lr;
- optimizers: `sgd` (momentum, default 0.9), `adam`, `adamw`; `weight_decay` is Keras 3's
  decoupled decay (`w -= lr * weight_decay * w` per step) for all three, and is not applied to
  BatchNorm scales/offsets or biases;
- `precision=mixed_float16` wraps the optimizer in Keras' dynamic `LossScaleOptimizer`.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

SCHEDULES = ("constant", "cosine", "step")
OPTIMIZERS = ("sgd", "adam", "adamw")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STEP_BOUNDARIES = (0.5, 0.75)
STEP_FACTOR = 0.1
NO_DECAY_PATTERN_NAMES = ("gamma", "beta", "bias")


@keras.saving.register_keras_serializable(package="transfusion_tf")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate at an optimizer step: linear warmup, then constant / cosine / step decay."""

    def __init__(
        self,
        *,
        name: str,
        learning_rate: float,
        train_steps: int,
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        validate_schedule(
            name=name,
            learning_rate=learning_rate,
            train_steps=train_steps,
            warmup_steps=warmup_steps,
        )
        self.schedule_name = name
        self.learning_rate = float(learning_rate)
        self.train_steps = int(train_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr = tf.constant(self.learning_rate, tf.float32)
        warmup = float(self.warmup_steps)
        decay_steps = max(float(self.train_steps) - warmup, 1.0)
        progress = tf.clip_by_value((step - warmup) / decay_steps, 0.0, 1.0)
        if self.schedule_name == "cosine":
            value = lr * 0.5 * (1.0 + tf.cos(math.pi * progress))
        elif self.schedule_name == "step":
            passed = tf.add_n(
                [tf.cast(step >= b * self.train_steps, tf.float32) for b in STEP_BOUNDARIES]
            )
            value = lr * tf.pow(STEP_FACTOR, passed)
        else:
            value = lr
        if self.warmup_steps > 0:
            value = tf.where(step < warmup, lr * (step + 1.0) / warmup, value)
        return value

    def get_config(self) -> dict:
        return {
            "name": self.schedule_name,
            "learning_rate": self.learning_rate,
            "train_steps": self.train_steps,
            "warmup_steps": self.warmup_steps,
        }

    @classmethod
    def from_config(cls, config: dict) -> WarmupSchedule:
        return cls(**config)


def validate_schedule(*, name: str, learning_rate: float, train_steps: int, warmup_steps: int):
    """Raises ValueError naming the flag for a bad schedule setting."""
    if name not in SCHEDULES:
        raise ValueError(f"--lr_schedule must be one of {', '.join(SCHEDULES)}; got {name!r}")
    if not learning_rate > 0 or not math.isfinite(learning_rate):
        raise ValueError(f"--learning_rate must be a positive number; got {learning_rate}")
    if train_steps < 1:
        raise ValueError(f"--train_steps must be >= 1; got {train_steps}")
    if warmup_steps < 0:
        raise ValueError(f"--warmup_steps must be >= 0; got {warmup_steps}")


def make_optimizer(
    *,
    name: str,
    learning_rate: keras.optimizers.schedules.LearningRateSchedule | float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    precision: str = "float32",
) -> keras.optimizers.Optimizer:
    """Builds the optimizer; call inside `strategy.scope()` so its variables are distributed."""
    if name not in OPTIMIZERS:
        raise ValueError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if weight_decay < 0:
        raise ValueError(f"--weight_decay must be >= 0; got {weight_decay}")
    decay = weight_decay if weight_decay > 0 else None
    if name == "sgd":
        opt = keras.optimizers.SGD(
            learning_rate=learning_rate, momentum=momentum, weight_decay=decay
        )
    elif name == "adam":
        opt = keras.optimizers.Adam(learning_rate=learning_rate, weight_decay=decay)
    else:
        opt = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)
    if weight_decay > 0:
        opt.exclude_from_weight_decay(var_names=list(NO_DECAY_PATTERN_NAMES))
    if precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt
