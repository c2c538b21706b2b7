"""Tests of the TFRecord schema, the image encoders and decoding (SPEC D1)."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from transfusion_tf.data import decode, schema
from transfusion_tf.data.encode import encode_image, encode_jpeg, encode_png


def _round_trip(image_bytes, shape, labels=(1.0, 0.0, 0.0), mask=(1.0, 1.0, 0.0)):
    example = schema.make_example(
        image_bytes=image_bytes,
        height=shape[0],
        width=shape[1],
        channels=shape[2],
        example_id="patient7/study1/view1",
        patient_id="patient7",
        labels=labels,
        mask=mask,
    )
    parsed = schema.parse_example(tf.constant(example.SerializeToString()), num_tasks=len(labels))
    return parsed


@pytest.mark.parametrize(
    "shape", [(17, 23, 3), (9, 11, 1), (8, 8, 4), (5, 7, 2)], ids=["rgb", "gray", "rgba", "ga"]
)
def test_png8_round_trip_is_exact(shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    parsed = _round_trip(encode_png(image), shape)
    decoded = decode.decode_image(parsed["image_bytes"])
    assert decoded.dtype == tf.uint8
    np.testing.assert_array_equal(decoded.numpy(), image)
    assert parsed["example_id"].numpy() == b"patient7/study1/view1"
    assert parsed["patient_id"].numpy() == b"patient7"
    assert (int(parsed["height"]), int(parsed["width"]), int(parsed["channels"])) == shape
    np.testing.assert_array_equal(parsed["labels"].numpy(), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(parsed["mask"].numpy(), [1.0, 1.0, 0.0])


def test_png16_round_trip_keeps_bit_depth():
    image = np.random.default_rng(1).integers(0, 65536, (13, 10), dtype=np.uint16)
    parsed = _round_trip(encode_png(image), (13, 10, 1))
    decoded = decode.decode_image(parsed["image_bytes"])
    assert decoded.dtype == tf.uint16
    np.testing.assert_array_equal(decoded.numpy()[..., 0], image)
    unit = decode.decode_unit_float(parsed["image_bytes"]).numpy()[..., 0]
    np.testing.assert_allclose(unit, image / 65535.0, atol=1e-6)


def test_jpeg_round_trip_is_close():
    yy, xx = np.mgrid[0:32, 0:32]
    image = np.stack([yy * 8, xx * 8, (yy + xx) * 4], -1).astype(np.uint8)
    parsed = _round_trip(encode_jpeg(image), (32, 32, 3))
    decoded = decode.decode_image(parsed["image_bytes"]).numpy()
    assert decoded.shape == (32, 32, 3) and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - image).mean() < 3.0


def test_unit_float_is_exact_for_8_bit_and_jpeg_in_graph_mode():
    image = np.arange(256, dtype=np.uint8).reshape(16, 16)
    fn = tf.function(decode.decode_unit_float)
    np.testing.assert_allclose(fn(encode_png(image)).numpy()[..., 0], image / 255.0, atol=1e-7)
    jpeg = encode_jpeg(np.full((8, 8, 3), 200, np.uint8))
    assert fn(jpeg).shape == (8, 8, 3)


def test_our_png_is_standard():
    image = np.random.default_rng(2).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(image)))), image)


def test_decode_image_needs_dtype_in_graph_mode():
    fn = tf.function(lambda b: decode.decode_image(b))
    with pytest.raises(ValueError, match="dtype"):
        fn(tf.constant(encode_png(np.zeros((4, 4), np.uint8))))


def test_make_example_rejects_bad_input():
    kwargs = dict(image_bytes=b"x", height=4, width=4, channels=1, patient_id="p")
    with pytest.raises(ValueError, match="2 labels but 1 mask"):
        schema.make_example(example_id="a", labels=[0, 1], mask=[1], **kwargs)
    with pytest.raises(ValueError, match="mask values"):
        schema.make_example(example_id="a", labels=[0], mask=[0.5], **kwargs)
    with pytest.raises(ValueError, match="non-empty"):
        schema.make_example(example_id="", labels=[0], mask=[1], **kwargs)


def test_encoders_reject_bad_arrays():
    with pytest.raises(ValueError, match="uint8 or uint16"):
        encode_png(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="shape"):
        encode_png(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        encode_jpeg(np.zeros((4, 4), np.uint16))
    with pytest.raises(ValueError, match="unknown image encoding"):
        encode_image(np.zeros((4, 4), np.uint8), encoding="gif")
