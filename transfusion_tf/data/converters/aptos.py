"""APTOS 2019 Blindness Detection converter (SPEC D2): `train.csv` + `train_images/<id>.png`.

`train.csv` has columns `id_code,diagnosis` (ICDR grade 0-4); tasks are those of EyePACS
(`referable_dr` = grade >= 2 by default, optional `dr_grade_0`..`dr_grade_4`). APTOS gives no
patient ids, so each image is its own patient, and train/valid/test are drawn from it (seeded).
"""

from __future__ import annotations

import os

from transfusion_tf.data import fileio
from transfusion_tf.data.converters import base, driver, eyepacs


def read_aptos(input_path: str, options: base.ConvertOptions) -> base.Source:
    """Reads the APTOS 2019 layout into a Source (no source splits)."""
    root = fileio.absolute(input_path)
    if not fileio.isdir(root):
        raise base.ConversionError(f"{input_path}: APTOS folder not found")
    csv_path = os.path.join(root, "train.csv")
    if not fileio.isfile(csv_path):
        raise base.ConversionError(
            f"{input_path}: no train.csv; expected the APTOS 2019 folder with train.csv and "
            "train_images/"
        )
    return eyepacs.read_graded_csv(
        source_format="aptos",
        input_path=input_path,
        csv_path=csv_path,
        image_dir=os.path.join(root, "train_images"),
        name_column="id_code",
        grade_column="diagnosis",
        options=options,
        patient_of=lambda name: name,
        path_of=lambda image_dir, name: os.path.join(image_dir, name + ".png"),
    )


convert_aptos = driver.register_reader("aptos", read_aptos, what="the APTOS 2019 layout")
