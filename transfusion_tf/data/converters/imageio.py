"""Per-image work of a conversion: read, fully decode (to catch corrupt files), resize, encode.

Runs in worker processes, so it imports only numpy, Pillow and pydicom (TensorFlow only to read
a URL such as `gs://...`, through `data.fileio`).
Output encoding follows the source: JPEG files stay JPEG (re-encoded at quality 95 only when
resized; passed through byte for byte otherwise), PNG/DICOM/in-memory images become PNG,
16-bit when the source has more than 8 bits per sample.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
from PIL import Image

from transfusion_tf.data import encode, fileio

JPEG_QUALITY = 95

# (bit depth, colour type) of PNGs whose bytes can be stored unchanged: 8/16-bit gray, 8-bit RGB.
_PASSTHROUGH_PNG = {(8, 0), (16, 0), (8, 2)}


@dataclasses.dataclass(frozen=True)
class ImageTask:
    """One image to process: a file `path` or an in-memory `array`; `image_size` None = keep."""

    index: int
    path: str | None
    array: np.ndarray | None
    image_size: int | None


@dataclasses.dataclass(frozen=True)
class EncodedImage:
    """The result for one task: encoded bytes and shape, or `error` (why it was skipped).

    A DICOM source also reports its `dicom_syntax` (transfer syntax UID; set on a skip for an
    undecodable syntax too) and `frames` (its NumberOfFrames; the first frame is kept).
    """

    index: int
    data: bytes = b""
    height: int = 0
    width: int = 0
    channels: int = 0
    encoding: str = ""
    error: str | None = None
    dicom_syntax: str = ""
    frames: int = 0


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """Converts a loaded Pillow image to uint8/uint16 [H, W, 1 or 3]."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L"):
        arr = np.asarray(image).astype(np.uint16)
    elif mode == "I":
        arr = np.asarray(image)
        if arr.min() < 0 or arr.max() > 65535:
            raise ValueError("32-bit integer image outside the 16-bit range")
        arr = arr.astype(np.uint16)
    elif mode in ("L", "RGB"):
        arr = np.asarray(image)
    elif mode in ("1", "LA"):
        arr = np.asarray(image.convert("L"))
    elif mode in ("P", "PA", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        arr = np.asarray(image.convert("RGB"))
    else:
        raise ValueError(f"unsupported image mode {mode!r}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr


def resize_array(arr: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (antialiased) resize of uint8/uint16 [H, W, C] to [size, size, C], same dtype."""
    if arr.shape[0] == size and arr.shape[1] == size:
        return arr
    if arr.dtype == np.uint8:
        mode = "L" if arr.shape[2] == 1 else "RGB"
        image = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr, mode=mode)
        out = np.asarray(image.resize((size, size), Image.BILINEAR))
        return out[:, :, None] if out.ndim == 2 else out
    channels = []
    for c in range(arr.shape[2]):
        plane = Image.fromarray(arr[:, :, c].astype(np.float32), mode="F")
        channels.append(np.asarray(plane.resize((size, size), Image.BILINEAR)))
    stacked = np.stack(channels, axis=-1)
    return np.clip(np.round(stacked), 0, 65535).astype(np.uint16)


def _can_pass_through(raw: bytes, image: Image.Image) -> bool:
    """Whether the source bytes can be stored as they are: TensorFlow decodes them to the image
    Pillow decoded, and they end with the trailer the pipeline's integrity check expects."""
    if image.format == "JPEG":
        return image.mode in ("L", "RGB") and raw.endswith(encode.JPEG_TRAILER)
    if image.format == "PNG" and raw.startswith(encode.PNG_SIGNATURE) and len(raw) > 25:
        return (
            (raw[24], raw[25]) in _PASSTHROUGH_PNG
            and "transparency" not in image.info
            and raw.endswith(encode.PNG_TRAILER)
        )
    return False


def process_image(task: ImageTask) -> EncodedImage:
    """Decodes, optionally resizes and encodes one image; never raises for bad input.

    Returns an EncodedImage whose `error` says why the input was skipped (missing, corrupt,
    truncated, unreadable DICOM) and is None on success.
    """
    try:
        return _process(task)
    except MemoryError:
        raise
    except Exception as err:  # every per-image failure becomes a reported skip
        return EncodedImage(index=task.index, error=f"{type(err).__name__}: {err}")


def _process(task: ImageTask) -> EncodedImage:
    dicom_info = ("", 0)
    if task.array is not None:
        arr = np.asarray(task.array)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3) or arr.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"in-memory image must be uint8/uint16 [H, W, 1|3], got {arr.shape}")
        raw, fmt = None, "ARRAY"
    else:
        path = task.path or ""
        if not fileio.isfile(path):
            return EncodedImage(index=task.index, error="missing file")
        if path.lower().endswith(".dcm"):
            # Imported on first use: pydicom is the slowest import of a worker's start-up.
            from transfusion_tf.data.converters import dicom

            raw, fmt = None, "DICOM"
            try:
                read = dicom.read_dicom_image(path)
            except dicom.UndecodableDicomError as err:
                return EncodedImage(
                    index=task.index,
                    error=f"undecodable DICOM {err.reason}",
                    dicom_syntax=err.transfer_syntax,
                )
            except dicom.DicomError as err:
                return EncodedImage(index=task.index, error=f"unreadable DICOM: {err}")
            arr, dicom_info = read.pixels, (read.transfer_syntax, read.frames)
        else:
            raw = fileio.read_bytes(path)
            if not raw:
                return EncodedImage(index=task.index, error="corrupt image: empty file")
            try:
                image = Image.open(io.BytesIO(raw))
                image.load()  # decodes every pixel: truncated or corrupt data raise here
            except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, ...
                return EncodedImage(index=task.index, error=f"corrupt image: {err}")
            fmt = image.format or "UNKNOWN"
            if task.image_size is None and _can_pass_through(raw, image):
                channels = 3 if image.mode == "RGB" else 1
                return EncodedImage(
                    index=task.index,
                    data=raw,
                    height=image.height,
                    width=image.width,
                    channels=channels,
                    encoding="jpeg" if fmt == "JPEG" else "png",
                )
            if task.image_size is not None and image.mode in ("L", "RGB"):
                size = (task.image_size, task.image_size)
                image = image.resize(size, Image.BILINEAR)  # same as resize_array, one copy less
            arr = _pil_to_array(image)
    if task.image_size is not None:
        arr = resize_array(arr, task.image_size)
    if fmt == "JPEG" and arr.dtype == np.uint8:
        data, encoding = encode.encode_jpeg(arr, quality=JPEG_QUALITY), "jpeg"
    else:
        data, encoding = encode.encode_png(arr), "png"
    return EncodedImage(
        index=task.index,
        data=data,
        height=int(arr.shape[0]),
        width=int(arr.shape[1]),
        channels=int(arr.shape[2]),
        encoding=encoding,
        dicom_syntax=dicom_info[0],
        frames=dicom_info[1],
    )
