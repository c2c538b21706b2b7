"""Image encoders for dataset writing: numpy arrays to PNG (8/16-bit) or JPEG bytes.

TensorFlow-free on purpose, so worker processes of converters and of the synthetic generator
encode images without importing TensorFlow. Decoding lives in `decode.py`.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_TRAILER = b"\x00\x00\x00\x00IEND\xaeB`\x82"
JPEG_SIGNATURE = b"\xff\xd8"
JPEG_TRAILER = b"\xff\xd9"

_PNG_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type


def _as_hwc(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in _PNG_COLOR_TYPES:
        raise ValueError(f"expected an image [H, W] or [H, W, 1|2|3|4], got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image has an empty side: shape {image.shape}")
    return image


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(image: np.ndarray, *, compress_level: int = 3) -> bytes:
    """Encodes a uint8 or uint16 image [H, W] or [H, W, C] (C in 1..4) as PNG bytes.

    uint16 images are written as 16-bit PNG (the bit depth DICOM sources keep). Rows use the PNG
    "Up" filter, computed with numpy, which compresses medical images well at little cost.
    """
    image = _as_hwc(image)
    if image.dtype == np.uint8:
        bit_depth = 8
    elif image.dtype == np.uint16:
        bit_depth = 16
    else:
        raise ValueError(f"PNG images must be uint8 or uint16, got {image.dtype}")
    height, width, channels = image.shape
    raw = np.ascontiguousarray(image.astype(image.dtype.newbyteorder(">"), copy=False))
    rows = raw.view(np.uint8).reshape(height, -1)
    filtered = rows.copy()
    filtered[1:] = rows[1:] - rows[:-1]  # uint8 arithmetic wraps modulo 256, as PNG wants
    payload = np.concatenate([np.full((height, 1), 2, np.uint8), filtered], axis=1)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, _PNG_COLOR_TYPES[channels], 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(payload.tobytes(), compress_level))
        + _chunk(b"IEND", b"")
    )


def bit_depth_of(image_bytes: bytes) -> int:
    """Bits per sample of encoded image bytes: a PNG's IHDR bit depth (8 or 16), else 8."""
    if image_bytes[:8] == PNG_SIGNATURE and len(image_bytes) > 24:
        return max(int(image_bytes[24]), 8)
    return 8


def encode_jpeg(image: np.ndarray, *, quality: int = 95) -> bytes:
    """Encodes a uint8 image [H, W] or [H, W, 1|3] as baseline JPEG bytes (Pillow)."""
    from PIL import Image

    image = _as_hwc(image)
    if image.dtype != np.uint8:
        raise ValueError(f"JPEG images must be uint8, got {image.dtype}")
    if image.shape[2] not in (1, 3):
        raise ValueError(f"JPEG images need 1 or 3 channels, got {image.shape[2]}")
    pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def encode_image(image: np.ndarray, *, encoding: str = "png") -> bytes:
    """Encodes with `encoding` in {"png", "jpeg"}; returns the encoded bytes."""
    if encoding == "png":
        return encode_png(image)
    if encoding == "jpeg":
        return encode_jpeg(image)
    raise ValueError(f"unknown image encoding {encoding!r}; choose 'png' or 'jpeg'")
