"""Image decoding (the decode stage of the input pipeline): encoded bytes to pixel tensors.

PNG (8- or 16-bit, gray/gray+alpha/RGB/RGBA) and JPEG are supported. `decode_image` keeps the
stored bit depth (uint8 or uint16); `decode_unit_float` decodes any of them, in graph mode too,
to float32 in [0, 1] exactly (a 16-bit PNG divided by 65535, everything else by 255).
`checked_decode_unit_float` adds cheap integrity checks whose errors name the shard file and
example id, so a corrupt image in a dataset is found by name.
"""

from __future__ import annotations

import tensorflow as tf

from transfusion_tf.data.encode import JPEG_SIGNATURE, JPEG_TRAILER, PNG_SIGNATURE, PNG_TRAILER


def is_png(encoded: tf.Tensor) -> tf.Tensor:
    """True (bool scalar) when `encoded` starts with the PNG signature."""
    return tf.equal(tf.strings.substr(encoded, 0, 8), PNG_SIGNATURE)


def is_jpeg(encoded: tf.Tensor) -> tf.Tensor:
    """True (bool scalar) when `encoded` starts with the JPEG SOI marker."""
    return tf.equal(tf.strings.substr(encoded, 0, 2), JPEG_SIGNATURE)


def png_bit_depth(encoded: tf.Tensor) -> tf.Tensor:
    """Bit depth (int32 scalar) from a PNG's IHDR chunk (byte 24)."""
    return tf.io.decode_raw(tf.strings.substr(encoded, 24, 1), tf.uint8)[0]


def decode_image(encoded, *, channels: int | None = None, dtype: tf.DType | None = None):
    """Decodes PNG/JPEG bytes to a uint8 or uint16 tensor [H, W, C].

    Args:
      encoded: scalar string tensor or Python bytes.
      channels: decode to this many channels (libpng/libjpeg conversion); None keeps the stored.
      dtype: tf.uint8 or tf.uint16. None picks the stored bit depth, which needs eager
        execution (a graph has one static dtype); in graph code pass a dtype or use
        `decode_unit_float`. An 8-bit image decoded as uint16 is scaled by 257 (exact).
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    if dtype is None:
        if not tf.executing_eagerly():
            raise ValueError("decode_image needs an explicit dtype in graph mode")
        if bool(is_png(encoded)) and int(png_bit_depth(encoded)) == 16:
            dtype = tf.uint16
        else:
            dtype = tf.uint8
    if dtype not in (tf.uint8, tf.uint16):
        raise ValueError(f"dtype must be tf.uint8 or tf.uint16, got {dtype}")
    channels = channels or 0
    if dtype == tf.uint8:
        # DecodePng decodes JPEG (and GIF) bytes too, identically to DecodeJpeg's defaults.
        return tf.io.decode_png(encoded, channels=channels)

    def _png():
        return tf.io.decode_png(encoded, channels=channels, dtype=dtype)

    def _jpeg():
        image = tf.io.decode_jpeg(encoded, channels=channels)
        if dtype == tf.uint16:
            image = tf.cast(image, tf.uint16) * 257
        return image

    return tf.cond(is_png(encoded), _png, _jpeg)


def map_decoded(encoded: tf.Tensor, fn, *, channels: int = 0) -> tf.Tensor:
    """Decodes PNG (8/16-bit) or JPEG at its stored bit depth and returns `fn(image, max_value)`.

    `image` is uint8 (max_value 255.0) or uint16 (max_value 65535.0) [H, W, C] with the stored
    channels (channels=0) or converted by the decoder to `channels` (1 or 3: gray is repeated,
    alpha dropped; RGB -> gray uses the decoder's luma weights); `fn` must return the same
    dtype and static shape for both, e.g. float32. This lets later stages (crop-resize,
    augmentation) read the integer pixels directly instead of a float copy, and works in
    graph mode.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    png = is_png(encoded)
    is_16_bit = tf.logical_and(png, tf.equal(png_bit_depth(encoded), 16))

    def _uint16():
        return fn(tf.io.decode_png(encoded, channels=channels, dtype=tf.uint16), 65535.0)

    def _uint8():
        # DecodePng decodes JPEG (and GIF) bytes too, identically to DecodeJpeg's defaults.
        return fn(tf.io.decode_png(encoded, channels=channels), 255.0)

    return tf.cond(is_16_bit, _uint16, _uint8)


def decode_unit_float(encoded: tf.Tensor) -> tf.Tensor:
    """Decodes PNG (8/16-bit) or JPEG bytes to float32 [H, W, C] in [0, 1], stored channels."""
    return map_decoded(encoded, lambda image, max_value: tf.cast(image, tf.float32) / max_value)


def check_size(image: tf.Tensor, *, height: tf.Tensor, width: tf.Tensor, where: tf.Tensor):
    """Asserts that a decoded image [H, W, C] has the stored size; returns it."""
    shape = tf.shape(image, out_type=tf.int64)
    size_ok = tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width))
    check = tf.debugging.Assert(
        size_ok, ["decoded image size differs from the stored size in", where, shape], summarize=3
    )
    with tf.control_dependencies([check]):
        return tf.identity(image)


def check_encoded(encoded: tf.Tensor, *, where: tf.Tensor) -> tf.Tensor:
    """Asserts that `encoded` is a whole PNG or JPEG; returns it (with the check attached).

    `where` is a string tensor (e.g. "file.tfrecord example abc") put into the error message.
    Catches non-image bytes and truncated files (missing PNG IEND / JPEG EOI trailer).
    """
    png_ok = tf.logical_and(
        is_png(encoded), tf.equal(tf.strings.substr(encoded, -12, 12), PNG_TRAILER)
    )
    jpeg_ok = tf.logical_and(
        is_jpeg(encoded), tf.equal(tf.strings.substr(encoded, -2, 2), JPEG_TRAILER)
    )
    length = tf.strings.length(encoded)
    ok = tf.logical_and(length >= 12, tf.logical_or(png_ok, jpeg_ok))
    check = tf.debugging.Assert(
        ok, ["corrupt or truncated image (not a whole PNG/JPEG) in", where], summarize=1
    )
    with tf.control_dependencies([check]):
        return tf.identity(encoded)


def checked_decode_unit_float(
    encoded: tf.Tensor, *, height: tf.Tensor, width: tf.Tensor, where: tf.Tensor
) -> tf.Tensor:
    """`decode_unit_float` with integrity checks naming `where` on failure.

    Checks the container (see `check_encoded`) and that the decoded size equals the stored
    `height` x `width`. Returns float32 [H, W, C] in [0, 1].
    """
    image = decode_unit_float(check_encoded(encoded, where=where))
    return check_size(image, height=height, width=width, where=where)
