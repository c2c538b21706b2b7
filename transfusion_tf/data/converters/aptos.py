"""APTOS 2019 Blindness Detection converter (SPEC D2): `train.csv` + `train_images/<id>.png`.

`train.csv` has columns `id_code,diagnosis` (ICDR grade 0-4); tasks are those of EyePACS
(`referable_dr` = grade >= 2 by default, optional `dr_grade_0`..`dr_grade_4`). APTOS gives no
patient ids, so each image is its own patient, and train/valid/test are drawn from it (seeded).
"""

from __future__ import annotations

import os

from transfusion_tf.data.converters import base, driver, eyepacs


def read_aptos(input_path: str, options: base.ConvertOptions) -> base.Source:
    """Reads the APTOS 2019 layout into a Source (no source splits)."""
    root = os.path.abspath(input_path)
    if not os.path.isdir(root):
        raise base.ConversionError(f"{input_path}: APTOS folder not found")
    csv_path = os.path.join(root, "train.csv")
    if not os.path.isfile(csv_path):
        raise base.ConversionError(
            f"{input_path}: no train.csv; expected the APTOS 2019 folder with train.csv and "
            "train_images/"
        )
    image_dir = os.path.join(root, "train_images")
    if not os.path.isdir(image_dir):
        raise base.ConversionError(f"{image_dir}: image folder not found")
    tasks = base.select_tasks(eyepacs.DR_TASKS, options.tasks, default=eyepacs.DEFAULT_TASKS)
    source = base.Source(
        source_format="aptos",
        input_path=input_path,
        tasks=tasks,
        records=[],
        label_policy={"referable_dr": f"grade >= {eyepacs.REFERABLE_GRADE}"},
    )
    table = base.read_csv(csv_path, required=("id_code", "diagnosis"))
    for line, row in table.rows:
        name = row["id_code"].strip()
        grade = eyepacs.parse_grade(
            row["diagnosis"], where=f"{csv_path}:{line}: column 'diagnosis'"
        )
        if base.resolve_under(image_dir, name) is None or "/" in name.replace("\\", "/"):
            source.skip(f"{csv_path}:{line}: {name}", "path escapes the dataset root")
            continue
        source.records.append(
            base.SourceRecord(
                example_id=name,
                patient_id=name,
                labels=eyepacs.dr_labels(grade, tasks),
                mask=(1.0,) * len(tasks),
                path=os.path.join(image_dir, name + ".png"),
            )
        )
    return source


@base.CONVERTERS.register("aptos")
def convert_aptos(*, input_path: str, output_dir: str, options: base.ConvertOptions) -> dict:
    """Converts the APTOS 2019 layout to TFRecords in `output_dir`; returns dataset_info."""
    source = read_aptos(input_path, options)
    return driver.write_source(source, output_dir=output_dir, options=options)
