"""Raw files in the public datasets' on-disk layouts, drawn by the synthetic generators (SPEC D4).

`write_layout(layout=..., output_dir=..., num_examples=N)` writes N synthetic images the way
users download the real data, so every converter is exercised on its real layout:
  - chexpert: `CheXpert-v1.0-small/{train,valid}.csv` + `{train,valid}/patientNNNNN/studyN/
    viewN_{frontal,lateral}.jpg` (8-bit gray JPEG; 14 observations, 1.0/0.0/-1.0/blank in
    train.csv, 1.0/0.0 in valid.csv as in the real validation set).
  - eyepacs: `trainLabels.csv` (image,level) + `train/<patient>_{left,right}.jpeg`; with
    `eyepacs_test_examples` > 0 also the competition's `retinopathy_solution.csv`
    (image,level,Usage) + `test/<patient>_{left,right}.jpeg` of other patients.
  - aptos: `train.csv` (id_code,diagnosis) + `train_images/<id_code>.png`.
  - medmnist: `retinamnist.npz` (multi-class DR grades, RGB) and `chestmnist.npz` (14
    multi-label findings, gray), each with train/val/test images and labels.
  - folder: `<class>/<id>.png` over the synthetic natural classes.
  - dicom: `images/<class>/<patient>_study<k>.dcm` (chest X-rays as class folders by pleural
    effusion) + `manifest.csv` (path, patient_id, the 5 competition findings). Files mix
    16-bit (12 bits stored) MONOCHROME2 and MONOCHROME1 images with rescale slope/intercept
    and window centre/width, and 8-bit MONOCHROME2 images.
Returns a `Layout` naming the `--format`/`--input` pair(s) that convert what was written.

`compress_dicom(ds, syntax)` re-encodes such a DICOM dataset in one of the compressed transfer
syntaxes of real archives (COMPRESSED_SYNTAXES), with the encoders the decoding packages
provide: pydicom's own (RLE), pyjpegls (JPEG-LS), pylibjpeg-openjpeg (JPEG 2000) and GDCM (the
JPEG processes: baseline, extended 12-bit, lossless process 14 and SV1).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import tempfile

import numpy as np
from PIL import Image

from transfusion_tf.data import synthetic
from transfusion_tf.data.converters.medmnist import CHESTMNIST_TASKS

LAYOUTS = ("chexpert", "eyepacs", "aptos", "medmnist", "folder", "dicom")
CHEXPERT_FOLDER = "CheXpert-v1.0-small"
CHEXPERT_VALID_FRACTION = 0.2
MEDMNIST_SPLITS = (("train", 0.7), ("val", 0.1), ("test", 0.2))
# ChestMNIST label (ChestX-ray14 finding) -> synthetic CheXpert observation drawing its sign.
CHESTMNIST_FROM_CHEXPERT = {
    "atelectasis": "Atelectasis",
    "cardiomegaly": "Cardiomegaly",
    "effusion": "Pleural Effusion",
    "pneumonia": "Pneumonia",
    "pneumothorax": "Pneumothorax",
    "consolidation": "Consolidation",
    "edema": "Edema",
}
DICOM_TASKS = synthetic.CHEXPERT_COMPETITION_TASKS


@dataclasses.dataclass(frozen=True)
class Layout:
    """What `write_layout` wrote: the main (format, input) pair, alternatives, image count."""

    layout: str
    format: str
    input_path: str
    num_images: int
    alternatives: tuple[tuple[str, str], ...] = ()


def _check(layout: str, num_examples: int, image_size: int) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")


def _save(image: np.ndarray, path: str, **kwargs) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(image).save(path, **kwargs)


def _raw_cell(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _write_csv(path: str, header: list[str], rows: list[list[str]]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(header)
        out.writerows(rows)


def write_chexpert(output_dir: str, *, num_examples: int, image_size: int, seed: int) -> Layout:
    """CheXpert-v1.0-small: train.csv/valid.csv and JPEGs; the last patients form valid."""
    root = os.path.join(output_dir, CHEXPERT_FOLDER)
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *synthetic.CHEXPERT_OBSERVATIONS]
    num_patients = synthetic.patient_of("cxr", num_examples - 1) + 1
    num_valid = int(round(CHEXPERT_VALID_FRACTION * num_patients)) if num_patients > 1 else 0
    rows: dict[str, list[list[str]]] = {"train": [], "valid": []}
    for index in range(num_examples):
        s = synthetic.sample_cxr(index, seed=seed, size=image_size)
        split = "valid" if s.patient >= num_patients - num_valid else "train"
        view_number = 1 if s.view == "frontal" else 2
        rel = f"{split}/{s.patient_id}/study{s.study}/view{view_number}_{s.view}.jpg"
        _save(s.image, os.path.join(root, rel), quality=95)
        if split == "valid":  # the real validation labels are radiologist consensus: 0 or 1
            cells = ["1.0" if s.raw_labels[o] == 1.0 else "0.0" for o in header[5:]]
        else:
            cells = [_raw_cell(s.raw_labels[o]) for o in header[5:]]
        rows[split].append(
            [f"{CHEXPERT_FOLDER}/{rel}", s.sex, str(s.age), s.view.capitalize(), s.ap_pa, *cells]
        )
    for split, split_rows in rows.items():
        _write_csv(os.path.join(root, f"{split}.csv"), header, split_rows)
    return Layout("chexpert", "chexpert", root, num_examples)


def write_eyepacs(
    output_dir: str, *, num_examples: int, image_size: int, seed: int, test_examples: int = 0
) -> Layout:
    """Kaggle DR: trainLabels.csv (image,level) and train/<patient>_<eye>.jpeg.

    `test_examples` > 0 adds test/<patient>_<eye>.jpeg with retinopathy_solution.csv
    (image,level,Usage; alternately Public and Private), patients disjoint from train's.
    """
    rows = []
    for index in range(num_examples):
        s = synthetic.sample_fundus(index, seed=seed, size=image_size)
        name = f"{s.patient + 10}_{s.eye}"
        _save(s.image, os.path.join(output_dir, "train", f"{name}.jpeg"), quality=95)
        rows.append([name, str(s.grade)])
    _write_csv(os.path.join(output_dir, "trainLabels.csv"), ["image", "level"], rows)
    test_rows = []
    first = num_examples + num_examples % 2  # the next whole patient
    for index in range(test_examples):
        s = synthetic.sample_fundus(first + index, seed=seed, size=image_size)
        name = f"{s.patient + 10}_{s.eye}"
        _save(s.image, os.path.join(output_dir, "test", f"{name}.jpeg"), quality=95)
        test_rows.append([name, str(s.grade), ("Public", "Private")[index % 2]])
    if test_rows:
        _write_csv(
            os.path.join(output_dir, "retinopathy_solution.csv"),
            ["image", "level", "Usage"],
            test_rows,
        )
    return Layout("eyepacs", "eyepacs", output_dir, num_examples + test_examples)


def aptos_id(seed: int, index: int) -> str:
    """A 12-hex-digit APTOS-style id_code, stable for (seed, index)."""
    return hashlib.sha256(f"aptos/{seed}/{index}".encode()).hexdigest()[:12]


def write_aptos(output_dir: str, *, num_examples: int, image_size: int, seed: int) -> Layout:
    """APTOS 2019: train.csv (id_code,diagnosis) and train_images/<id_code>.png."""
    rows = []
    for index in range(num_examples):
        s = synthetic.sample_fundus(index, seed=seed, size=image_size)
        code = aptos_id(seed, index)
        _save(s.image, os.path.join(output_dir, "train_images", f"{code}.png"))
        rows.append([code, str(s.grade)])
    _write_csv(os.path.join(output_dir, "train.csv"), ["id_code", "diagnosis"], rows)
    return Layout("aptos", "aptos", output_dir, num_examples)


def _medmnist_splits(num_examples: int) -> list[tuple[str, range]]:
    out, start = [], 0
    for i, (name, fraction) in enumerate(MEDMNIST_SPLITS):
        count = (
            num_examples - start
            if i == len(MEDMNIST_SPLITS) - 1
            else int(round(fraction * num_examples))
        )
        out.append((name, range(start, start + count)))
        start += count
    return out


def _chestmnist_row(raw: dict[str, float | None]) -> list[int]:
    return [
        int(label in CHESTMNIST_FROM_CHEXPERT and raw[CHESTMNIST_FROM_CHEXPERT[label]] == 1.0)
        for label in CHESTMNIST_TASKS
    ]


def write_medmnist(output_dir: str, *, num_examples: int, image_size: int, seed: int) -> Layout:
    """MedMNIST .npz files: retinamnist (multi-class, RGB) and chestmnist (multi-label, gray)."""
    os.makedirs(output_dir, exist_ok=True)
    retina: dict[str, np.ndarray] = {}
    chest: dict[str, np.ndarray] = {}
    side = (image_size, image_size)
    for name, indices in _medmnist_splits(num_examples):
        fundus = [synthetic.sample_fundus(i, seed=seed, size=image_size) for i in indices]
        cxr = [synthetic.sample_cxr(i, seed=seed, size=image_size) for i in indices]
        retina[f"{name}_images"] = np.array([s.image for s in fundus], np.uint8).reshape(
            -1, *side, 3
        )
        retina[f"{name}_labels"] = np.array([s.grade for s in fundus], np.uint8).reshape(-1, 1)
        chest[f"{name}_images"] = np.array([s.image for s in cxr], np.uint8).reshape(-1, *side)
        chest[f"{name}_labels"] = np.array(
            [_chestmnist_row(s.raw_labels) for s in cxr], np.uint8
        ).reshape(-1, len(CHESTMNIST_TASKS))
    retina_path = os.path.join(output_dir, "retinamnist.npz")
    chest_path = os.path.join(output_dir, "chestmnist.npz")
    np.savez_compressed(retina_path, **retina)
    np.savez_compressed(chest_path, **chest)
    return Layout("medmnist", "medmnist", retina_path, num_examples, (("medmnist", chest_path),))


def write_folder(output_dir: str, *, num_examples: int, image_size: int, seed: int) -> Layout:
    """Class folders `<class>/<id>.png` of the synthetic natural (shape x texture) classes."""
    for index in range(num_examples):
        s = synthetic.sample_natural(index, seed=seed, size=image_size)
        cls = synthetic.NATURAL_CLASSES[s.cls]
        _save(s.image, os.path.join(output_dir, cls, f"{s.patient_id}.png"))
    return Layout("folder", "folder", output_dir, num_examples)


def dicom_dataset(
    image: np.ndarray, *, patient_id: str, variant: int, uid_seed: str
) -> tuple[object, np.ndarray]:
    """A pydicom Dataset holding the uint8 [H, W] `image` in one of three encodings.

    variant 0: 12 bits stored, MONOCHROME2, rescale slope 1 / intercept -1024, a window that
    spans the stored range; variant 1: the same but MONOCHROME1 (stored values inverted);
    variant 2: 8 bits, MONOCHROME2, no rescale or window. Returns (dataset, stored pixels).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    uid = generate_uid(entropy_srcs=[uid_seed])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = uid
    ds.PatientID = patient_id
    ds.Modality = "DX"
    if variant in (0, 1):
        stored = image.astype(np.uint16) * 16  # 0..4080 of a 12-bit range
        if variant == 1:
            stored = 4095 - stored
        photometric = "MONOCHROME1" if variant == 1 else "MONOCHROME2"
        ds.set_pixel_data(stored, photometric, 12)
        ds.RescaleSlope = "1"
        ds.RescaleIntercept = "-1024"
        ds.WindowCenter = "1023.5"  # (0 + 4095) / 2 - 1024
        ds.WindowWidth = "4096"
    else:
        stored = image.astype(np.uint8)
        ds.set_pixel_data(stored, "MONOCHROME2", 8)
    return ds, stored


# Transfer syntax UIDs compress_dicom writes (pydicom.uid names in the comments).
COMPRESSED_SYNTAXES = (
    "1.2.840.10008.1.2.4.50",  # JPEGBaseline8Bit (8-bit images only)
    "1.2.840.10008.1.2.4.51",  # JPEGExtended12Bit
    "1.2.840.10008.1.2.4.57",  # JPEGLossless (process 14)
    "1.2.840.10008.1.2.4.70",  # JPEGLosslessSV1
    "1.2.840.10008.1.2.4.80",  # JPEGLSLossless
    "1.2.840.10008.1.2.4.81",  # JPEGLSNearLossless
    "1.2.840.10008.1.2.4.90",  # JPEG2000Lossless (images of at least 32 x 32)
    "1.2.840.10008.1.2.4.91",  # JPEG2000 (images of at least 32 x 32)
    "1.2.840.10008.1.2.5",  # RLELossless
)
_GDCM_SYNTAXES = {
    "1.2.840.10008.1.2.4.50": "JPEGBaselineProcess1",
    "1.2.840.10008.1.2.4.51": "JPEGExtendedProcess2_4",
    "1.2.840.10008.1.2.4.57": "JPEGLosslessProcess14",
    "1.2.840.10008.1.2.4.70": "JPEGLosslessProcess14_1",
}


def compress_dicom(ds, syntax: str):
    """Returns a copy of the uncompressed pydicom Dataset `ds` encoded in transfer `syntax`.

    `syntax` is one of COMPRESSED_SYNTAXES. Lossy syntaxes (JPEG baseline and extended, JPEG-LS
    near-lossless with an error bound of 2, JPEG 2000 at a 2:1 ratio) change pixel values a
    little; the others are exact.
    """
    import pydicom
    from pydicom import uid

    if syntax not in COMPRESSED_SYNTAXES:
        raise ValueError(f"unknown compressed syntax {syntax!r}; one of {COMPRESSED_SYNTAXES}")
    if syntax in _GDCM_SYNTAXES:
        return _gdcm_transcode(ds, _GDCM_SYNTAXES[syntax])
    out = pydicom.Dataset(ds)
    out.file_meta = pydicom.dataset.FileMetaDataset(ds.file_meta)
    options = {}
    if syntax == uid.JPEGLSNearLossless:
        options["jls_error"] = 2
    elif syntax == uid.JPEG2000:
        options["j2k_cr"] = [2]
    out.compress(syntax, **options)
    return out


def _gdcm_transcode(ds, gdcm_name: str):
    """`ds` re-encoded by GDCM into its transfer syntax `gdcm_name` (through temporary files)."""
    import gdcm
    import pydicom

    with tempfile.TemporaryDirectory() as tmp:
        source, target = os.path.join(tmp, "in.dcm"), os.path.join(tmp, "out.dcm")
        ds.save_as(source, enforce_file_format=True)
        reader = gdcm.ImageReader()
        reader.SetFileName(source)
        if not reader.Read():
            raise RuntimeError("GDCM cannot read the uncompressed dataset")
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, gdcm_name)))
        change.SetInput(reader.GetImage())
        if not change.Change():
            raise RuntimeError(f"GDCM cannot encode the dataset as {gdcm_name}")
        writer = gdcm.ImageWriter()
        writer.SetFileName(target)
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        if not writer.Write():
            raise RuntimeError(f"GDCM cannot write the {gdcm_name} dataset")
        return pydicom.dcmread(target)


def write_dicom(output_dir: str, *, num_examples: int, image_size: int, seed: int) -> Layout:
    """DICOM chest X-rays in class folders plus a CSV manifest with the 5 findings."""
    header = ["path", "patient_id", *DICOM_TASKS]
    rows = []
    for index in range(num_examples):
        s = synthetic.sample_cxr(index, seed=seed, size=image_size)
        cls = "effusion" if s.raw_labels["Pleural Effusion"] == 1.0 else "no_effusion"
        rel = f"images/{cls}/{s.patient_id}_study{s.study}.dcm"
        ds, _ = dicom_dataset(
            s.image, patient_id=s.patient_id, variant=index % 3, uid_seed=f"{seed}/{index}"
        )
        path = os.path.join(output_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        rows.append([rel, s.patient_id, *(_raw_cell(s.raw_labels[t]) for t in DICOM_TASKS)])
    manifest = os.path.join(output_dir, "manifest.csv")
    _write_csv(manifest, header, rows)
    images = os.path.join(output_dir, "images")
    return Layout("dicom", "csv", manifest, num_examples, (("folder", images),))


_WRITERS = {
    "chexpert": write_chexpert,
    "eyepacs": write_eyepacs,
    "aptos": write_aptos,
    "medmnist": write_medmnist,
    "folder": write_folder,
    "dicom": write_dicom,
}


def write_layout(
    *, layout: str, output_dir: str, num_examples: int, image_size: int = 64, seed: int = 0
) -> Layout:
    """Writes `num_examples` synthetic images in the on-disk `layout` under `output_dir`."""
    _check(layout, num_examples, image_size)
    return _WRITERS[layout](output_dir, num_examples=num_examples, image_size=image_size, seed=seed)
