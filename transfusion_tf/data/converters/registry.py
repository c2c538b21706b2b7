"""The converter registry (one entry per `--format`) and `prepare_dataset`, its one entry point.

Importing this module registers every converter: chexpert, eyepacs, aptos, medmnist, folder,
csv and synthetic (SPEC D2, D4).
"""

from __future__ import annotations

from transfusion_tf.data.converters import (  # noqa: F401  (imported to register)
    aptos,
    chexpert,
    csv_manifest,
    eyepacs,
    folder,
    medmnist,
    synthetic,
)
from transfusion_tf.data.converters.base import CONVERTERS, ConversionError, ConvertOptions
from transfusion_tf.data.converters.driver import format_summary

__all__ = ["CONVERTERS", "ConversionError", "ConvertOptions", "format_summary", "prepare_dataset"]


def prepare_dataset(
    *, source_format: str, input_path: str, output_dir: str, options: ConvertOptions
) -> dict:
    """Converts `input_path` in layout `source_format` to a dataset in `output_dir`.

    Returns the dataset_info dict (also written as `<output_dir>/dataset_info.json`). Raises
    ConversionError (a ValueError naming the file, column or flag) for bad input.
    """
    if source_format not in CONVERTERS:
        raise ConversionError(
            f"unknown --format {source_format!r}; choose one of: {', '.join(CONVERTERS.names())}"
        )
    if source_format != "synthetic" and not input_path:
        raise ConversionError(f"--input is required for --format={source_format}")
    convert = CONVERTERS.get(source_format)
    return convert(input_path=input_path, output_dir=output_dir, options=options)
