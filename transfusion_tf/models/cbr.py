"""The paper's CBR family (SPEC M2): stacks of conv -> BatchNorm -> ReLU with 3x3/2 max pools.

Raghu et al. 2019, appendix: stride-1 'same' convolutions, a 3x3 max pool with stride 2 after
the convs listed in `pool_after`, global average pooling and a dense output (added by the
registry as the "head"). Layers of conv i (1-based) are named `conv{i}_conv`, `conv{i}_bn`,
`conv{i}_relu` and `conv{i}_pool`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras


@dataclasses.dataclass(frozen=True)
class CBRSpec:
    """One CBR variant: kernel size, widths per conv, and which convs (1-based) a pool follows.

    `pool_after=None` means a pool after every conv.
    """

    kernel_size: int
    widths: tuple[int, ...]
    pool_after: tuple[int, ...] | None = None

    def pools(self, num_convs: int) -> tuple[int, ...]:
        if self.pool_after is None:
            return tuple(range(1, num_convs + 1))
        return tuple(i for i in self.pool_after if i <= num_convs)


CBR_SPECS: dict[str, CBRSpec] = {
    "cbr_large_tall": CBRSpec(7, (32, 64, 128, 256, 512), (1, 2, 3, 4)),
    "cbr_large_wide": CBRSpec(7, (64, 128, 256, 512)),
    "cbr_small": CBRSpec(7, (32, 64, 128, 256)),
    "cbr_tiny": CBRSpec(5, (32, 64, 128, 256)),
}

# Table 1 of the paper counts conv kernels of every conv but the first plus a bias-free dense
# layer with this many outputs (PAPER.md derives it; it reproduces all four published counts).
PAPER_NUM_OUTPUTS = 5


def resolve_widths(name: str, widths: Sequence[int] | None) -> tuple[int, ...]:
    """The widths of CBR model `name`, or the override `widths` after validation."""
    spec = CBR_SPECS[name]
    if widths is None:
        return spec.widths
    out = tuple(int(w) for w in widths)
    if not out or any(w <= 0 for w in out):
        raise ValueError(f"widths={list(widths)} for {name}: give one or more positive widths")
    return out


def cbr_backbone(
    name: str, *, image_size: int, channels: int, widths: Sequence[int] | None = None
) -> keras.Model:
    """Builds CBR model `name` without its head: [B, S, S, C] -> [B, S', S', widths[-1]]."""
    spec = CBR_SPECS[name]
    widths = resolve_widths(name, widths)
    pools = spec.pools(len(widths))
    inputs = keras.Input((image_size, image_size, channels), name="image")
    x = inputs
    for i, width in enumerate(widths, start=1):
        # The conv bias is redundant before BatchNorm; the paper's counts have none either.
        x = keras.layers.Conv2D(
            width, spec.kernel_size, padding="same", use_bias=False, name=f"conv{i}_conv"
        )(x)
        x = keras.layers.BatchNormalization(name=f"conv{i}_bn")(x)
        x = keras.layers.Activation("relu", name=f"conv{i}_relu")(x)
        if i in pools:
            x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=f"conv{i}_pool")(x)
    return keras.Model(inputs, x, name=name)


def paper_param_count(name: str, model: keras.Model | None = None) -> int:
    """Table 1's parameter count of CBR model `name`, computed from our build.

    Sums the conv kernels of every conv layer but the first and adds a bias-free dense layer
    with `PAPER_NUM_OUTPUTS` outputs on the last conv's width (the counting that reproduces the
    paper's 8,532,480 / 8,432,128 / 2,108,672 / 1,076,480).
    """
    if name not in CBR_SPECS:
        raise ValueError(f"the paper gives no parameter count for {name!r}")
    if model is None:
        model = cbr_backbone(name, image_size=32, channels=3)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    total = sum(int(layer.kernel.numpy().size) for layer in convs[1:])
    return total + int(convs[-1].filters) * PAPER_NUM_OUTPUTS
