"""The registry of similarity measures (`MEASURES`): one scalar per pair of activation sets.

Every measure maps x [n, p] and y [n, q] (examples x features) to a float. Streaming measures
(`Measure.streaming`) also run over batches in bounded memory, which is how the activation
analyses compare millions of (image, position) datapoints: most from co-moments
(`from_covariance`, given a `JointCovariance`), minibatch CKA from its own accumulator
(`accumulator(options)`, an object with `update(x, y)` and `value()`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

from transfusion_tf.analysis import cca as cca_lib
from transfusion_tf.analysis import cka as cka_lib
from transfusion_tf.analysis import streaming as streaming_lib
from transfusion_tf.analysis.common import SimilarityError, as_activation_pair
from transfusion_tf.registry import Registry


@dataclasses.dataclass(frozen=True)
class MeasureOptions:
    """Tuning knobs shared by the measures.

    svcca_dims: SVCCA directions kept per side, an int count or a float kept-variance fraction.
    rbf_threshold: RBF bandwidth as a multiple of the median distance.
    rtol: relative variance below which a CCA direction counts as degenerate.
    minibatch_size: rows (datapoints) per minibatch of minibatch CKA.
    """

    svcca_dims: int | float = 0.99
    rbf_threshold: float = 1.0
    rtol: float = cca_lib.DEFAULT_RTOL
    minibatch_size: int = 1024


@dataclasses.dataclass(frozen=True)
class Measure:
    """A similarity measure: `compute(x, y, options)`, plus at most one streaming form:
    `from_covariance(cov, options)` or `accumulator(options)` (see the module docstring)."""

    name: str
    description: str
    compute: Callable[[np.ndarray, np.ndarray, MeasureOptions], float]
    from_covariance: Callable[[cca_lib.JointCovariance, MeasureOptions], float] | None = None
    accumulator: Callable[[MeasureOptions], Any] | None = None

    @property
    def streaming(self) -> bool:
        return self.from_covariance is not None or self.accumulator is not None


MEASURES: Registry[Measure] = Registry("similarity measure")


def _streaming_measure(
    name: str,
    description: str,
    from_covariance: Callable[[cca_lib.JointCovariance, MeasureOptions], float],
) -> Measure:
    def compute(x: np.ndarray, y: np.ndarray, options: MeasureOptions) -> float:
        return from_covariance(cca_lib.joint_covariance(x, y), options)

    return MEASURES.add(name, Measure(name, description, compute, from_covariance))


_streaming_measure(
    "cca_mean",
    "mean of all canonical correlations",
    lambda cov, o: cca_lib.cca_from_covariance(cov, rtol=o.rtol).mean,
)
_streaming_measure(
    "svcca_mean",
    "mean canonical correlation after reducing each side to its top SVD directions",
    lambda cov, o: (
        cca_lib.cca_from_covariance(cov, x_dims=o.svcca_dims, y_dims=o.svcca_dims, rtol=o.rtol).mean
    ),
)
_streaming_measure(
    "pwcca",
    "projection-weighted CCA (Morcos et al.), weights from the side with fewer neurons; the mean "
    "of both sides' when they have as many",
    lambda cov, o: cca_lib.pwcca_from_covariance(cov, rtol=o.rtol).value,
)
_streaming_measure(
    "cka_linear",
    "linear CKA (biased HSIC)",
    lambda cov, o: cka_lib.linear_cka_from_covariance(cov),
)
MEASURES.add(
    "cka_linear_debiased",
    Measure(
        "cka_linear_debiased",
        "linear CKA with the unbiased HSIC estimator",
        lambda x, y, o: cka_lib.linear_cka(x, y, debiased=True),
    ),
)
MEASURES.add(
    "cka_rbf",
    Measure(
        "cka_rbf",
        "RBF-kernel CKA (biased HSIC), bandwidth a multiple of the median distance",
        lambda x, y, o: cka_lib.rbf_cka(x, y, threshold=o.rbf_threshold),
    ),
)
MEASURES.add(
    "cka_rbf_debiased",
    Measure(
        "cka_rbf_debiased",
        "RBF-kernel CKA with the unbiased HSIC estimator",
        lambda x, y, o: cka_lib.rbf_cka(x, y, threshold=o.rbf_threshold, debiased=True),
    ),
)


def _minibatch_accumulator(options: MeasureOptions) -> streaming_lib.RowMinibatchCKA:
    return streaming_lib.RowMinibatchCKA(rows=options.minibatch_size)


def _minibatch_cka(x: np.ndarray, y: np.ndarray, options: MeasureOptions) -> float:
    accumulator = _minibatch_accumulator(options)
    accumulator.update(x, y)
    return accumulator.value()


MEASURES.add(
    "cka_minibatch",
    Measure(
        "cka_minibatch",
        "minibatch linear CKA (Nguyen et al. 2021): unbiased HSIC of each minibatch of "
        "--minibatch_size rows, averaged, then normalised",
        _minibatch_cka,
        accumulator=_minibatch_accumulator,
    ),
)


def streaming_measure_names() -> list[str]:
    """Names of the measures usable on streamed activations (bounded memory)."""
    return [name for name in MEASURES.names() if MEASURES.get(name).streaming]


def check_measure_names(names: Sequence[str], *, streaming: bool = False) -> list[str]:
    """Validates measure names (unknown -> ValueError listing the choices); returns a list."""
    names = list(names)
    if not names:
        raise ValueError("no similarity measure given")
    for name in names:
        if name not in MEASURES:
            raise ValueError(
                f"unknown similarity measure {name!r}; choose from: {', '.join(MEASURES.names())}"
            )
        if streaming and not MEASURES.get(name).streaming:
            raise ValueError(
                f"similarity measure {name!r} needs all activations in memory and cannot be "
                f"streamed; choose from: {', '.join(streaming_measure_names())}"
            )
    return names


def compute_measures(
    x: np.ndarray,
    y: np.ndarray,
    *,
    names: Sequence[str] | None = None,
    options: MeasureOptions = MeasureOptions(),
) -> dict[str, float]:
    """Every named measure (default: all registered) of x [n, p] and y [n, q].

    The co-moments are computed once and shared by the streaming measures.
    """
    names = check_measure_names(MEASURES.names() if names is None else names)
    x, y = as_activation_pair(x, y)
    cov = None
    out: dict[str, float] = {}
    for name in names:
        measure = MEASURES.get(name)
        if measure.from_covariance is not None:
            if cov is None:
                cov = cca_lib.joint_covariance(x, y)
            out[name] = float(measure.from_covariance(cov, options))
        else:
            out[name] = float(measure.compute(x, y, options))
    return out


def measures_from_statistics(
    cov: cca_lib.JointCovariance,
    accumulators: Mapping[str, Any],
    *,
    names: Sequence[str],
    options: MeasureOptions = MeasureOptions(),
) -> dict[str, float | None]:
    """Streaming measures: co-moment ones from `cov`, the others from `accumulators[name]`.

    As `measures_from_covariance`, a measure undefined here (e.g. a dead unit) is None and the
    reason is logged.
    """
    out: dict[str, float | None] = {}
    for name in check_measure_names(names, streaming=True):
        measure = MEASURES.get(name)
        try:
            if measure.from_covariance is not None:
                out[name] = float(measure.from_covariance(cov, options))
            elif name in accumulators:
                out[name] = float(accumulators[name].value())
            else:
                raise ValueError(f"similarity measure {name!r} needs its streaming accumulator")
        except SimilarityError as err:
            logging.warning("similarity measure %s is undefined: %s", name, err)
            out[name] = None
    return out


def measures_from_covariance(
    cov: cca_lib.JointCovariance,
    *,
    names: Sequence[str],
    options: MeasureOptions = MeasureOptions(),
) -> dict[str, float | None]:
    """Co-moment measures from `cov`; a measure undefined here is None, not an exception.

    Meant for sweeps over many units, where one dead unit (constant activations) should not stop
    the rest; the reason is logged.
    """
    return measures_from_statistics(cov, {}, names=names, options=options)
