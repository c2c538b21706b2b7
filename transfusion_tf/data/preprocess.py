"""Image preprocessing shared by training, evaluation and export (SPEC D3, T6).

`preprocess_image` takes a decoded uint8/uint16 image [H, W, C] and returns float32
[image_size, image_size, channels]:
  1. scale to [0, 1] by the dtype's maximum (255 or 65535; float input must already be [0, 1]);
  2. convert channels: gray -> RGB by repetition, RGB -> gray by ITU-R 601 luma, alpha dropped;
  3. resize to a square `image_size` (bilinear, antialiased; skipped when already that size);
  4. normalise by `mode`, matching the weight source:
     - "unit": keep [0, 1] (our own random-init or synthetic-source models);
     - "caffe", "tf", "torch": exactly `keras.applications.imagenet_utils.preprocess_input`
       with that mode applied to 255 * x (ResNet50: caffe, Inception-v3: tf, DenseNet: torch).
       With channels=1 the per-channel ImageNet mean (and std) are averaged over RGB.
Evaluation (and training without augmentation) runs exactly `preprocess_image` per image.
Augmented training runs steps 2-3 on the host at the stored integer depth (`prepare_pixels`:
the decoded pixels, converted and resized only when they differ from the model input), and
step 1 and 4 after the augmentation, in `augment.augment_batch`, with these same functions.
Export imports this module.
"""

from __future__ import annotations

import tensorflow as tf

from transfusion_tf.data import decode as decode_lib

PREPROCESS_MODES = ("unit", "caffe", "tf", "torch")

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def check_mode(mode: str) -> str:
    """Returns `mode` if it is one of PREPROCESS_MODES, else raises ValueError."""
    if mode not in PREPROCESS_MODES:
        raise ValueError(
            f"unknown preprocess mode {mode!r}; choose one of {list(PREPROCESS_MODES)}"
        )
    return mode


def check_channels(channels: int) -> int:
    """Returns `channels` if it is 1 or 3, else raises ValueError."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    return channels


def to_unit_float(image: tf.Tensor) -> tf.Tensor:
    """uint8 / uint16 [..., C] -> float32 in [0, 1] (float input is passed through as float32)."""
    if image.dtype == tf.uint8:
        return tf.cast(image, tf.float32) / 255.0
    if image.dtype == tf.uint16:
        return tf.cast(image, tf.float32) / 65535.0
    if image.dtype.is_floating:
        return tf.cast(image, tf.float32)
    raise ValueError(f"images must be uint8, uint16 or float, got {image.dtype}")


def to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """float32 [H, W, c] with c in 1..4 (dynamic) -> [H, W, channels] (1 or 3)."""
    check_channels(channels)
    c = tf.shape(image)[-1]

    def gray():
        g = image[..., :1]
        return tf.tile(g, [1, 1, 3]) if channels == 3 else g

    def color():
        rgb = image[..., :3]
        return rgb if channels == 3 else tf.image.rgb_to_grayscale(rgb)

    out = tf.cond(c < 3, gray, color)
    out.set_shape([None, None, channels])
    return out


def resize_square(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Bilinear (antialiased) resize of [H, W, C] to [image_size, image_size, C]."""
    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], image_size), tf.equal(shape[1], image_size))
    out = tf.cond(
        same,
        lambda: image,
        lambda: tf.image.resize(image, [image_size, image_size], antialias=True),
    )
    out.set_shape([image_size, image_size, image.shape[-1]])
    return out


def prepare_unit(image: tf.Tensor, *, image_size: int, channels: int) -> tf.Tensor:
    """Steps 1-3: decoded [H, W, c] -> float32 [image_size, image_size, channels] in [0, 1]."""
    return resize_square(to_channels(to_unit_float(image), channels), image_size)


def _requantize(image: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """float32 in [0, 1] -> the nearest uint8 / uint16 value (saturating)."""
    max_value = 255.0 if dtype == tf.uint8 else 65535.0
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * max_value), dtype)


def prepare_pixels(image: tf.Tensor, *, image_size: int, channels: int) -> tf.Tensor:
    """Steps 2-3 at the stored depth: uint8/uint16 [H, W, c] -> same dtype [S, S, channels].

    S = image_size. Gray stays gray or is repeated, alpha is dropped; an image of the model's
    size and channels passes through untouched (no copy). A colour image made gray (luma) or
    an image of another size is converted in float exactly as `prepare_unit` does and rounded
    back to the integer dtype, i.e. within half a quantisation step of `prepare_unit`.
    """
    check_channels(channels)
    dtype = image.dtype
    if dtype not in (tf.uint8, tf.uint16):
        raise ValueError(f"prepare_pixels needs uint8 or uint16 pixels, got {dtype}")
    shape = tf.shape(image)
    fits = tf.logical_and(tf.equal(shape[0], image_size), tf.equal(shape[1], image_size))
    if image.shape[-1] == channels:

        def keep():
            return image

    else:
        stored = shape[2]
        usable = tf.equal(stored, channels)
        if channels == 3:
            usable = tf.logical_or(usable, tf.equal(stored, 4))  # RGBA: drop alpha
        else:
            usable = tf.logical_or(usable, stored < 3)  # gray + alpha: drop alpha
        fits = tf.logical_and(fits, usable)

        def keep():
            return image[..., :channels]

    def convert():
        unit = prepare_unit(image, image_size=image_size, channels=channels)
        return _requantize(unit, dtype)

    out = tf.cond(fits, keep, convert)
    out.set_shape([image_size, image_size, channels])
    return out


def normalize(x: tf.Tensor, *, mode: str) -> tf.Tensor:
    """Step 4: float32 [..., C] in [0, 1] -> the value range of `mode` (C = 1 or 3)."""
    check_mode(mode)
    channels = x.shape[-1]
    if mode == "unit":
        return x
    x255 = x * 255.0
    if mode == "tf":
        return x255 / 127.5 - 1.0
    if mode == "torch":
        mean, std = tf.constant(_TORCH_MEAN), tf.constant(_TORCH_STD)
        if channels == 1:
            mean, std = tf.reduce_mean(mean, keepdims=True), tf.reduce_mean(std, keepdims=True)
        return (x255 / 255.0 - mean) / std
    mean = tf.constant(_CAFFE_MEAN_BGR)
    if channels == 1:
        return x255 - tf.reduce_mean(mean)
    return tf.reverse(x255, axis=[-1]) - mean


def preprocess_image(image: tf.Tensor, *, image_size: int, channels: int, mode: str) -> tf.Tensor:
    """Decoded uint8/uint16 [H, W, C] -> float32 [image_size, image_size, channels] (steps 1-4)."""
    check_mode(mode)
    return normalize(prepare_unit(image, image_size=image_size, channels=channels), mode=mode)


def decode_and_preprocess(
    encoded: tf.Tensor, *, image_size: int, channels: int, mode: str
) -> tf.Tensor:
    """Encoded PNG/JPEG bytes (scalar string) -> float32 [image_size, image_size, channels]."""
    check_mode(mode)
    image = decode_lib.decode_unit_float(encoded)
    return normalize(prepare_unit(image, image_size=image_size, channels=channels), mode=mode)
