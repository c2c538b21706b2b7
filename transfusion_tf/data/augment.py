"""Train-time augmentation (SPEC D3): cheap, seeded, stateless, applied to whole batches.

One affine warp per image (horizontal flip, small rotation, zoom and shift, the shift acting
as a random crop) through a single `ImageProjectiveTransformV3` call on the batch, then
brightness and contrast jitter. Every random number comes from `tf.random.stateless_*` with a
seed derived from the dataset seed and the batch index, so a seeded pipeline augments the same
way every run. Works on float32 images in [0, 1], before normalisation.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """Ranges of the augmentation; each draw is uniform in [-x, x] (zoom: [1 - z, 1 + z])."""

    flip: bool = True
    max_rotation_deg: float = 10.0
    max_zoom: float = 0.1
    max_shift: float = 0.05  # fraction of the image side
    max_brightness: float = 0.1
    max_contrast: float = 0.15


AUGMENT_POLICIES: dict[str, AugmentParams | None] = {
    "default": AugmentParams(),
    "flip": AugmentParams(
        max_rotation_deg=0.0, max_zoom=0.0, max_shift=0.0, max_brightness=0.0, max_contrast=0.0
    ),
    "none": None,
}


def get_policy(name: str) -> AugmentParams | None:
    """The AugmentParams of policy `name` (None for "none"); unknown names raise ValueError."""
    if name not in AUGMENT_POLICIES:
        raise ValueError(f"unknown augmentation {name!r}; choose one of {list(AUGMENT_POLICIES)}")
    return AUGMENT_POLICIES[name]


def _uniform(shape, seed, limit: float, center: float = 0.0) -> tf.Tensor:
    return tf.random.stateless_uniform(
        shape, seed=seed, minval=center - limit, maxval=center + limit, dtype=tf.float32
    )


def augment_batch(
    images: tf.Tensor, *, seed: tf.Tensor, params: AugmentParams = AugmentParams()
) -> tf.Tensor:
    """Augments float32 images [B, H, W, C] in [0, 1]; `seed` is an int tensor of shape [2].

    Returns float32 [B, H, W, C] in [0, 1]. The same images and seed give the same output.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=6)
    batch = tf.shape(images)[0]
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)

    flip = tf.random.stateless_uniform([batch], seed=seeds[0]) < 0.5 if params.flip else None
    sign = tf.where(flip, -1.0, 1.0) if flip is not None else tf.ones([batch])
    angle = _uniform([batch], seeds[1], math.radians(params.max_rotation_deg))
    scale = _uniform([batch], seeds[2], params.max_zoom, center=1.0)
    shift = _uniform([batch, 2], seeds[3], params.max_shift)
    # Output pixel (x, y) samples input A @ (x - c) + c + t; A = R(angle) diag(sign, 1) / scale.
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    a00, a01, a10, a11 = cos * sign, -sin, sin * sign, cos
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    tx, ty = shift[:, 0] * width, shift[:, 1] * height
    zeros = tf.zeros([batch])
    transforms = tf.stack(
        [
            a00,
            a01,
            cx + tx - a00 * cx - a01 * cy,
            a10,
            a11,
            cy + ty - a10 * cx - a11 * cy,
            zeros,
            zeros,
        ],
        axis=1,
    )
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    if params.max_brightness or params.max_contrast:
        brightness = _uniform([batch, 1, 1, 1], seeds[4], params.max_brightness)
        contrast = _uniform([batch, 1, 1, 1], seeds[5], params.max_contrast, center=1.0)
        mean = tf.reduce_mean(out, axis=[1, 2, 3], keepdims=True)
        out = (out - mean) * contrast + mean + brightness
    return tf.clip_by_value(out, 0.0, 1.0)
