"""Train-time augmentation (SPEC D3): cheap, seeded, stateless, one image at a time.

`augment_image` takes a float32 image [H, W, C] in [0, 1] and returns [size, size, C] in [0, 1]:
  - horizontal flip (p = 0.5);
  - random zoom and shift as one random crop (side 1 - max_zoom .. 1 of the image, anywhere
    inside it) resized bilinearly to `size`; this is also the resize to the model input, so
    on shards stored larger than the model it costs nothing extra;
  - optional small rotation (policy "affine"): one `ImageProjectiveTransformV3` call;
  - brightness and contrast jitter (a per-image affine map around mid-gray), clipped to [0, 1].
Every random number comes from `tf.random.stateless_*` with a seed [2] derived from the dataset
seed and the element index, so a seeded pipeline augments the same way on every run.

Why rotation is not in the default: on CPU the projective warp of a 224 px image costs about
twice the PNG decode itself (measured on 2 cores), which would cut the pipeline to a fraction
of the decode-only floor (SPEC P1); `tf.image.crop_and_resize` costs about one decode, so
the zoom is a plain slice + `tf.image.resize` instead.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """Ranges of the augmentation; draws are uniform (zoom: crop side in [1 - z, 1])."""

    flip: bool = True
    max_zoom: float = 0.15
    max_rotation_deg: float = 0.0
    max_brightness: float = 0.1
    max_contrast: float = 0.15


AUGMENT_POLICIES: dict[str, AugmentParams | None] = {
    "default": AugmentParams(),
    "affine": AugmentParams(max_rotation_deg=10.0),
    "flip": AugmentParams(max_zoom=0.0, max_brightness=0.0, max_contrast=0.0),
    "none": None,
}


def get_policy(name: str) -> AugmentParams | None:
    """The AugmentParams of policy `name` (None for "none"); unknown names raise ValueError."""
    if name not in AUGMENT_POLICIES:
        raise ValueError(f"unknown augmentation {name!r}; choose one of {list(AUGMENT_POLICIES)}")
    return AUGMENT_POLICIES[name]


def _rotate(image: tf.Tensor, angle: tf.Tensor) -> tf.Tensor:
    """Rotates [H, W, C] by `angle` radians about its centre (bilinear, reflected border)."""
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Output pixel (x, y) samples input R @ ((x, y) - c) + c.
    transform = tf.stack(
        [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0]
    )
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform[None],
        output_shape=tf.shape(image)[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )[0]


def augment_image(
    image: tf.Tensor,
    *,
    seed: tf.Tensor,
    size: int,
    params: AugmentParams = AugmentParams(),
    max_value: float = 1.0,
) -> tf.Tensor:
    """Augments an image [H, W, C] to float32 [size, size, C] in [0, 1]; `seed` is int [2].

    `image` is float in [0, 1] (max_value 1) or uint8/uint16 pixels (max_value 255 / 65535),
    cropped and flipped as integers, so the only float copy is the resized output; scaling,
    contrast and brightness are one multiply-add. The same image and seed give the same output.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=5)
    channels = image.shape[-1]
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    side = tf.random.stateless_uniform([], seed=seeds[1], minval=1.0 - params.max_zoom, maxval=1.0)
    crop_h = tf.maximum(tf.cast(tf.round(side * tf.cast(height, tf.float32)), tf.int32), 1)
    crop_w = tf.maximum(tf.cast(tf.round(side * tf.cast(width, tf.float32)), tf.int32), 1)
    where = tf.random.stateless_uniform([2], seed=seeds[2])
    top = tf.cast(where[0] * tf.cast(height - crop_h + 1, tf.float32), tf.int32)
    left = tf.cast(where[1] * tf.cast(width - crop_w + 1, tf.float32), tf.int32)
    crop = tf.slice(image, [top, left, 0], [crop_h, crop_w, -1])
    if params.flip:
        flip = tf.random.stateless_uniform([], seed=seeds[0]) < 0.5
        crop = tf.cond(flip, lambda: tf.reverse(crop, [1]), lambda: crop)
    # Antialiasing only matters when shrinking; skipping it otherwise halves the resize cost.
    out = tf.cond(
        tf.maximum(crop_h, crop_w) > size,
        lambda: tf.image.resize(crop, [size, size], antialias=True),
        lambda: tf.image.resize(crop, [size, size]),
    )
    if params.max_rotation_deg:
        limit = math.radians(params.max_rotation_deg)
        angle = tf.random.stateless_uniform([], seed=seeds[3], minval=-limit, maxval=limit)
        out = _rotate(out, angle)
    # (x / max_value - 0.5) * contrast + 0.5 + brightness, as one multiply-add.
    jitter = tf.random.stateless_uniform([2], seed=seeds[4], minval=-1.0, maxval=1.0)
    contrast = 1.0 + params.max_contrast * jitter[0]
    brightness = params.max_brightness * jitter[1]
    out = out * (contrast / max_value) + (0.5 - 0.5 * contrast + brightness)
    out = tf.clip_by_value(out, 0.0, 1.0)
    out.set_shape([size, size, channels])
    return out
