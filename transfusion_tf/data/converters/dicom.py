"""DICOM reading for every converter: pixel data to a display-ready uint8/uint16 array.

A DICOM file is decoded once, at conversion time, by pydicom (SPEC D2): the modality LUT
(rescale slope/intercept) is applied, then the VOI LUT or window centre/width, then MONOCHROME1
images are inverted so that larger values are always brighter. The result is scaled to the full
range of its output type: uint16 when the source stores more than 8 bits per sample (kept as
16-bit PNG downstream), else uint8. Without any VOI transform a >8-bit image is stretched from its
own minimum to its maximum (the common convention for raw radiographs).

Compressed pixel data (JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE) is decoded
through pydicom's plugins (`dicom_codecs` lists which package decodes which transfer syntax); a
syntax without an installed decoder is an `UndecodableDicomError` naming the syntax and the
package that would decode it. Multi-frame files give their first frame (FRAME_POLICY), and only
that frame is decoded.

This module never imports TensorFlow: it runs inside the conversion worker processes.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pydicom
import pydicom.errors
import pydicom.pixels

from transfusion_tf.data import fileio
from transfusion_tf.data.converters import dicom_codecs

# Which frame of a multi-frame file becomes the example (reported in the summary).
FRAME_POLICY = "first"


class DicomError(ValueError):
    """A DICOM file that cannot be read or converted; the message names the file."""


class UndecodableDicomError(DicomError):
    """No installed decoder for a file's transfer syntax: `transfer_syntax` is its UID,
    `reason` the message without the path (names the syntax and who would decode it)."""

    def __init__(self, path: str, *, reason: str, transfer_syntax: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.reason = reason
        self.transfer_syntax = transfer_syntax


@dataclasses.dataclass(frozen=True)
class DicomImage:
    """One decoded DICOM image: `pixels` uint8/uint16 [height, width, 1 or 3], the file's
    `transfer_syntax` UID and its `frames` (NumberOfFrames; pixels hold the first)."""

    pixels: np.ndarray
    transfer_syntax: str
    frames: int


def _source(path: str):
    """What pydicom reads: the local path itself, or the bytes of a URL (`gs://...`)."""
    return io.BytesIO(fileio.read_bytes(path)) if fileio.is_url(path) else path


def read_patient_id(path: str) -> str | None:
    """Returns the (0010,0020) Patient ID of a DICOM file, or None when absent or unreadable."""
    try:
        ds = pydicom.dcmread(_source(path), stop_before_pixels=True, specific_tags=["PatientID"])
    except (OSError, pydicom.errors.InvalidDicomError, ValueError, EOFError):
        return None
    value = str(ds.get("PatientID", "") or "").strip()
    return value or None


def _output_range_after_modality(ds: pydicom.Dataset) -> tuple[float, float]:
    """The value range the modality LUT / rescale maps stored values into (PS3.3 C.11.1)."""
    bits = int(ds.BitsStored)
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope = ds.get("RescaleSlope")
    intercept = ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)
    return min(lo, hi), max(lo, hi)


def _identity_rescale(ds: pydicom.Dataset) -> bool:
    """No modality rescale, or slope 1 and intercept 0 (which encoders such as GDCM add)."""
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is None:
        return True
    try:
        return float(slope) == 1.0 and float(intercept if intercept is not None else 0) == 0.0
    except (TypeError, ValueError):
        return False


def _to_unit_range(arr: np.ndarray, ds: pydicom.Dataset, *, path: str) -> np.ndarray:
    """Applies modality + VOI transforms to a monochrome frame; returns float64 in [0, 1]."""
    values = np.asarray(pydicom.pixels.apply_modality_lut(arr, ds), dtype=np.float64)
    has_voi_lut = bool(ds.get("VOILUTSequence"))
    has_window = "WindowCenter" in ds and "WindowWidth" in ds
    if has_voi_lut:
        # A LUT is indexed by integer values; rescaled stored values usually still are integers.
        lut_input = values.astype(np.int64) if np.all(values == np.round(values)) else values
        values = np.asarray(
            pydicom.pixels.apply_voi_lut(lut_input, ds, prefer_lut=True), dtype=np.float64
        )
        lo, hi = 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    elif has_window:
        try:
            values = np.asarray(pydicom.pixels.apply_windowing(values, ds), dtype=np.float64)
        except ValueError as err:
            raise DicomError(f"{path}: invalid window centre/width: {err}") from None
        lo, hi = _output_range_after_modality(ds)
    elif int(ds.BitsStored) <= 8 and _identity_rescale(ds):
        lo, hi = 0.0, 255.0
    else:
        lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros_like(values)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def _one_line(err: Exception) -> str:
    """An exception's message on one line (pydicom lists every plugin's error on its own)."""
    return "; ".join(part.strip() for part in str(err).splitlines() if part.strip())


def read_dicom(path: str) -> np.ndarray:
    """Reads a DICOM image as uint8 or uint16 [height, width, channels] (channels 1 or 3).

    See `read_dicom_image`, whose `pixels` this returns.
    """
    return read_dicom_image(path).pixels


def read_dicom_image(path: str) -> DicomImage:
    """Reads and decodes a DICOM file's image (the first frame of a multi-frame file).

    YCbCr colour data comes back as RGB (pydicom converts it when decoding). Raises
    UndecodableDicomError when no installed plugin decodes the transfer syntax, and DicomError
    naming `path` when the file is not DICOM, has no pixel data, or its pixel data is corrupt.
    """
    try:
        ds = pydicom.dcmread(_source(path))
    except pydicom.errors.InvalidDicomError as err:
        raise DicomError(f"{path}: not a DICOM file ({err})") from None
    except (OSError, ValueError, EOFError, KeyError, TypeError) as err:
        raise DicomError(f"{path}: unreadable DICOM ({err})") from None
    if "PixelData" not in ds:
        raise DicomError(f"{path}: DICOM file has no pixel data")
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "") if meta is not None else "")
    if syntax:
        reason = dicom_codecs.undecodable_reason(syntax)
        if reason is not None:
            raise UndecodableDicomError(path, reason=reason, transfer_syntax=syntax)
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        frames = 1
    try:
        if frames > 1:
            ds.pixel_array_options(index=0)  # decodes the first frame only
        arr = ds.pixel_array
    except Exception as err:  # pydicom raises many types for bad or unsupported pixel data
        what = f"{dicom_codecs.describe(syntax)} " if syntax else ""
        raise DicomError(
            f"{path}: cannot decode {what}DICOM pixel data ({_one_line(err)})"
        ) from None
    samples = int(ds.get("SamplesPerPixel", 1))
    return DicomImage(
        pixels=_display_pixels(arr, ds, samples=samples, path=path),
        transfer_syntax=syntax,
        frames=frames,
    )


def _display_pixels(arr: np.ndarray, ds: pydicom.Dataset, *, samples: int, path: str) -> np.ndarray:
    """Decoded pixels [H, W] or [H, W, 3] -> display-ready uint8/uint16 [H, W, 1 or 3]."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    bits = int(ds.get("BitsStored", 8))
    if samples == 3:
        if bits > 8:
            scaled = arr.astype(np.float64) / float(2**bits - 1)
            return np.round(np.clip(scaled, 0.0, 1.0) * 65535.0).astype(np.uint16)
        return arr.astype(np.uint8)
    if samples != 1 or arr.ndim != 2:
        raise DicomError(f"{path}: unsupported DICOM pixel layout (SamplesPerPixel={samples})")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomError(f"{path}: unsupported photometric interpretation {photometric!r}")
    unit = _to_unit_range(arr, ds, path=path)
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit
    if bits > 8:
        out = np.round(unit * 65535.0).astype(np.uint16)
    else:
        out = np.round(unit * 255.0).astype(np.uint8)
    return out[:, :, None]
