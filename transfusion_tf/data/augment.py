"""Train-time augmentation (SPEC D3): seeded, stateless, batched, run next to the model.

The work is split so that the host's input pipeline only decodes (SPEC P1):
  - per batch, on the host: `draw_batch(seed, B)` -> float32 [B, NUM_DRAWS], one
    `stateless_uniform` call from a seed [2] derived from the dataset seed and the batch index,
    put next to the batch of integer pixels;
  - per batch, where the model runs (inside the replica's train step, so on the accelerator):
    `augment_batch(pixels [B, H, W, C], draws [B, NUM_DRAWS])` -> float32 [B, size, size, C],
    normalised by `preprocess.normalize` exactly as evaluation and export are.

`augment_batch` applies, per image:
  - brightness and contrast jitter, a per-image affine map around mid-gray, saturated to [0, 1]
    at the stored pixels (before resampling; bilinear weights are convex, so the resampled
    image stays in range);
  - random zoom and shift as one random crop (side 1 - max_zoom .. 1 of the image, anywhere
    inside it) and the horizontal flip (p = 0.5), both as one `crop_and_resize` box per image
    (a box with x1 > x2 samples the mirror image), bilinear, to `size` x `size`. With the box
    [0, 0, 1, 1] and H = W = size every sample falls on a pixel, so an image that is neither
    zoomed nor jittered comes out exactly as stored (or exactly mirrored);
  - optional small rotation (policy "affine"): one batched `ImageProjectiveTransformV3`;
  - the normalisation of `mode` (`preprocess.normalize`).

Why the split (measured on 2 CPU cores at 224 px, per image, against a ~1.4 ms PNG decode):
a bilinear zoom costs 0.3-0.45 ms on the host (`ResizeBilinear` from float or uint8; nearest
neighbour, `QuantizedResizeBilinear` and batched `crop_and_resize` (~0.8 ms) are no cheaper),
the integer -> float conversion, colour map and float batch copy another 0.2-0.3 ms, and a
float batch is 4x the bytes of a uint8 one on its way to the device. Done per image in the
input pipeline, the default policy reached 0.46-0.59 of the decode-only throughput
(bench/pipeline.py); this batched version, run in the pipeline, 0.33-0.49; deferred to the
train step, the pipeline keeps ~0.89. On an accelerator the batch is a handful of batched
kernels next to the model's own. Where the "device" is the CPU itself, `augment_batch` costs
~1.5 ms ("unit") to ~2.8 ms ("caffe": the channel reversal and per-channel broadcast) per
224 px image (the host_* rows of bench/pipeline.py), small next to a CPU training step of the
study's models at that resolution, and ~50x less at the 32 px of the tests and the demo.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from transfusion_tf.data import preprocess as preprocess_lib

NUM_DRAWS = 7  # flip, zoom, top, left, angle, contrast, brightness


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

IDENTITY = AugmentParams(
    flip=False, max_zoom=0.0, max_rotation_deg=0.0, max_brightness=0.0, max_contrast=0.0
)


def get_policy(name: str) -> AugmentParams | None:
    """The AugmentParams of policy `name` (None for "none"); unknown names raise ValueError."""
    if name not in AUGMENT_POLICIES:
        raise ValueError(f"unknown augmentation {name!r}; choose one of {list(AUGMENT_POLICIES)}")
    return AUGMENT_POLICIES[name]


def draw_uniforms(seed: tf.Tensor) -> tf.Tensor:
    """The augmentation draws of one image: float32 [NUM_DRAWS] uniform in [0, 1).

    `seed` is int [2]; the same seed always gives the same draws (stateless RNG).
    """
    return tf.random.stateless_uniform([NUM_DRAWS], seed=tf.cast(seed, tf.int64))


def draw_batch(seed: tf.Tensor, batch_size: tf.Tensor) -> tf.Tensor:
    """The draws of a batch: float32 [batch_size, NUM_DRAWS] from `seed` (int [2])."""
    return tf.random.stateless_uniform([batch_size, NUM_DRAWS], seed=tf.cast(seed, tf.int64))


def _column(x: tf.Tensor) -> tf.Tensor:
    return x[:, None, None, None]


def _rotate(images: tf.Tensor, angles: tf.Tensor) -> tf.Tensor:
    """Rotates [B, H, W, C] by `angles` [B] radians about the centre (bilinear, reflected)."""
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    cos, sin = tf.cos(angles), tf.sin(angles)
    zeros = tf.zeros_like(angles)
    # Output pixel (x, y) samples input R @ ((x, y) - c) + c.
    transforms = tf.stack(
        [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, zeros, zeros],
        axis=1,
    )
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )


def augment_batch(
    pixels: tf.Tensor,
    draws: tf.Tensor,
    *,
    size: int,
    params: AugmentParams,
    mode: str = "unit",
) -> tf.Tensor:
    """Augments and normalises a batch (see the module docstring).

    Args:
      pixels: uint8 / uint16 [B, H, W, C] (scaled by 255 / 65535) or float [B, H, W, C] in
        [0, 1], C = 1 or 3 (static). The pipeline hands over H = W = size.
      draws: float32 [B, NUM_DRAWS] from `draw_uniforms`, one row per image.
      size: output side.
      params: the policy's ranges.
      mode: the normalisation (`preprocess.PREPROCESS_MODES`).

    Returns:
      float32 [B, size, size, C], values in the range of `mode`. The same pixels and draws
      always give the same output.
    """
    preprocess_lib.check_mode(mode)
    channels = pixels.shape[-1]
    if channels not in (1, 3):
        raise ValueError(f"augment_batch needs 1 or 3 channels, got shape {pixels.shape}")
    u = tf.cast(draws, tf.float32)
    images = preprocess_lib.to_unit_float(pixels)
    if params.max_contrast or params.max_brightness:
        contrast = 1.0 + params.max_contrast * (2.0 * u[:, 5] - 1.0)
        brightness = params.max_brightness * (2.0 * u[:, 6] - 1.0)
        offset = 0.5 - 0.5 * contrast + brightness
        images = tf.clip_by_value(images * _column(contrast) + _column(offset), 0.0, 1.0)
    static = pixels.shape[1] == size and pixels.shape[2] == size
    if params.max_zoom or not static:
        side = 1.0 - params.max_zoom * u[:, 1]
        top, left = u[:, 2] * (1.0 - side), u[:, 3] * (1.0 - side)
        flip = u[:, 0] < 0.5 if params.flip else tf.zeros_like(side, tf.bool)
        x1 = tf.where(flip, left + side, left)
        x2 = tf.where(flip, left, left + side)
        boxes = tf.stack([top, x1, top + side, x2], axis=1)
        images = tf.image.crop_and_resize(
            images, boxes, tf.range(tf.shape(images)[0]), [size, size], method="bilinear"
        )
    elif params.flip:
        images = tf.where(_column(u[:, 0] < 0.5), tf.reverse(images, [2]), images)
    if params.max_rotation_deg:
        angles = math.radians(params.max_rotation_deg) * (2.0 * u[:, 4] - 1.0)
        images = tf.clip_by_value(_rotate(images, angles), 0.0, 1.0)
    images = preprocess_lib.normalize(images, mode=mode)
    images.set_shape([None, size, size, channels])
    return images


def augment_image(
    image: tf.Tensor,
    *,
    seed: tf.Tensor,
    size: int,
    params: AugmentParams = AugmentParams(),
    mode: str = "unit",
) -> tf.Tensor:
    """`augment_batch` of one image [H, W, C] with the draws of `seed` (int [2]).

    Returns float32 [size, size, C]; the same image and seed give the same output.
    """
    return augment_batch(
        image[None], draw_uniforms(seed)[None], size=size, params=params, mode=mode
    )[0]
