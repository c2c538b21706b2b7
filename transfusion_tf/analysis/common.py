"""Input checks shared by every similarity measure: examples x features, float64.

All measures of `transfusion_tf.analysis` take activations as 2-D arrays shaped
[examples, features] (one row per datapoint: an image, or an (image, position) of a conv map)
and compute in float64. Inputs that cannot give a defined similarity raise `SimilarityError`
with a message that says which argument is at fault.
"""

from __future__ import annotations

import numpy as np


class SimilarityError(ValueError):
    """A similarity is undefined for these activations (shape, NaN, no variance, ...)."""


def as_activations(array: np.ndarray, *, name: str, min_examples: int = 2) -> np.ndarray:
    """Returns `array` as a float64 [examples, features] matrix after checking it.

    Raises SimilarityError when the array is not 2-D, has fewer than `min_examples` rows, no
    features, or non-finite values.
    """
    arr = np.asarray(array)
    if arr.ndim != 2:
        raise SimilarityError(
            f"{name}: activations must be 2-D [examples, features], got shape {arr.shape}"
        )
    if arr.shape[1] == 0:
        raise SimilarityError(f"{name}: activations have no features (shape {arr.shape})")
    if arr.shape[0] < min_examples:
        raise SimilarityError(
            f"{name}: need at least {min_examples} examples, got {arr.shape[0]} (shape {arr.shape})"
        )
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise SimilarityError(f"{name}: activations contain NaN or infinite values")
    return arr


def as_activation_pair(
    x: np.ndarray, y: np.ndarray, *, min_examples: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Checks two activation matrices: each valid and with the same number of examples."""
    x = as_activations(x, name="x", min_examples=min_examples)
    y = as_activations(y, name="y", min_examples=min_examples)
    if x.shape[0] != y.shape[0]:
        raise SimilarityError(
            f"x and y must have the same number of examples (rows): got {x.shape[0]} and "
            f"{y.shape[0]}"
        )
    return x, y
