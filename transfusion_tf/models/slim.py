"""`resnet50_slim` (SPEC M3): ResNet50 with ImageNet-compatible lower units and a thin top.

conv1, block1 (conv2_x) and block2 (conv3_x) are layer-for-layer identical to
keras.applications.ResNet50 (same names, shapes and hyper-parameters, so they take its weights);
block3 (conv4_x) and block4 (conv5_x) keep the same layout and names with every width scaled by
`width_multiplier` (the paper's "slim" model: pretrained bottom, light random top).
"""

from __future__ import annotations

import keras

_BN_EPS = 1.001e-5


def _residual_block(x, filters: int, *, stride: int = 1, conv_shortcut: bool, name: str):
    """keras.applications' ResNet v1 bottleneck block with its layer names."""
    if conv_shortcut:
        shortcut = keras.layers.Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = keras.layers.BatchNormalization(axis=3, epsilon=_BN_EPS, name=f"{name}_0_bn")(
            shortcut
        )
    else:
        shortcut = x
    x = keras.layers.Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x)
    x = keras.layers.BatchNormalization(axis=3, epsilon=_BN_EPS, name=f"{name}_1_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_2_conv")(x)
    x = keras.layers.BatchNormalization(axis=3, epsilon=_BN_EPS, name=f"{name}_2_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = keras.layers.Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x)
    x = keras.layers.BatchNormalization(axis=3, epsilon=_BN_EPS, name=f"{name}_3_bn")(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def _stack(x, filters: int, blocks: int, *, stride1: int, name: str):
    x = _residual_block(x, filters, stride=stride1, conv_shortcut=True, name=f"{name}_block1")
    for i in range(2, blocks + 1):
        x = _residual_block(x, filters, conv_shortcut=False, name=f"{name}_block{i}")
    return x


def resnet50_slim_backbone(
    *, image_size: int, channels: int, width_multiplier: float = 0.5
) -> keras.Model:
    """Slim ResNet50 without head: [B, S, S, C] -> [B, S/32, S/32, 2048 * width_multiplier]."""
    if not 0 < width_multiplier <= 4:
        raise ValueError(f"width_multiplier={width_multiplier} must be in (0, 4]")
    if image_size < 32:
        raise ValueError(f"image_size={image_size} is too small for resnet50_slim (min 32)")
    inputs = keras.Input((image_size, image_size, channels), name="image")
    x = keras.layers.ZeroPadding2D(((3, 3), (3, 3)), name="conv1_pad")(inputs)
    x = keras.layers.Conv2D(64, 7, strides=2, name="conv1_conv")(x)
    x = keras.layers.BatchNormalization(axis=3, epsilon=_BN_EPS, name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(((1, 1), (1, 1)), name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    x = _stack(x, 64, 3, stride1=1, name="conv2")
    x = _stack(x, 128, 4, stride1=2, name="conv3")
    x = _stack(x, max(1, round(256 * width_multiplier)), 6, stride1=2, name="conv4")
    x = _stack(x, max(1, round(512 * width_multiplier)), 3, stride1=2, name="conv5")
    return keras.Model(inputs, x, name="resnet50_slim")
