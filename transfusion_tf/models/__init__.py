"""Models of the study (SPEC M1-M4): registry, builders and unit maps."""

from transfusion_tf.models.registry import (
    HEAD_LAYERS,
    MODELS,
    ModelSpec,
    Unit,
    build_backbone,
    build_model,
    default_preprocess_mode,
    get_spec,
    get_units,
    min_image_size,
    model_units,
    paper_param_count,
)

__all__ = [
    "HEAD_LAYERS",
    "MODELS",
    "ModelSpec",
    "Unit",
    "build_backbone",
    "build_model",
    "default_preprocess_mode",
    "get_spec",
    "get_units",
    "min_image_size",
    "model_units",
    "paper_param_count",
]
