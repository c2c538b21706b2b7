"""Tests of the shared preprocessing and of the batch augmentation (SPEC D3)."""

import numpy as np
import pytest
import tensorflow as tf
from keras.applications import imagenet_utils

from transfusion_tf.data import augment, decode, preprocess
from transfusion_tf.data.encode import encode_png


def _rgb(size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_modes_equal_keras_preprocess_input(mode):
    image = _rgb()
    ours = preprocess.preprocess_image(tf.constant(image), image_size=8, channels=3, mode=mode)
    keras_out = imagenet_utils.preprocess_input(image.astype(np.float32), mode=mode)
    np.testing.assert_allclose(ours.numpy(), keras_out, rtol=1e-5, atol=1e-4)


def test_unit_mode_scales_by_dtype_max():
    image16 = np.array([[0, 32768, 65535]], np.uint16)[..., None]
    out = preprocess.preprocess_image(tf.constant(image16), image_size=3, channels=1, mode="unit")
    # A 1x3 image squashed to 3x3: every row equals the input row.
    np.testing.assert_allclose(out.numpy()[1, :, 0], [0.0, 32768 / 65535, 1.0], atol=1e-3)
    image8 = np.full((4, 4, 1), 255, np.uint8)
    out8 = preprocess.preprocess_image(tf.constant(image8), image_size=4, channels=1, mode="unit")
    np.testing.assert_allclose(out8.numpy(), 1.0)


def test_gray_to_rgb_rgb_to_gray_and_alpha():
    gray = np.random.default_rng(1).integers(0, 256, (6, 6, 1), dtype=np.uint8)
    rgb = preprocess.preprocess_image(tf.constant(gray), image_size=6, channels=3, mode="unit")
    np.testing.assert_allclose(rgb.numpy(), np.repeat(gray / 255.0, 3, axis=-1), atol=1e-6)
    color = _rgb(6)
    g = preprocess.preprocess_image(tf.constant(color), image_size=6, channels=1, mode="unit")
    luma = color @ np.array([0.2989, 0.587, 0.114]) / 255.0
    np.testing.assert_allclose(g.numpy()[..., 0], luma, atol=2e-3)
    rgba = np.concatenate([color, np.zeros((6, 6, 1), np.uint8)], -1)
    no_alpha = preprocess.preprocess_image(tf.constant(rgba), image_size=6, channels=3, mode="tf")
    with_rgb = preprocess.preprocess_image(tf.constant(color), image_size=6, channels=3, mode="tf")
    np.testing.assert_allclose(no_alpha.numpy(), with_rgb.numpy())


def test_one_channel_modes_use_mean_imagenet_statistics():
    gray = np.full((2, 2, 1), 100, np.uint8)
    caffe = preprocess.preprocess_image(tf.constant(gray), image_size=2, channels=1, mode="caffe")
    np.testing.assert_allclose(caffe.numpy(), 100 - np.mean([103.939, 116.779, 123.68]), atol=1e-4)
    torch = preprocess.preprocess_image(tf.constant(gray), image_size=2, channels=1, mode="torch")
    expected = (100 / 255 - np.mean([0.485, 0.456, 0.406])) / np.mean([0.229, 0.224, 0.225])
    np.testing.assert_allclose(torch.numpy(), expected, atol=1e-5)


def test_resize_and_decode_and_preprocess_agree():
    image = _rgb(20, seed=3)
    direct = preprocess.preprocess_image(tf.constant(image), image_size=12, channels=3, mode="tf")
    assert direct.shape == (12, 12, 3) and direct.dtype == tf.float32
    fn = tf.function(
        lambda b: preprocess.decode_and_preprocess(b, image_size=12, channels=3, mode="tf")
    )
    from_bytes = fn(tf.constant(encode_png(image)))
    np.testing.assert_allclose(from_bytes.numpy(), direct.numpy(), atol=1e-5)
    decoded = decode.decode_image(encode_png(image))
    np.testing.assert_array_equal(decoded.numpy(), image)


def test_bad_mode_and_channels():
    image = tf.zeros([4, 4, 3], tf.uint8)
    with pytest.raises(ValueError, match="unknown preprocess mode 'imagenet'"):
        preprocess.preprocess_image(image, image_size=4, channels=3, mode="imagenet")
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        preprocess.preprocess_image(image, image_size=4, channels=2, mode="unit")


def _image(size=16, seed=5):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.uniform(0, 1, (size, size, 3)).astype(np.float32))


@pytest.mark.parametrize("policy", ["default", "affine"])
def test_augment_is_seeded_and_keeps_range(policy):
    image, params = _image(), augment.get_policy(policy)
    a = augment.augment_image(image, seed=tf.constant([1, 2]), size=12, params=params)
    b = augment.augment_image(image, seed=tf.constant([1, 2]), size=12, params=params)
    c = augment.augment_image(image, seed=tf.constant([1, 3]), size=12, params=params)
    assert a.shape == (12, 12, 3)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.allclose(a.numpy(), c.numpy())
    assert a.numpy().min() >= 0.0 and a.numpy().max() <= 1.0


def test_flip_policy_mirrors_exactly():
    image = _image()
    params = augment.get_policy("flip")
    flipped = 0
    for i in range(16):
        out = augment.augment_image(image, seed=tf.constant([0, i]), size=16, params=params)
        if np.allclose(out.numpy(), image.numpy()[:, ::-1], atol=1e-5):
            flipped += 1
        else:
            np.testing.assert_allclose(out.numpy(), image.numpy(), atol=1e-5)
    assert 0 < flipped < 16


def test_rotation_turns_the_image():
    image = np.zeros((33, 33, 1), np.float32)
    image[16, 20:, 0] = 1.0  # a bar to the right of the centre
    params = augment.AugmentParams(
        flip=False, max_zoom=0.0, max_rotation_deg=90.0, max_brightness=0.0, max_contrast=0.0
    )
    out = augment.augment_image(
        tf.constant(image), seed=tf.constant([0, 1]), size=33, params=params
    )
    assert out.numpy()[16, 20:, 0].mean() < 0.9  # moved off the horizontal line
    np.testing.assert_allclose(out.numpy()[16, 16, 0], 1.0 if image[16, 16, 0] else 0.0)


def test_unknown_augmentation():
    assert augment.get_policy("none") is None
    with pytest.raises(ValueError, match="unknown augmentation 'randaugment'"):
        augment.get_policy("randaugment")


def _pixels(shape, dtype=np.uint8, seed=4):
    high = np.iinfo(dtype).max + 1
    return np.random.default_rng(seed).integers(0, high, shape).astype(dtype)


def _draws(batch, seed=0):
    return augment.draw_batch(tf.constant([seed, 0]), batch)


@pytest.mark.parametrize("mode", ["unit", "caffe", "tf", "torch"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3])
def test_identity_augmentation_equals_preprocess_image(mode, dtype, channels):
    """augment_batch with nothing random is preprocess_image, integer or float input."""
    pixels = _pixels((3, 12, 12, channels), dtype)
    max_value = float(np.iinfo(dtype).max)
    expected = np.stack(
        [
            preprocess.preprocess_image(
                tf.constant(p), image_size=12, channels=channels, mode=mode
            ).numpy()
            for p in pixels
        ]
    )
    for images in (tf.constant(pixels), tf.constant(pixels / max_value, tf.float32)):
        out = augment.augment_batch(images, _draws(3), size=12, params=augment.IDENTITY, mode=mode)
        assert out.shape == (3, 12, 12, channels) and out.dtype == tf.float32
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-5)


def test_integer_and_float_inputs_augment_alike():
    pixels = _pixels((4, 20, 20, 3))
    for policy in ("default", "affine"):
        params = augment.get_policy(policy)
        from_int = augment.augment_batch(tf.constant(pixels), _draws(4), size=16, params=params)
        from_float = augment.augment_batch(
            tf.constant(pixels / 255.0, tf.float32), _draws(4), size=16, params=params
        )
        np.testing.assert_allclose(from_int.numpy(), from_float.numpy(), atol=1e-5)


@pytest.mark.parametrize("zoom", [0.0, 1e-9])
def test_caffe_flip_reverses_channels_and_columns(zoom):
    """Exact mirror images, through the flip-only path and through crop_and_resize boxes."""
    pixels = _pixels((12, 6, 6, 3))
    params = augment.AugmentParams(
        max_zoom=zoom, max_rotation_deg=0.0, max_brightness=0.0, max_contrast=0.0
    )
    out = augment.augment_batch(
        tf.constant(pixels), _draws(12), size=6, params=params, mode="caffe"
    )
    bgr = pixels[..., ::-1].astype(np.float32) - np.array([103.939, 116.779, 123.68], np.float32)
    outcomes = set()
    for image, expected in zip(out.numpy(), bgr, strict=True):
        if np.allclose(image, expected[:, ::-1], atol=1e-3):
            outcomes.add("flipped")
        else:
            np.testing.assert_allclose(image, expected, atol=1e-3)
            outcomes.add("kept")
    assert outcomes == {"flipped", "kept"}


def test_draws_are_seeded_per_batch():
    a = augment.draw_batch(tf.constant([1, 2]), 5)
    assert a.shape == (5, augment.NUM_DRAWS)
    np.testing.assert_array_equal(a.numpy(), augment.draw_batch(tf.constant([1, 2]), 5).numpy())
    assert not np.allclose(a.numpy(), augment.draw_batch(tf.constant([1, 3]), 5).numpy())
    assert len({tuple(row) for row in a.numpy().round(6)}) == 5  # each image its own draws


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize(("stored", "channels"), [(3, 3), (4, 3), (1, 3), (3, 1), (2, 1)])
def test_prepare_pixels_keeps_or_requantizes(dtype, stored, channels):
    """Integer steps 2-3: untouched when the image fits, else prepare_unit within half a step."""
    max_value = float(np.iinfo(dtype).max)
    for size in (10, 14):
        pixels = tf.constant(_pixels((size, size, stored), dtype, seed=size))
        out = preprocess.prepare_pixels(pixels, image_size=10, channels=channels)
        assert out.dtype == pixels.dtype and out.shape == (10, 10, channels)
        unit = preprocess.prepare_unit(pixels, image_size=10, channels=channels).numpy()
        diff = np.abs(out.numpy() / max_value - unit)
        assert diff.max() <= 0.5 / max_value + 1e-7
        if size == 10 and (stored == channels or stored in (2, 4)):
            np.testing.assert_array_equal(out.numpy(), pixels.numpy()[..., :channels])
    with pytest.raises(ValueError, match="uint8 or uint16"):
        preprocess.prepare_pixels(tf.zeros([4, 4, 3]), image_size=4, channels=3)


def test_zoom_crops_inside_the_image():
    """A zoomed crop of a left-right ramp spans a narrower, shifted range of the ramp."""
    ramp = np.tile(np.linspace(0.0, 1.0, 40, dtype=np.float32)[None, :, None], (40, 1, 1))
    params = augment.AugmentParams(flip=False, max_zoom=0.5, max_brightness=0.0, max_contrast=0.0)
    spans = []
    for i in range(8):
        out = augment.augment_image(
            tf.constant(ramp), seed=tf.constant([5, i]), size=40, params=params
        )
        row = out.numpy()[20, :, 0]
        assert np.all(np.diff(row) >= -1e-6)  # still a ramp, not flipped
        spans.append((row[0], row[-1]))
    widths = [hi - lo for lo, hi in spans]
    assert max(widths) < 1.0 and min(widths) >= 0.45
    assert len({round(lo, 3) for lo, _ in spans}) > 1  # the crop moves


def test_colour_jitter_saturates_and_is_seeded():
    pixels = np.full((8, 8, 3), 255, np.uint8)
    pixels[:4] = 0
    params = augment.AugmentParams(flip=False, max_zoom=0.0, max_brightness=0.3, max_contrast=0.5)
    outs = [
        augment.augment_image(
            tf.constant(pixels), seed=tf.constant([2, i]), size=8, params=params
        ).numpy()
        for i in range(10)
    ]
    assert all(o.min() >= 0.0 and o.max() <= 1.0 for o in outs)
    assert len({round(float(o[0, 0, 0]), 4) for o in outs}) > 1  # dark half changes
    assert any(o[0, 0, 0] == 0.0 for o in outs) and any(o[7, 7, 0] == 1.0 for o in outs)
    again = augment.augment_image(
        tf.constant(pixels), seed=tf.constant([2, 3]), size=8, params=params
    )
    np.testing.assert_array_equal(again.numpy(), outs[3])


def test_augment_image_rejects_two_channels():
    with pytest.raises(ValueError, match="1 or 3 channels"):
        augment.augment_image(tf.zeros([4, 4, 2]), seed=tf.constant([0, 0]), size=4)
