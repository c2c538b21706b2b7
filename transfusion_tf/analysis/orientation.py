"""Orientation selectivity and preferred frequency of conv1 filters (the demo's check that a
source model learned oriented, multi-frequency filters, as ImageNet conv1 does; Fig. 5).

Per filter [k, k, in_channels], the power spectrum (summed over input channels, zero-padded
to `FFT_SIZE`, DC removed) gives:
  - orientation selectivity |sum P(f) exp(2i theta(f))| / sum P(f) in [0, 1]: 1 for energy on
    one orientation (a Gabor), about 0.2-0.3 for white-noise 5x5 filters;
  - the preferred spatial frequency (cycles per pixel) at the spectral peak.
"""

from __future__ import annotations

import numpy as np

FFT_SIZE = 32


def filter_spectra(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(power [out, F, F], orientation angle [F, F], radial frequency [F, F]) of a conv kernel
    [k, k, in_channels, out_channels]."""
    if kernel.ndim != 4:
        raise ValueError(f"a conv kernel is [k, k, in, out]; got shape {kernel.shape}")
    centred = kernel - kernel.mean(axis=(0, 1), keepdims=True)
    spec = np.fft.fft2(np.transpose(centred, (3, 2, 0, 1)), s=(FFT_SIZE, FFT_SIZE))
    power = (np.abs(spec) ** 2).sum(axis=1)  # [out, F, F]
    f = np.fft.fftfreq(FFT_SIZE)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    return power, np.arctan2(fy, fx), np.hypot(fx, fy)


def orientation_selectivity(kernel: np.ndarray) -> np.ndarray:
    """Orientation selectivity [out_channels] of each filter of `kernel` [k, k, in, out]."""
    power, theta, _ = filter_spectra(kernel)
    total = power.sum(axis=(1, 2))
    vector = np.abs((power * np.exp(2j * theta)[None]).sum(axis=(1, 2)))
    return np.where(total > 0, vector / np.maximum(total, 1e-30), 0.0)


def preferred_frequency(kernel: np.ndarray) -> np.ndarray:
    """Spatial frequency (cycles / pixel) at each filter's spectral peak [out_channels]."""
    power, _, radius = filter_spectra(kernel)
    flat = power.reshape(power.shape[0], -1)
    return radius.ravel()[flat.argmax(axis=1)]


def summary(kernel: np.ndarray) -> dict[str, float]:
    """Mean orientation selectivity and the spread of preferred frequencies of a conv1 kernel."""
    osi = orientation_selectivity(kernel)
    freq = preferred_frequency(kernel)
    return {
        "orientation_selectivity": float(osi.mean()),
        "orientation_selectivity_sd": float(osi.std()),
        "distinct_frequencies": int(np.unique(np.round(freq, 3)).size),
        "frequency_sd": float(freq.std()),
    }
