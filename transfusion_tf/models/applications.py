"""keras.applications backbones (SPEC M1) with deterministic layer names and their ImageNet files.

Backbones are built with `include_top=False, weights=None`; ImageNet weights are applied later by
`transfusion_tf.init` so that every source (Keras' ImageNet file or a local file) goes through one
code path. ResNet50 and DenseNet121 name every layer explicitly; Inception-v3 relies on Keras
auto-names (`conv2d_7`, ...), so every backbone is built under `fresh_layer_names()`, which makes
the names identical to those of a fresh process no matter what was built before.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from collections.abc import Callable, Iterator

import keras
from keras.src.backend.common import global_state

_UIDS_KEY = "object_name_uids"


@contextlib.contextmanager
def fresh_layer_names() -> Iterator[None]:
    """Runs a block with Keras' auto-name counters reset, restoring them afterwards.

    Layer names only need to be unique inside one model, so a model built in this block gets
    the same auto-names (`conv2d`, `conv2d_1`, ...) in every process.
    """
    saved = global_state.get_global_attribute(_UIDS_KEY)
    global_state.set_global_attribute(_UIDS_KEY, collections.defaultdict(int))
    try:
        yield
    finally:
        global_state.set_global_attribute(
            _UIDS_KEY, saved if saved is not None else collections.defaultdict(int)
        )


@dataclasses.dataclass(frozen=True)
class ImagenetFile:
    """Where Keras downloads the no-top ImageNet weights of one backbone (legacy HDF5)."""

    fname: str
    url: str
    md5: str


_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"

IMAGENET_FILES: dict[str, ImagenetFile] = {
    "resnet50": ImagenetFile(
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _BASE + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "4d473c1dd8becc155b73f8504c6f6626",
    ),
    "inception_v3": ImagenetFile(
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _BASE + "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "bcbd6486424b2319ff4ef7d526e38f63",
    ),
    "densenet121": ImagenetFile(
        "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _BASE + "densenet/densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "30ee3e1110167f948a6b9946edeeb738",
    ),
}

_APPLICATIONS: dict[str, Callable[..., keras.Model]] = {
    "resnet50": keras.applications.ResNet50,
    "inception_v3": keras.applications.InceptionV3,
    "densenet121": keras.applications.DenseNet121,
}

# Smallest input side each architecture accepts without `include_top`.
MIN_IMAGE_SIZE = {"resnet50": 32, "inception_v3": 75, "densenet121": 32}


def imagenet_weights_path(arch: str) -> str:
    """Local path of the ImageNet no-top file of `arch`, downloaded once into Keras' cache.

    Uses `keras.utils.get_file` with the official URL and MD5 (cached under
    `$KERAS_HOME/models`), as keras.applications itself does.
    """
    if arch not in IMAGENET_FILES:
        raise ValueError(
            f"no ImageNet weights for architecture {arch!r}; "
            f"available: {', '.join(sorted(IMAGENET_FILES))}"
        )
    info = IMAGENET_FILES[arch]
    return keras.utils.get_file(info.fname, info.url, cache_subdir="models", file_hash=info.md5)


def application_backbone(arch: str, *, image_size: int, channels: int = 3) -> keras.Model:
    """keras.applications `arch` without top and weights: [B, S, S, C] -> feature map.

    The input layer is named "image"; every other name equals keras.applications' own.
    """
    if arch not in _APPLICATIONS:
        raise ValueError(f"unknown keras.applications backbone {arch!r}")
    if image_size < MIN_IMAGE_SIZE[arch]:
        raise ValueError(
            f"image_size={image_size} is too small for {arch}; "
            f"the smallest it accepts is {MIN_IMAGE_SIZE[arch]}"
        )
    if channels not in (1, 3):
        raise ValueError(f"channels={channels}: {arch} takes 1 or 3 input channels")
    with fresh_layer_names():
        inputs = keras.Input((image_size, image_size, channels), name="image")
        app = _APPLICATIONS[arch](include_top=False, weights=None, input_tensor=inputs)
        # keras.applications wraps an `input_tensor` in a list; a single-input model is wanted.
        return keras.Model(inputs, app.output, name=arch)
