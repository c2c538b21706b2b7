"""Conv filters tiled into one image (numpy only), for TensorBoard and the analysis figures.

Both `training.summaries` (the `filters/conv1` image of a run) and `analysis` (Fig. 5 of the
paper: conv1 filters at init and at the end) draw filters through `filter_grid`, so the two
pictures of a kernel are the same.
"""

from __future__ import annotations

import math

import numpy as np


def filter_grid(kernel: np.ndarray, *, max_filters: int = 64, scale: int = 4) -> np.ndarray:
    """Tiles conv filters into one image.

    Args:
      kernel: [kh, kw, in_channels, out_channels]; the first 3 input channels are shown as RGB
        (1 channel as gray), each filter min-max normalised to [0, 1].
      max_filters: at most this many filters are drawn.
      scale: nearest-neighbour upscaling so small kernels are visible.

    Returns:
      float32 [1, height, width, 3] in [0, 1].
    """
    kh, kw, cin, cout = kernel.shape
    k = kernel[:, :, :3, :max_filters]
    if cin == 1:
        k = np.repeat(k, 3, axis=2)
    elif cin == 2:
        k = np.concatenate([k, k[:, :, :1]], axis=2)
    n = k.shape[-1]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.ones((rows * (kh + 1) + 1, cols * (kw + 1) + 1, 3), np.float32)
    for i in range(n):
        f = k[..., i]
        lo, hi = f.min(), f.max()
        f = (f - lo) / (hi - lo) if hi > lo else np.full_like(f, 0.5)
        r, c = divmod(i, cols)
        grid[1 + r * (kh + 1) : 1 + r * (kh + 1) + kh, 1 + c * (kw + 1) : 1 + c * (kw + 1) + kw] = f
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    return grid[None]
