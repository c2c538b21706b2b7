"""A synthetic Gabor filter bank for conv1 (SPEC I5; the paper's "synthetic Gabor" init).

`gabor_bank` returns kernels [k, k, in_channels, out_channels]: orientations x wavelengths x
phases, each filter a cosine carrier of wavelength lambda at angle theta under a Gaussian
envelope elongated along the stripes, with its mean removed (a band-pass filter) and the same
filter on every input channel. `scale_bank` rescales the whole bank to a target mean/std
(the source conv1's, or He scale).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

DEFAULT_ORIENTATIONS = 8
DEFAULT_PHASES = (0.0, math.pi / 2)
# The envelope's aspect ratio (along / across the stripes) and sigma per wavelength: about one
# octave of frequency bandwidth, as in V1-like and ImageNet conv1 filters.
ASPECT = 0.5
SIGMA_PER_WAVELENGTH = 0.56
MIN_WAVELENGTH = 2.5  # pixels; above the Nyquist limit of 2 so orientation stays defined
# Even a small bank spans several frequencies (as ImageNet conv1 does), trading orientations.
MIN_WAVELENGTHS = 3


@dataclasses.dataclass(frozen=True)
class GaborParams:
    """Parameters of one filter: angle (radians), wavelength and envelope sigma (pixels), phase."""

    theta: float
    wavelength: float
    sigma: float
    phase: float


def gabor_filter(kernel_size: int, params: GaborParams) -> np.ndarray:
    """One zero-mean, unit-norm Gabor filter [kernel_size, kernel_size] (float64)."""
    half = (kernel_size - 1) / 2.0
    y, x = np.mgrid[-half : half + 1 : 1.0, -half : half + 1 : 1.0]
    across = x * math.cos(params.theta) + y * math.sin(params.theta)
    along = -x * math.sin(params.theta) + y * math.cos(params.theta)
    envelope = np.exp(-(across**2 + (ASPECT * along) ** 2) / (2.0 * params.sigma**2))
    carrier = np.cos(2.0 * math.pi * across / params.wavelength + params.phase)
    g = envelope * carrier
    g -= g.mean()
    norm = np.linalg.norm(g)
    return g / norm if norm > 0 else g


def bank_params(
    *,
    kernel_size: int,
    num_filters: int,
    orientations: int = DEFAULT_ORIENTATIONS,
    phases: tuple[float, ...] = DEFAULT_PHASES,
) -> list[GaborParams]:
    """Parameters of `num_filters` filters spread over orientations x wavelengths x phases.

    Wavelengths are geometric from `MIN_WAVELENGTH` to the kernel size (enough of them to reach
    `num_filters`, and at least `MIN_WAVELENGTHS`); when the grid has more filters than
    needed, an even subset is kept (it spreads over wavelengths and orientations).
    """
    if kernel_size < 2:
        raise ValueError(f"a Gabor bank needs a kernel of at least 2x2, got {kernel_size}")
    if num_filters < 1:
        raise ValueError(f"num_filters={num_filters} must be positive")
    per_wavelength = orientations * len(phases)
    num_wavelengths = max(MIN_WAVELENGTHS, math.ceil(num_filters / per_wavelength))
    longest = max(MIN_WAVELENGTH, float(kernel_size))
    wavelengths = np.geomspace(MIN_WAVELENGTH, longest, num_wavelengths)
    grid = [
        GaborParams(
            theta=math.pi * o / orientations,
            wavelength=float(lam),
            sigma=min(SIGMA_PER_WAVELENGTH * float(lam), kernel_size / 3.0),
            phase=float(phase),
        )
        for lam in wavelengths
        for o in range(orientations)
        for phase in phases
    ]
    keep = np.unique(np.round(np.linspace(0, len(grid) - 1, num_filters)).astype(int))
    return [grid[i] for i in keep]


def gabor_bank(
    *, kernel_size: int, in_channels: int, out_channels: int, orientations: int = 8
) -> tuple[np.ndarray, list[GaborParams]]:
    """A bank [kernel_size, kernel_size, in_channels, out_channels] (float64) and its parameters.

    Every filter is zero-mean with unit norm per input channel slice.
    """
    params = bank_params(
        kernel_size=kernel_size, num_filters=out_channels, orientations=orientations
    )
    filters = np.stack([gabor_filter(kernel_size, p) for p in params], axis=-1)  # [k, k, out]
    bank = np.repeat(filters[:, :, None, :], in_channels, axis=2)
    return bank, params


def scale_bank(bank: np.ndarray, *, mean: float, std: float) -> np.ndarray:
    """Affinely rescales the whole bank to the given mean and standard deviation (float32)."""
    centred = bank - bank.mean()
    spread = centred.std()
    if spread == 0:
        raise ValueError("cannot rescale a constant filter bank")
    return (centred / spread * std + mean).astype(np.float32)


def he_std(kernel_shape: tuple[int, ...]) -> float:
    """He (Kaiming) normal standard deviation sqrt(2 / fan_in) of a conv kernel [k, k, in, out]."""
    fan_in = int(np.prod(kernel_shape[:-1]))
    return math.sqrt(2.0 / fan_in)
