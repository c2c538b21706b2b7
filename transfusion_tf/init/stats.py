"""Per-tensor statistics of source weights for Mean Var init without weights (SPEC I3).

`compute_stats` reads a source (ImageNet, a weights file, a `.keras` model or a workdir) for
an architecture and returns each tensor's mean, variance and shape; `write_stats` stores them
as a JSON file of a few kilobytes that `meanvar` (and `gabor`'s scaling) can use alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from transfusion_tf.init.sources import SourceStats, load_source_weights, write_stats

__all__ = ["compute_stats", "write_stats"]


def compute_stats(
    *,
    model_name: str,
    source_weights: str,
    channels: int = 3,
    widths: Sequence[int] | None = None,
    width_multiplier: float = 0.5,
) -> SourceStats:
    """Mean/var/shape of every tensor of `source_weights` as read for model `model_name`.

    Args:
      model_name: registered architecture whose source backbone reads the weights.
      source_weights: "imagenet", a weights file, a `.keras` model or a workdir.
      channels, widths, width_multiplier: the settings of files written from our own models.

    Returns:
      SourceStats by layer name (one TensorStat per tensor, in weight order).
    """
    tensors = load_source_weights(
        source_weights,
        model_name=model_name,
        channels=channels,
        widths=widths,
        width_multiplier=width_multiplier,
    )
    return tensors.stats()
