"""Compressed DICOM (SPEC D2): every transfer syntax of real archives decodes to the image it
holds (files written at test time with the encoders the plugins provide); a syntax without a
decoder is a reported skip naming the syntax and the package; multi-frame files keep their
first frame; the summary of a mixed folder counts decoded, undecodable and multi-frame files."""

import os

import numpy as np
import pydicom
import pytest
from pydicom import uid
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import get_decoder

from transfusion_tf.data import layouts, synthetic
from transfusion_tf.data.converters import base, dicom, dicom_codecs, driver, registry

SIZE = 32  # the smallest side the JPEG 2000 encoder accepts with its default resolutions
LOSSY = {uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLSNearLossless, uid.JPEG2000}


def _image(index=0):
    return synthetic.sample_cxr(index, seed=0, size=SIZE).image


def _write(path, ds):
    ds.save_as(str(path), enforce_file_format=True)
    return str(path)


def _cases():
    for syntax in layouts.COMPRESSED_SYNTAXES:
        variants = (2,) if syntax == uid.JPEGBaseline8Bit else (0, 1, 2)
        for variant in variants:
            yield pytest.param(syntax, variant, id=f"{uid.UID(syntax).keyword}-v{variant}")


@pytest.mark.parametrize("syntax,variant", list(_cases()))
def test_each_compressed_syntax_decodes_to_its_image(tmp_path, syntax, variant):
    """variant 0/1: 12 bits stored (MONOCHROME2 / MONOCHROME1, rescale + window); 2: 8-bit."""
    image = _image()
    ds, _ = layouts.dicom_dataset(image, patient_id="p1", variant=variant, uid_seed="c")
    compressed = layouts.compress_dicom(ds, syntax)
    assert compressed.file_meta.TransferSyntaxUID == syntax
    path = _write(tmp_path / "x.dcm", compressed)
    read = dicom.read_dicom_image(path)
    assert read.transfer_syntax == syntax and read.frames == 1
    assert read.pixels.shape == (SIZE, SIZE, 1)
    assert read.pixels.dtype == (np.uint8 if variant == 2 else np.uint16)
    unit = read.pixels[..., 0] / np.iinfo(read.pixels.dtype).max
    tolerance = 0.03 if syntax in LOSSY and syntax != uid.JPEG2000 else 0.01
    if syntax == uid.JPEG2000:
        tolerance = 0.07  # 2:1 lossy wavelet coding of a 32 x 32 image
    np.testing.assert_allclose(unit, image / 255.0, atol=tolerance)


def test_twelve_bit_jpeg_extended_goes_through_our_gdcm_plugin(tmp_path):
    ds, stored = layouts.dicom_dataset(_image(), patient_id="p", variant=0, uid_seed="e")
    path = _write(tmp_path / "ext.dcm", layouts.compress_dicom(ds, uid.JPEGExtended12Bit))
    dicom_codecs.register_plugins()
    assert dicom_codecs.PLUGIN_LABEL in get_decoder(uid.JPEGExtended12Bit).available_plugins
    again = pydicom.dcmread(path)
    again.pixel_array_options(decoding_plugin=dicom_codecs.PLUGIN_LABEL)
    got = again.pixel_array
    assert got.dtype == np.uint16 and got.max() > 255  # 12-bit samples, not cut to 8 bits
    assert np.abs(got.astype(int) - stored.astype(int)).max() <= 32


def test_a_syntax_without_a_decoder_names_the_syntax_and_the_package(tmp_path, monkeypatch):
    ds, _ = layouts.dicom_dataset(_image(), patient_id="p", variant=0, uid_seed="n")
    path = _write(tmp_path / "jls.dcm", layouts.compress_dicom(ds, uid.JPEGLSLossless))
    decoder = get_decoder(uid.JPEGLSLossless)
    # As in an environment without pyjpegls and python-gdcm.
    monkeypatch.setattr(decoder, "_available", {})
    with pytest.raises(dicom.UndecodableDicomError) as err:
        dicom.read_dicom_image(path)
    message = str(err.value)
    assert message.startswith(f"{path}: transfer syntax JPEG-LS Lossless")
    assert "1.2.840.10008.1.2.4.80" in message and "no decoder installed" in message
    assert "pyjpegls or python-gdcm" in message and err.value.transfer_syntax == uid.JPEGLSLossless
    result = _process(path)
    assert result.error.startswith("undecodable DICOM transfer syntax JPEG-LS Lossless")
    assert result.dicom_syntax == uid.JPEGLSLossless


def _video_dicom(tmp_path):
    """A file whose transfer syntax is MPEG-4 video, which pydicom does not decode."""
    ds, _ = layouts.dicom_dataset(_image(), patient_id="pv", variant=2, uid_seed="v")
    ds.file_meta.TransferSyntaxUID = uid.MPEG4HP41
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    ds["PixelData"].VR = "OB"
    return _write(tmp_path / "video.dcm", ds)


def _process(path):
    from transfusion_tf.data.converters import imageio

    return imageio.process_image(imageio.ImageTask(index=0, path=path, array=None, image_size=None))


def test_video_syntax_is_skipped_with_its_name(tmp_path):
    result = _process(_video_dicom(tmp_path))
    assert result.error.startswith("undecodable DICOM transfer syntax MPEG-4")
    assert "pydicom has no decoder for it" in result.error


def test_corrupt_compressed_pixel_data_is_one_line_naming_the_syntax(tmp_path):
    ds, _ = layouts.dicom_dataset(_image(), patient_id="p", variant=0, uid_seed="k")
    compressed = layouts.compress_dicom(ds, uid.JPEGLosslessSV1)
    compressed.PixelData = encapsulate([b"\xff\xd8" + b"\x13" * 40 + b"\xff\xd9"])
    path = _write(tmp_path / "bad.dcm", compressed)
    with pytest.raises(dicom.DicomError) as err:
        dicom.read_dicom_image(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: cannot decode JPEG Lossless")
    assert not isinstance(err.value, dicom.UndecodableDicomError)


def _multi_frame(tmp_path, name="multi.dcm"):
    """Two 12-bit frames, RLE-compressed: the first is _image(0), the second _image(1)."""
    ds, _ = layouts.dicom_dataset(_image(0), patient_id="pm", variant=0, uid_seed="m")
    frames = np.stack([_image(0), _image(1)]).astype(np.uint16) * 16
    ds.set_pixel_data(frames, "MONOCHROME2", 12)
    ds.compress(uid.RLELossless)
    return _write(tmp_path / name, ds)


def test_multi_frame_keeps_the_first_frame(tmp_path):
    read = dicom.read_dicom_image(_multi_frame(tmp_path))
    assert read.frames == 2 and read.pixels.shape == (SIZE, SIZE, 1)
    unit = read.pixels[..., 0] / 65535.0
    np.testing.assert_allclose(unit, _image(0) / 255.0, atol=0.01)
    assert dicom.FRAME_POLICY == "first"


def test_summary_of_a_mixed_archive_folder(tmp_path):
    """A folder as a PACS export gives it: several syntaxes, a multi-frame file, a video and
    a corrupt file. The summary lists decoded, skipped-with-reason and multi-frame counts."""
    root = tmp_path / "archive"
    syntaxes = [uid.ExplicitVRLittleEndian, *layouts.COMPRESSED_SYNTAXES[1:]]
    for index, syntax in enumerate(syntaxes):
        cls = "effusion" if index % 2 else "normal"
        os.makedirs(root / cls, exist_ok=True)
        ds, _ = layouts.dicom_dataset(
            _image(index), patient_id=f"p{index}", variant=0, uid_seed=f"a{index}"
        )
        if syntax != uid.ExplicitVRLittleEndian:
            ds = layouts.compress_dicom(ds, syntax)
        _write(root / cls / f"p{index}.dcm", ds)
    _multi_frame(root / "normal", "p90.dcm")
    _video_dicom(root / "effusion")
    (root / "normal" / "p91.dcm").write_bytes(b"DICM but not really")
    info = registry.prepare_dataset(
        source_format="folder",
        input_path=str(root),
        output_dir=str(tmp_path / "ds"),
        options=base.ConvertOptions(
            workers=1, progress=False, valid_fraction=0.2, test_fraction=0.2
        ),
    )
    decoded = info["dicom"]["decoded"]
    assert sum(decoded.values()) == len(syntaxes) + 1
    assert decoded["RLE Lossless (1.2.840.10008.1.2.5)"] == 2  # one of them multi-frame
    assert info["dicom"]["undecodable"] == {
        "MPEG-4 AVC/H.264 High Profile / Level 4.1 (1.2.840.10008.1.2.4.102)": 1
    }
    assert info["dicom"]["multi_frame"] == 1 and info["dicom"]["frame_policy"] == "first"
    reasons = {os.path.basename(s["path"]): s["reason"] for s in info["skipped"]}
    assert reasons["video.dcm"].startswith("undecodable DICOM transfer syntax MPEG-4")
    assert reasons["p91.dcm"].startswith("unreadable DICOM")
    summary = driver.format_summary(info)
    assert (
        f"DICOM: {len(syntaxes) + 1} decoded, 1 skipped as undecodable, "
        "1 multi-frame (first frame kept)" in summary
    )
    assert "  1 x JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)" in summary
    assert "MPEG-4 AVC/H.264 High Profile / Level 4.1 (1.2.840.10008.1.2.4.102): not decoded" in (
        summary
    )
