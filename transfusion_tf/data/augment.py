"""Train-time augmentation (SPEC D3): cheap, seeded, stateless, one image at a time.

`augment_pixels` takes a decoded image [H, W, C] (uint8 / uint16 pixels, or float in [0, 1])
and returns float32 [size, size, C], already scaled by a `preprocess.Normalization`:
  - horizontal flip (p = 0.5);
  - random zoom and shift as one random crop (side 1 - max_zoom .. 1 of the image, anywhere
    inside it) resized bilinearly to `size`; this is also the resize to the model input;
  - optional small rotation (policy "affine"): one `ImageProjectiveTransformV3` call;
  - brightness and contrast jitter (a per-image affine map around mid-gray), saturated to
    [0, 1] at the stored pixels, i.e. before the resampling.
`augment_image` is the same with the "unit" normalisation: float32 in [0, 1].

Every random number comes from one `tf.random.stateless_uniform` draw with a seed [2] derived
from the dataset seed and the element index, so a seeded pipeline augments the same way on
every run.

Cost (SPEC P1: the pipeline must keep >= 0.8x the decode-only throughput). On CPU every op on
a full float image costs 5-20% of a 224 px PNG decode, so the order of operations is chosen
to touch the pixels as few times as possible:
  1. crop (a slice) and flip (a reverse) on the integer pixels, a quarter of the float bytes;
     caffe's RGB -> BGR order is folded into the flip (reversing the flattened [W * 3] rows
     flips and reverses the channels in one op);
  2. integer -> float, contrast, brightness and the scalar part of the normalisation as one
     `Dequantize` op (a cast with an affine map), then one clip (skipped when the jitter maps
     [0, 1] into itself): colour jitter saturates at the pixel level, and bilinear weights are
     convex, so the resampled image stays in range;
  3. one bilinear resize to `size` (skipped when the crop already has that size), with
     antialiasing only when shrinking.
Measured on 2 CPU cores at 224 px, per image (a PNG decode ~1 ms): resize from float ~0.2 ms,
clip ~0.1 ms, Dequantize ~0.07 ms, flip ~0.09 ms (half the images), crop ~0.04 ms; the float
batch copy another ~0.08 ms. So the default policy costs about half a decode; the bilinear
zoom alone is ~0.2 decode, which bounds the pipeline/decode-floor ratio well below 1.
The per-channel part of a normalisation (caffe's means, torch's means and stds) is left to
`preprocess.Normalization.apply_channels`, which the pipeline runs once per batch.
Measured alternatives that lose: `tf.image.crop_and_resize` over the batch costs ~3x a
`ResizeBilinear` from float input; a negative-stride slice costs about a PNG decode; per-
channel broadcasts ([..., 3] operands) and channel gathers cost 3-10x a scalar multiply-add;
`ImageProjectiveTransformV3` costs about two PNG decodes (hence rotation is not in the
default policy).
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from transfusion_tf.data import preprocess as preprocess_lib


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


@dataclasses.dataclass(frozen=True)
class Draw:
    """The random choices for one image (scalar tensors): crop box, flip, angle, colour."""

    top: tf.Tensor
    left: tf.Tensor
    crop_h: tf.Tensor
    crop_w: tf.Tensor
    flip: tf.Tensor
    angle: tf.Tensor
    contrast: tf.Tensor
    brightness: tf.Tensor


def draw(seed: tf.Tensor, *, height: tf.Tensor, width: tf.Tensor, params: AugmentParams) -> Draw:
    """Draws the augmentation of one height x width image from `seed` (int [2]).

    One `stateless_uniform` call gives all seven numbers, so the same seed and image size
    always give the same crop, flip, angle and colour map.
    """
    u = tf.random.stateless_uniform([7], seed=tf.cast(seed, tf.int64))
    side = 1.0 - params.max_zoom * u[1]
    crop_h = tf.maximum(tf.cast(tf.round(side * tf.cast(height, tf.float32)), tf.int32), 1)
    crop_w = tf.maximum(tf.cast(tf.round(side * tf.cast(width, tf.float32)), tf.int32), 1)
    top = tf.cast(u[2] * tf.cast(height - crop_h + 1, tf.float32), tf.int32)
    left = tf.cast(u[3] * tf.cast(width - crop_w + 1, tf.float32), tf.int32)
    limit = math.radians(params.max_rotation_deg)
    return Draw(
        top=tf.minimum(top, height - crop_h),
        left=tf.minimum(left, width - crop_w),
        crop_h=crop_h,
        crop_w=crop_w,
        flip=tf.logical_and(tf.constant(params.flip), u[0] < 0.5),
        angle=limit * (2.0 * u[4] - 1.0),
        contrast=1.0 + params.max_contrast * (2.0 * u[5] - 1.0),
        brightness=params.max_brightness * (2.0 * u[6] - 1.0),
    )


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


def flip_and_order(
    crop: tf.Tensor, *, flip: tf.Tensor, reverse_channels: bool, channels: int
) -> tf.Tensor:
    """Mirrors [h, w, C] left-right when `flip`; reverses the channel order if asked.

    A flip with reversed channels is one reverse of the flattened [h, w * C] rows.
    """
    if not reverse_channels or channels == 1:
        return tf.cond(flip, lambda: tf.reverse(crop, [1]), lambda: crop)
    shape = tf.shape(crop)

    def flip_reverse():
        rows = tf.reshape(crop, [shape[0], shape[1] * channels])
        return tf.reshape(tf.reverse(rows, [1]), shape)

    return tf.cond(flip, flip_reverse, lambda: tf.reverse(crop, [2]))


def scale_shift(pixels: tf.Tensor, *, scale: tf.Tensor, offset: tf.Tensor, max_value: float):
    """float32 `pixels * scale / max_value + offset` in one op for uint8 / uint16 pixels.

    Integer pixels go through `Dequantize` (a cast with an affine map, as cheap as a plain
    cast); float pixels (max_value 1) through one multiply-add.
    """
    if pixels.dtype in (tf.uint8, tf.uint16):
        quantized = tf.quint8 if pixels.dtype == tf.uint8 else tf.quint16
        return tf.raw_ops.Dequantize(
            input=tf.bitcast(pixels, quantized),
            min_range=offset,
            max_range=offset + scale,
            mode="MIN_COMBINED",
        )
    return tf.cast(pixels, tf.float32) * (scale / max_value) + offset


def augment_pixels(
    pixels: tf.Tensor,
    *,
    seed: tf.Tensor,
    size: int,
    params: AugmentParams,
    normalization: preprocess_lib.Normalization,
    max_value: float = 1.0,
) -> tf.Tensor:
    """Augments and scales one image [H, W, C] to float32 [size, size, C] (see module doc).

    `pixels` are uint8 (max_value 255), uint16 (max_value 65535) or float in [0, 1]
    (max_value 1) with C = normalization.channels. The output is
    `normalization.apply_channels(output)`-ready: [0, 1] colour-jittered values mapped by the
    scalar part of the normalisation (for "unit": [0, 1] itself). The same pixels and seed
    give the same output.
    """
    channels = normalization.channels
    shape = tf.shape(pixels)
    d = draw(seed, height=shape[0], width=shape[1], params=params)
    crop = tf.slice(pixels, tf.stack([d.top, d.left, 0]), tf.stack([d.crop_h, d.crop_w, -1]))
    crop = flip_and_order(
        crop, flip=d.flip, reverse_channels=normalization.reverse_channels, channels=channels
    )
    # Colour jitter (x - 0.5) * contrast + 0.5 + brightness, then the scalar normalisation
    # y * s + o, as one affine map of the pixels; saturating at 0 and 1 before it is the clip
    # to [o, s + o] after it (s > 0).
    s, o = normalization.scale, normalization.offset
    unit_scale = d.contrast
    unit_offset = 0.5 - 0.5 * d.contrast + d.brightness
    image = scale_shift(crop, scale=unit_scale * s, offset=unit_offset * s + o, max_value=max_value)
    # The clip is a whole pass over the image: skip it when the jitter keeps [0, 1] inside.
    # (With a margin for rounding, so that outputs never leave [o, s + o].)
    inside = tf.logical_and(unit_offset >= 1e-6, unit_offset + unit_scale <= 1.0 - 1e-6)
    image = tf.cond(inside, lambda: image, lambda: tf.clip_by_value(image, o, s + o))

    def resize():
        shrink = tf.maximum(d.crop_h, d.crop_w) > size
        return tf.cond(
            shrink,
            lambda: tf.clip_by_value(
                tf.image.resize(image, [size, size], antialias=True), o, s + o
            ),
            lambda: tf.raw_ops.ResizeBilinear(
                images=image[None], size=[size, size], half_pixel_centers=True
            )[0],
        )

    same = tf.logical_and(tf.equal(d.crop_h, size), tf.equal(d.crop_w, size))
    out = tf.cond(same, lambda: image, resize)
    if params.max_rotation_deg:
        out = tf.clip_by_value(_rotate(out, d.angle), o, s + o)
    out.set_shape([size, size, channels])
    return out


def augment_image(
    image: tf.Tensor,
    *,
    seed: tf.Tensor,
    size: int,
    params: AugmentParams = AugmentParams(),
    max_value: float = 1.0,
) -> tf.Tensor:
    """Augments an image [H, W, C] to float32 [size, size, C] in [0, 1]; `seed` is int [2].

    `image` is float in [0, 1] (max_value 1) or uint8/uint16 pixels (max_value 255 / 65535).
    The same image and seed give the same output.
    """
    channels = image.shape[-1]
    if channels not in (1, 3):
        raise ValueError(f"augment_image needs 1 or 3 channels, got shape {image.shape}")
    return augment_pixels(
        image,
        seed=seed,
        size=size,
        params=params,
        normalization=preprocess_lib.normalization("unit", channels=channels),
        max_value=max_value,
    )
