"""Compressed DICOM pixel data: which package decodes each transfer syntax (SPEC D2).

pydicom decodes encapsulated pixel data through plugins, each backed by a package. The core
install brings these (all under licences compatible with Apache-2.0):

    JPEG baseline (process 1, 8-bit)          Pillow, python-gdcm
    JPEG extended (process 2 & 4, 12-bit)     python-gdcm, through `decode_jpeg_extended`
    JPEG lossless (process 14, and SV1)       python-gdcm
    JPEG-LS lossless and near-lossless        pyjpegls (CharLS), python-gdcm
    JPEG 2000 (lossless and lossy), HTJ2K     pylibjpeg-openjpeg, Pillow, python-gdcm
    RLE lossless                              pydicom itself, pylibjpeg-rle
    deflated explicit VR little endian        pydicom itself

pydicom's own GDCM plugin refuses 12-bit JPEG extended samples, while GDCM's 12-bit IJG
codec decodes them; `register_plugins` adds `decode_jpeg_extended` as one more pydicom plugin
for that syntax (pydicom tries its plugins in turn and keeps the first that succeeds). The
optional extra `transfusion_tf[gpl]` adds pylibjpeg-libjpeg (GPL-3.0, so never a core
dependency), a second decoder for the whole JPEG and JPEG-LS family.

`undecodable_reason` tells, before any pixel is read, whether a file's transfer syntax can be
decoded here, and if not names the syntax and the packages that would decode it.
Video syntaxes (MPEG-2, MPEG-4, HEVC), multi-component JPEG 2000 and JPIP references have no
decoder in pydicom.

This module never imports TensorFlow: it runs inside the conversion worker processes.
"""

from __future__ import annotations

import dataclasses

from pydicom import uid

# The label of the plugin this module adds to pydicom's JPEG extended decoder.
PLUGIN_LABEL = "transfusion_gdcm_12bit"
DECODER_DEPENDENCIES = {uid.JPEGExtended12Bit: ("python-gdcm>=3.0.10",)}


@dataclasses.dataclass(frozen=True)
class SyntaxCodecs:
    """Who decodes one transfer syntax: `packages` (pip names) of the core install, `extra`
    (pip names outside it, e.g. GPL-licensed ones); both empty for syntaxes nobody decodes."""

    packages: tuple[str, ...]
    extra: tuple[str, ...] = ()


_JPEG_FAMILY_EXTRA = ("pylibjpeg-libjpeg (GPL-3.0; transfusion_tf[gpl])",)
CODECS: dict[str, SyntaxCodecs] = {
    uid.JPEGBaseline8Bit: SyntaxCodecs(("pillow", "python-gdcm"), _JPEG_FAMILY_EXTRA),
    uid.JPEGExtended12Bit: SyntaxCodecs(("python-gdcm",), _JPEG_FAMILY_EXTRA),
    uid.JPEGLossless: SyntaxCodecs(("python-gdcm",), _JPEG_FAMILY_EXTRA),
    uid.JPEGLosslessSV1: SyntaxCodecs(("python-gdcm",), _JPEG_FAMILY_EXTRA),
    uid.JPEGLSLossless: SyntaxCodecs(("pyjpegls", "python-gdcm"), _JPEG_FAMILY_EXTRA),
    uid.JPEGLSNearLossless: SyntaxCodecs(("pyjpegls", "python-gdcm"), _JPEG_FAMILY_EXTRA),
    uid.JPEG2000Lossless: SyntaxCodecs(("pylibjpeg-openjpeg", "pillow", "python-gdcm")),
    uid.JPEG2000: SyntaxCodecs(("pylibjpeg-openjpeg", "pillow", "python-gdcm")),
    uid.HTJ2KLossless: SyntaxCodecs(("pylibjpeg-openjpeg",)),
    uid.HTJ2KLosslessRPCL: SyntaxCodecs(("pylibjpeg-openjpeg",)),
    uid.HTJ2K: SyntaxCodecs(("pylibjpeg-openjpeg",)),
    uid.RLELossless: SyntaxCodecs(("pydicom", "pylibjpeg-rle")),
}

_registered = False


def describe(syntax: str) -> str:
    """'<name> (<uid>)' of a transfer syntax, e.g. 'RLE Lossless (1.2.840.10008.1.2.5)'."""
    value = uid.UID(str(syntax))
    return f"{value.name} ({value})" if value.name != str(value) else str(value)


def is_available(syntax: str) -> bool:
    """pydicom plugin hook: whether `decode_jpeg_extended` can decode `syntax` here."""
    if syntax not in DECODER_DEPENDENCIES:
        return False
    try:
        import gdcm  # noqa: F401  (python-gdcm)
    except ImportError:
        return False
    return True


def decode_jpeg_extended(src: bytes, runner) -> bytes:
    """pydicom plugin: one JPEG extended (process 2 & 4) frame, 8 or 12 bits, with GDCM.

    Args:
      src: the encoded frame (one JPEG codestream).
      runner: the `pydicom.pixels.decoders.base.DecodeRunner` of the dataset.
    Returns the decoded frame: rows x columns x samples, little-endian, `bits_allocated`
    (8 or 16) bits per sample, colour-by-pixel.
    """
    import gdcm

    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(src)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetValue(fragments.__ref__())
    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((runner.columns, runner.rows, 1))
    image.SetDataElement(element)
    photometric = gdcm.PhotometricInterpretation.GetPIType(str(runner.photometric_interpretation))
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(photometric))
    if runner.samples_per_pixel > 1:
        image.SetPlanarConfiguration(runner.planar_configuration)
    syntax = gdcm.TransferSyntax.GetTSType(str(runner.transfer_syntax))
    image.SetTransferSyntax(gdcm.TransferSyntax(syntax))
    bits = runner.bits_stored
    image.SetPixelFormat(
        gdcm.PixelFormat(
            runner.samples_per_pixel,
            runner.bits_allocated,
            bits,
            bits - 1,
            runner.pixel_representation,
        )
    )
    frame = image.GetBuffer().encode("utf-8", "surrogateescape")
    expected = runner.rows * runner.columns * runner.samples_per_pixel * runner.bits_allocated // 8
    if len(frame) < expected:
        raise ValueError(f"GDCM returned {len(frame)} bytes for a {expected}-byte frame")
    return frame[:expected]


def register_plugins() -> None:
    """Adds `decode_jpeg_extended` to pydicom's JPEG extended decoder (once per process)."""
    global _registered
    if _registered:
        return
    from pydicom.pixels.decoders.base import get_decoder

    decoder = get_decoder(uid.JPEGExtended12Bit)
    if PLUGIN_LABEL not in decoder.available_plugins and PLUGIN_LABEL not in getattr(
        decoder, "_unavailable", {}
    ):
        decoder.add_plugin(PLUGIN_LABEL, (__name__, "decode_jpeg_extended"))
    _registered = True


def _who_decodes(syntax: str) -> str:
    codecs = CODECS.get(syntax)
    if codecs is None:
        return "pydicom has no decoder for it (video, multi-component JPEG 2000, JPIP)"
    return "decoded by " + " or ".join([*codecs.packages, *codecs.extra])


def undecodable_reason(syntax: str) -> str | None:
    """Why no installed plugin decodes `syntax`, or None when one does.

    Uncompressed syntaxes always have a decoder. The reason names the syntax (name and UID)
    and the packages that would decode it.
    """
    from pydicom.pixels.decoders.base import get_decoder

    register_plugins()
    value = uid.UID(str(syntax))
    if value.is_transfer_syntax and not value.is_compressed:
        return None
    try:
        decoder = get_decoder(value)
    except NotImplementedError:
        return f"transfer syntax {describe(value)} cannot be decoded: {_who_decodes(value)}"
    if not decoder.is_available:
        return (
            f"transfer syntax {describe(value)} cannot be decoded: no decoder installed; "
            f"{_who_decodes(value)} (pip install one of them)"
        )
    return None
