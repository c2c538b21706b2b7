"""Unit activations of trained runs (SPEC A3), streamed into similarity accumulators.

A run is a workdir of `transfusion-train` (read through `transfusion_tf.workdir`): its config
names the model, and its init, final and best weights are those at step 0, at the end, and at
the best validation AUC. `load_run` rebuilds the model and loads one of them;
`UnitExtractor` maps images [batch, S, S, C] to every unit's representative output layer (SPEC
M4). `pairwise_unit_similarity` runs several loaded models over the same fixed images and, for
each requested pair of models and each unit, accumulates the co-moments of the two activation
sets batch by batch (memory independent of the number of datapoints).

Conv maps [batch, h, w, c] become datapoints by the conv policy:
- "positions": every (image, position) is a datapoint (the SVCCA authors' treatment), with at
  most `max_positions` positions per image drawn by a generator seeded with (seed, image index),
  so both models of a pair see the same positions;
- "pool": global average pooling, one datapoint per image.
Maps of different spatial size are resized (area averaging) to the smaller size first.

With `null_permutations` K > 0, the same pass also accumulates the permutation null of every
pair and unit (`null.NullCovariance`): y's images are deranged within each image batch, the rows
of x's image i being paired with y's image pi(i) at the same positions (see `null`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from transfusion_tf import config as config_lib
from transfusion_tf import workdir as workdir_lib
from transfusion_tf.analysis import measures as measures_lib
from transfusion_tf.analysis import null as null_lib
from transfusion_tf.analysis.streaming import CovarianceAccumulator

CONV_POLICIES = ("positions", "pool")


@dataclasses.dataclass(frozen=True)
class ActivationSpec:
    """Which datapoints the activations are taken on.

    The defaults follow the measured chance levels in the README ("Chance levels"): 1,024
    images halve chance mean CCA at ResNet50's block4 (0.39 with 256 images, 0.21 with 1,024)
    and 64 positions keep its whole 7 x 7 map at 224 px.

    split: dataset split; num_examples: the first N examples of the split in file order (fixed
    across runs); batch_size: images per forward pass; conv_policy: "positions" or "pool";
    max_positions: cap of positions per image for "positions"; seed: position subsampling and
    null permutation seed; null_permutations: K permutations of the chance level (0: none).
    """

    split: str = "valid"
    num_examples: int = 1024
    batch_size: int = 32
    conv_policy: str = "positions"
    max_positions: int = 64
    seed: int = 0
    null_permutations: int = null_lib.DEFAULT_PERMUTATIONS

    def __post_init__(self) -> None:
        if self.conv_policy not in CONV_POLICIES:
            raise ValueError(
                f"conv_policy={self.conv_policy!r}: choose one of {', '.join(CONV_POLICIES)}"
            )
        for name in ("num_examples", "batch_size", "max_positions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.null_permutations < 0 or self.null_permutations == 1:
            raise ValueError(
                f"null_permutations={self.null_permutations} must be 0 (no chance level) or >= 2"
            )


@dataclasses.dataclass
class LoadedRun:
    """A run's model with one set of weights loaded, and its unit map."""

    workdir: str
    which: str
    config: config_lib.RunConfig
    model: keras.Model
    units: list  # list[models.Unit]

    @property
    def label(self) -> str:
        return f"{os.path.basename(os.path.normpath(self.workdir))}:{self.which}"


def load_run(workdir: str, *, which: str = "final") -> LoadedRun:
    """Rebuilds a workdir's model from its config and loads its `which` weights.

    `workdir.WorkdirError` (or `MissingFileError`) names the file that is absent or bad.
    """
    from transfusion_tf.models import registry as model_registry

    cfg, model = workdir_lib.load_model(workdir, weights=which)
    units = model_registry.model_units(model, cfg.model.name)
    return LoadedRun(workdir=workdir, which=which, config=cfg, model=model, units=units)


class UnitExtractor:
    """Maps images [B, S, S, C] to {unit name: output [B, h, w, c] or [B, c]} of one model."""

    def __init__(self, run: LoadedRun, unit_names: Sequence[str]) -> None:
        by_name = {u.name: u for u in run.units}
        missing = [n for n in unit_names if n not in by_name]
        if missing:
            raise ValueError(
                f"{run.label}: unknown units {missing}; the model has {', '.join(by_name)}"
            )
        self.unit_names = list(unit_names)
        outputs = [run.model.get_layer(by_name[n].output_layer).output for n in unit_names]
        self._model = keras.Model(run.model.input, outputs)
        # No autograph: the call has no tensor-dependent Python control flow to convert.
        self._call = tf.function(
            lambda images: self._model(images, training=False),
            # [None, H, W, C]: one trace serves every batch size (the last may be smaller).
            input_signature=[tf.TensorSpec([None, *self._model.input_shape[1:]], tf.float32)],
            autograph=False,
        )

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self._call(tf.convert_to_tensor(images, tf.float32))
        return {
            n: np.asarray(o, dtype=np.float64)
            for n, o in zip(self.unit_names, outputs, strict=True)
        }


def dataset_images(
    *, dataset_dir: str, spec: ActivationSpec, image_size: int, channels: int, preprocess_mode: str
) -> Iterator[np.ndarray]:
    """The first `spec.num_examples` images of a split, preprocessed, in fixed order.

    Yields float32 [b, image_size, image_size, channels] batches (the last may be smaller).
    """
    from transfusion_tf.data import pipeline, verify

    ds = pipeline.build_dataset(
        dataset_dir=dataset_dir,
        split=spec.split,
        batch_size=spec.batch_size,
        image_size=image_size,
        channels=channels,
        preprocess_mode=preprocess_mode,
        training=False,
        deterministic=True,
    )
    remaining = spec.num_examples
    with verify.data_loss_errors(dataset_dir=dataset_dir, split=spec.split):
        for batch in ds:
            images = batch["image"].numpy()[:remaining]
            remaining -= images.shape[0]
            yield images
            if remaining <= 0:
                break
    if remaining > 0:
        # A whole pass was read: it must hold the examples dataset_info.json lists.
        verify.check_pass_count(
            dataset_dir=dataset_dir, split=spec.split, read=spec.num_examples - remaining
        )
        logging.warning(
            "split %r of %s has only %d examples; using all of them instead of %d",
            spec.split,
            dataset_dir,
            spec.num_examples - remaining,
            spec.num_examples,
        )


def _resize(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if maps.shape[1:3] == size:
        return maps
    return tf.image.resize(maps, size, method="area").numpy().astype(np.float64)


def position_indices(*, seed: int, image_index: int, positions: int, cap: int) -> np.ndarray:
    """Sorted positions kept for one image: all if positions <= cap, else a seeded subset."""
    if positions <= cap:
        return np.arange(positions)
    rng = np.random.default_rng([seed, image_index])
    return np.sort(rng.choice(positions, size=cap, replace=False))


@dataclasses.dataclass(frozen=True)
class PairedRows:
    """Matched datapoints of one batch: x [rows, c_a], y [rows, c_b], and the null's y rows.

    nulls: one [rows, c_b] array per permutation (y's images deranged, same positions);
    same_rows: each null array holds the rows of y in another order (no position subsampling).
    """

    x: np.ndarray
    y: np.ndarray
    nulls: list[np.ndarray]
    same_rows: bool


def paired_rows(
    a: np.ndarray,
    b: np.ndarray,
    *,
    spec: ActivationSpec,
    first_image: int,
    permutations: Sequence[np.ndarray] = (),
) -> PairedRows:
    """Turns one batch of two models' unit outputs into matched datapoints and null rows.

    a, b: [B, h, w, c] conv maps or [B, c] vectors for the same B images (image `first_image`
    onwards of the fixed set). `permutations`: image orders [B] for the null; the null rows of
    image i are b's image perm[i] at image i's positions.
    """
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"batches differ in size: {a.shape[0]} and {b.shape[0]}")
    if a.ndim == 2 and b.ndim == 2:
        return PairedRows(a, b, [b[perm] for perm in permutations], True)
    if a.ndim != b.ndim or a.ndim != 4:
        raise ValueError(f"cannot pair activations of shapes {a.shape} and {b.shape}")
    if spec.conv_policy == "pool":
        pa, pb = a.mean(axis=(1, 2)), b.mean(axis=(1, 2))
        return PairedRows(pa, pb, [pb[perm] for perm in permutations], True)
    size = (min(a.shape[1], b.shape[1]), min(a.shape[2], b.shape[2]))
    a, b = _resize(a, size), _resize(b, size)
    batch, positions = a.shape[0], size[0] * size[1]
    a = a.reshape(batch, positions, -1)
    b = b.reshape(batch, positions, -1)
    keeps = [
        position_indices(
            seed=spec.seed, image_index=first_image + i, positions=positions, cap=spec.max_positions
        )
        for i in range(batch)
    ]
    x = np.concatenate([a[i, keep] for i, keep in enumerate(keeps)])
    y = np.concatenate([b[i, keep] for i, keep in enumerate(keeps)])
    nulls = [
        np.concatenate([b[perm[i], keep] for i, keep in enumerate(keeps)]) for perm in permutations
    ]
    return PairedRows(x, y, nulls, positions <= spec.max_positions)


def paired_datapoints(
    a: np.ndarray, b: np.ndarray, *, spec: ActivationSpec, first_image: int
) -> tuple[np.ndarray, np.ndarray]:
    """x [rows, c_a], y [rows, c_b] of `paired_rows` (no null)."""
    rows = paired_rows(a, b, spec=spec, first_image=first_image)
    return rows.x, rows.y


def null_permutations(*, spec: ActivationSpec, first_image: int, batch: int) -> list[np.ndarray]:
    """The K image derangements [batch] of one image batch, seeded by (seed, k, first_image)."""
    if batch < 2:
        return []
    return [
        null_lib.derangement(np.random.default_rng([spec.seed, k, first_image]), batch)
        for k in range(spec.null_permutations)
    ]


def _without_singleton_tail(images: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The image batches, except that a last batch of one image joins the batch before it."""
    held = None
    for batch in images:
        if held is not None and batch.shape[0] == 1:
            batch = np.concatenate([held, batch])
            held = None
        if held is not None:
            yield held
        held = batch
    if held is not None:
        yield held


class UnitPairStatistics(CovarianceAccumulator):
    """The co-moments of one unit of two runs, plus the accumulators of other streaming measures.

    `accumulators` maps a measure name to an object with `update(x, y)` / `value()` (see
    `measures.Measure.accumulator`); `update` feeds every row to all of them. `null` (a
    `null.NullCovariance`) and `null_accumulators` (one such dict per permutation) hold the
    permutation null; `update_null` feeds them.
    """

    def __init__(
        self,
        x_features: int,
        y_features: int,
        accumulators: dict[str, Any],
        *,
        null: null_lib.NullCovariance | None = None,
        null_accumulators: Sequence[dict[str, Any]] = (),
    ) -> None:
        super().__init__(x_features, y_features)
        self.accumulators = accumulators
        self.null = null
        self.null_accumulators = list(null_accumulators)

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        super().update(x, y)
        for accumulator in self.accumulators.values():
            accumulator.update(x, y)

    def update_null(self, x: np.ndarray, y_permuted: Sequence[np.ndarray]) -> None:
        """Adds x [b, p] paired with each permutation's y rows [b, q]."""
        if self.null is None:
            return
        self.null.update(x, y_permuted)
        for accumulators, y in zip(self.null_accumulators, y_permuted, strict=True):
            for accumulator in accumulators.values():
                accumulator.update(x, y)

    def null_statistics(self) -> list[tuple[Any, dict[str, Any]]]:
        """(JointCovariance, accumulators) of each permutation; empty without a null."""
        if self.null is None:
            return []
        covs = self.null.covariances(self.covariance())
        return list(zip(covs, self.null_accumulators, strict=True))


def pairwise_unit_similarity(
    runs: Sequence[LoadedRun],
    pairs: Sequence[tuple[int, int]],
    *,
    images: Iterable[np.ndarray],
    unit_names: Sequence[str],
    spec: ActivationSpec,
    measures: Sequence[str] = (),
    options: measures_lib.MeasureOptions = measures_lib.MeasureOptions(),
) -> dict[tuple[int, int], dict[str, UnitPairStatistics]]:
    """Accumulates, for each pair (i, j) of `runs` and each unit, the statistics of activations.

    Every model runs once per image batch; the returned statistics give CCA, SVCCA, PWCCA and
    linear CKA of run i's unit output (first argument) vs run j's, and the accumulators of the
    other streaming measures among `measures` (minibatch CKA); with `spec.null_permutations` K,
    also their permutation null (`UnitPairStatistics.null_statistics`).
    """
    accumulated = [
        name for name in measures if measures_lib.MEASURES.get(name).accumulator is not None
    ]
    needed = sorted({k for pair in pairs for k in pair})
    extractors = {k: UnitExtractor(runs[k], unit_names) for k in needed}
    accumulators: dict[tuple[int, int], dict[str, UnitPairStatistics]] = {
        tuple(p): {} for p in pairs
    }

    def new_accumulators() -> dict[str, Any]:
        return {name: measures_lib.MEASURES.get(name).accumulator(options) for name in accumulated}

    seen = 0
    # disable=None: a progress bar on a terminal only.
    for batch in tqdm(
        _without_singleton_tail(images), desc="activations", unit="batch", disable=None
    ):
        outputs = {k: extractors[k](batch) for k in needed}
        perms = null_permutations(spec=spec, first_image=seen, batch=batch.shape[0])
        for i, j in pairs:
            for unit in unit_names:
                rows = paired_rows(
                    outputs[i][unit],
                    outputs[j][unit],
                    spec=spec,
                    first_image=seen,
                    permutations=perms,
                )
                acc = accumulators[(i, j)].get(unit)
                if acc is None:
                    k = spec.null_permutations
                    p, q = rows.x.shape[1], rows.y.shape[1]
                    acc = UnitPairStatistics(
                        p,
                        q,
                        new_accumulators(),
                        null=null_lib.NullCovariance(p, q, permutations=k, shared_y=rows.same_rows)
                        if k
                        else None,
                        null_accumulators=[new_accumulators() for _ in range(k)],
                    )
                    accumulators[(i, j)][unit] = acc
                acc.update(rows.x, rows.y)
                if acc.null is not None and not perms:
                    logging.warning("one image cannot be shuffled: no chance level for %s", unit)
                    acc.null, acc.null_accumulators = None, []
                acc.update_null(rows.x, rows.nulls)
        seen += batch.shape[0]
    if seen == 0:
        raise ValueError("no images: the dataset split is empty")
    logging.info("accumulated activations of %d images for %d pairs", seen, len(pairs))
    return accumulators
