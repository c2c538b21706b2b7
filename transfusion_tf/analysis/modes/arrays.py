"""`arrays`: every similarity measure of two `.npy` activation files, against chance.

Writes similarity.json, similarity.csv, similarity.png and TensorBoard (that figure and the
table of measures).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from transfusion_tf.analysis import cca as cca_lib
from transfusion_tf.analysis import figures
from transfusion_tf.analysis import measures as measures_lib
from transfusion_tf.analysis import null as null_lib
from transfusion_tf.analysis import output as output_lib
from transfusion_tf.analysis.common import SimilarityError, as_activation_pair

MODE = "arrays"
_TABLE_KEYS = ("measure", "value", "null_mean", "null_sd", "null_permutations", "above_chance")


def load_activations(path: str) -> np.ndarray:
    """A [examples, features] activation matrix from a `.npy` file (no pickle).

    Raises FileNotFoundError or ValueError naming the file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"activation file {path} not found")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: not a readable .npy array ({err})") from err
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path}: expected one array (.npy), got {type(array).__name__}")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{path}: expected a numeric array, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(
            f"{path}: activations must be 2-D [examples, features], got shape {array.shape}; "
            "flatten or pool conv maps first"
        )
    return array


def analyze_arrays(
    *,
    a_path: str,
    b_path: str,
    output_dir: str,
    measures: Sequence[str] | None = None,
    options: measures_lib.MeasureOptions = measures_lib.MeasureOptions(),
    max_gram_examples: int = 5000,
    seed: int = 0,
    null_permutations: int = null_lib.DEFAULT_PERMUTATIONS,
    rows_per_image: int = 1,
) -> dict[str, Any]:
    """Every similarity measure (or the named ones) of two `.npy` activation files, vs chance.

    RBF CKA builds n x n Gram matrices, so with more than `max_gram_examples` rows it uses a
    seeded subsample of that many (reported as "gram_examples"). A measure undefined on
    these inputs is null with its reason under "undefined". `null` (measure -> mean, sd,
    permutations) is the same measure over `null_permutations` derangements of b's rows, taken
    in blocks of `rows_per_image` consecutive rows (the positions of one image, for conv maps
    flattened image-major); `above_chance` (measure -> bool) applies the 3-sd rule.
    Writes similarity.json, similarity.csv, similarity.png and TensorBoard (the figure and the
    table of measures).
    """
    names = measures_lib.check_measure_names(measures or measures_lib.MEASURES.names())
    if null_permutations < 0 or null_permutations == 1:
        raise ValueError(
            f"null_permutations={null_permutations} must be 0 (no chance level) or >= 2"
        )
    x, y = _activation_pair(
        a_path, b_path, rows_per_image=rows_per_image, null_permutations=null_permutations
    )
    subsample = None
    if x.shape[0] > max_gram_examples:
        subsample = np.sort(
            np.random.default_rng(seed).choice(x.shape[0], max_gram_examples, replace=False)
        )
    cov = cca_lib.joint_covariance(x, y)
    values, undefined = _measure_values(x, y, cov, names=names, options=options, rows=subsample)
    samples = null_lib.array_null_samples(
        x,
        y,
        names=[n for n in names if values[n] is not None],
        options=options,
        permutations=null_permutations,
        rows_per_group=rows_per_image,
        seed=seed,
        gram_rows=subsample,
    )
    null = {n: null_lib.summarize(samples.get(n, [])) for n in names}
    verdict = {n: null_lib.above_chance(values[n], null[n]) for n in names}
    ratio = _datapoints_per_feature(x, y, a_path=a_path, b_path=b_path)
    details = _cca_details(cov, options=options, undefined=undefined)
    payload = {
        **values,
        "mode": MODE,
        "a": a_path,
        "b": b_path,
        "examples": int(x.shape[0]),
        "a_features": int(x.shape[1]),
        "b_features": int(y.shape[1]),
        "datapoints_per_feature": ratio,
        "rows_per_image": rows_per_image,
        "options": dataclasses.asdict(options),
        "gram_examples": int(x.shape[0] if subsample is None else subsample.size),
        "null": null,
        "above_chance": verdict,
        "above_chance_rule": (
            f"value > null mean + {null_lib.ABOVE_CHANCE_SD:g} null sd; null: the same measure "
            "with b's images (blocks of rows_per_image rows) deranged"
        ),
        "undefined": undefined,
        **details,
    }
    _write(output_dir, payload, values=values, null=null, verdict=verdict)
    return payload


def _activation_pair(
    a_path: str, b_path: str, *, rows_per_image: int, null_permutations: int
) -> tuple[np.ndarray, np.ndarray]:
    """The two files as a checked (x, y) pair: [n, p] and [n, q], the same n examples.

    ValueError naming the file(s) for a mismatch of examples or rows per image.
    """
    a, b = load_activations(a_path), load_activations(b_path)
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{a_path} has {a.shape[0]} examples but {b_path} has {b.shape[0]}: rows must be "
            "the same examples in the same order"
        )
    try:
        x, y = as_activation_pair(a, b)
    except SimilarityError as err:
        raise ValueError(f"{a_path} (x) and {b_path} (y): {err}") from err
    if rows_per_image < 1 or x.shape[0] % rows_per_image:
        raise ValueError(
            f"rows_per_image={rows_per_image}: the {x.shape[0]} rows of {a_path} are not a whole "
            "number of images of that many rows"
        )
    if null_permutations and x.shape[0] // rows_per_image < 2:
        raise ValueError(
            f"{a_path}: a permutation null needs at least 2 images of {rows_per_image} rows"
        )
    return x, y


def _datapoints_per_feature(x: np.ndarray, y: np.ndarray, *, a_path: str, b_path: str) -> float:
    """n / (p + q) of x [n, p] and y [n, q]; a warning when chance similarity is high there."""
    ratio = null_lib.datapoints_per_feature(x.shape[0], x.shape[1], y.shape[1])
    if ratio < null_lib.LOW_DATAPOINTS_PER_FEATURE:
        logging.warning(
            "%s vs %s: %d datapoints for %d + %d features (%.1f per feature); chance similarity "
            "is high, read each value against its null",
            a_path,
            b_path,
            x.shape[0],
            x.shape[1],
            y.shape[1],
            ratio,
        )
    return ratio


def _measure_values(
    x: np.ndarray,
    y: np.ndarray,
    cov,
    *,
    names: Sequence[str],
    options: measures_lib.MeasureOptions,
    rows: np.ndarray | None,
) -> tuple[dict[str, float | None], dict[str, str]]:
    """Each measure of x [n, p] and y [n, q] (RBF CKA on `rows` when given), and why undefined."""
    values: dict[str, float | None] = {}
    undefined: dict[str, str] = {}
    for name in names:
        measure = measures_lib.MEASURES.get(name)
        try:
            if measure.from_covariance is not None:
                values[name] = float(measure.from_covariance(cov, options))
            elif rows is not None and name.startswith("cka_rbf"):
                values[name] = float(measure.compute(x[rows], y[rows], options))
            else:
                values[name] = float(measure.compute(x, y, options))
        except SimilarityError as err:
            values[name], undefined[name] = None, str(err)
    return values, undefined


def _cca_details(
    cov, *, options: measures_lib.MeasureOptions, undefined: dict[str, str]
) -> dict[str, Any]:
    """The CCA spectrum and the dims kept by CCA and SVCCA; {} (noted in `undefined`) if none."""
    try:
        full = cca_lib.cca_from_covariance(cov, rtol=options.rtol)
        reduced = cca_lib.cca_from_covariance(
            cov, x_dims=options.svcca_dims, y_dims=options.svcca_dims, rtol=options.rtol
        )
    except SimilarityError as err:
        undefined.setdefault("cca_mean", str(err))
        return {}
    return {
        "cca_correlations": full.correlations.tolist(),
        "cca_dims": [full.x_dims, full.y_dims],
        "svcca_dims": [reduced.x_dims, reduced.y_dims],
    }


def _write(
    output_dir: str,
    payload: dict[str, Any],
    *,
    values: dict[str, float | None],
    null: dict[str, dict[str, Any]],
    verdict: dict[str, bool | None],
) -> None:
    """similarity.json, similarity.csv (one row per measure), similarity.png, TensorBoard."""
    rows = [
        {
            "measure": k,
            "value": v,
            "null_mean": null[k]["mean"],
            "null_sd": null[k]["sd"],
            "null_permutations": null[k]["permutations"],
            "above_chance": verdict[k],
        }
        for k, v in values.items()
    ]
    with output_lib.Output(output_dir, mode=MODE) as out:
        out.json("similarity.json", payload)
        out.csv("similarity.csv", rows)
        out.figure(
            "similarity.png",
            lambda path: figures.plot_measures(
                values,
                payload.get("cca_correlations", []),
                path,
                title=f"{os.path.basename(payload['a'])} vs {os.path.basename(payload['b'])}",
                null=null,
            ),
        )
        out.table("measures", rows, _TABLE_KEYS)
