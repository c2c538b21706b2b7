"""Tests of the model registry: pinned counts, paper counts, names, heads, bad arguments."""

import keras
import numpy as np
import pytest

from transfusion_tf import models
from transfusion_tf.models import cbr, registry

NUM_TASKS = 5

# count_params() of build_model(name, num_tasks=5, channels=3); independent of the input size.
PINNED_PARAM_COUNTS = {
    "cbr_large_tall": 8_541_157,
    "cbr_large_wide": 8_445_381,
    "cbr_small": 2_115_301,
    "cbr_tiny": 1_080_805,
    "densenet121": 7_042_629,
    "inception_v3": 21_813_029,
    "resnet50": 23_597_957,
    "resnet50_slim": 7_187_845,
}

PAPER_COUNTS = {
    "cbr_large_tall": 8_532_480,
    "cbr_large_wide": 8_432_128,
    "cbr_small": 2_108_672,
    "cbr_tiny": 1_076_480,
}


@pytest.fixture(scope="module")
def built():
    """Every registered model, built once at its smallest input size."""
    return {
        name: models.build_model(
            name, num_tasks=NUM_TASKS, image_size=max(32, models.min_image_size(name))
        )
        for name in models.MODELS.names()
    }


def test_every_registered_model_has_a_pinned_count(built):
    assert set(PINNED_PARAM_COUNTS) == set(models.MODELS.names())
    for name, model in built.items():
        assert model.count_params() == PINNED_PARAM_COUNTS[name], name


def test_paper_param_counts_reproduce_table_1():
    for name in models.MODELS.names():
        assert models.paper_param_count(name) == PAPER_COUNTS.get(name), name


def test_cbr_layout_matches_the_paper(built):
    for name, spec in cbr.CBR_SPECS.items():
        model = built[name]
        convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
        assert [c.filters for c in convs] == list(spec.widths)
        assert all(c.kernel_size == (spec.kernel_size,) * 2 for c in convs)
        assert all(c.strides == (1, 1) and c.padding == "same" for c in convs)
        pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
        assert all(p.pool_size == (3, 3) and p.strides == (2, 2) for p in pools)
        expected_pools = 4 if name == "cbr_large_tall" else len(spec.widths)
        assert len(pools) == expected_pools
        kinds = [type(layer).__name__ for layer in model.layers[1:4]]
        assert kinds == ["Conv2D", "BatchNormalization", "Activation"]


def test_head_is_gap_then_float32_dense(built):
    for name, model in built.items():
        assert model.layers[-2].name == "head_pool", name
        assert isinstance(model.layers[-2], keras.layers.GlobalAveragePooling2D)
        assert model.layers[-1].name == "head"
        assert model.layers[-1].units == NUM_TASKS
        assert model.output.shape == (None, NUM_TASKS)
        size = max(32, models.min_image_size(name))
        assert tuple(model.input.shape) == (None, size, size, 3)
        assert registry.probe_image_size(name) == size  # the size sources and unit maps use


def test_units_partition_weighted_layers_in_order(built):
    for name, model in built.items():
        units = models.model_units(model, name)
        owned = [layer for unit in units for layer in unit.layers]
        weighted = [layer.name for layer in model.layers if layer.weights]
        assert owned == [n for n in weighted if n not in models.HEAD_LAYERS], name
        layer_names = [layer.name for layer in model.layers]
        outputs = [layer_names.index(unit.output_layer) for unit in units]
        assert outputs == sorted(outputs), name
        if name in cbr.CBR_SPECS:
            assert units == models.get_units(name)


def test_unit_names_follow_the_paper(built):
    def names(name):
        return [u.name for u in models.model_units(built[name], name)]

    assert names("resnet50") == [
        "conv1",
        "block1",
        "block2",
        "block3",
        "block4",
    ]
    assert names("inception_v3") == [
        "stem",
        "block1",
        "block2",
        "block3",
    ]
    assert names("densenet121") == ["conv1", "block1", "block2", "block3", "block4"]
    assert [u.name for u in models.get_units("cbr_large_tall")] == [f"conv{i}" for i in range(1, 6)]
    assert [u.name for u in models.get_units("cbr_tiny", widths=(8, 16))] == ["conv1", "conv2"]


def test_resnet50_names_equal_keras_applications_and_one_channel_works(built):
    ours = models.build_model("resnet50", num_tasks=2, image_size=32, channels=1)
    reference = keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    ours_weighted = [(x.name, [tuple(w.shape) for w in x.weights]) for x in ours.layers[1:-2]]
    ref_weighted = [(x.name, [tuple(w.shape) for w in x.weights]) for x in reference.layers[1:]]
    assert [n for n, _ in ours_weighted] == [n for n, _ in ref_weighted]
    assert ours.get_layer("conv1_conv").kernel.shape == (7, 7, 1, 64)
    assert ours_weighted[2:] == ref_weighted[2:]  # only conv1's kernel differs (1 channel)

    slim = built["resnet50_slim"]
    lower = {u.name: u.layers for u in models.model_units(slim, "resnet50_slim")}
    for unit in ("conv1", "block1", "block2"):
        for layer_name in lower[unit]:
            got = [tuple(w.shape) for w in slim.get_layer(layer_name).weights]
            want = [tuple(w.shape) for w in reference.get_layer(layer_name).weights]
            assert got == want, layer_name
    assert slim.get_layer("conv5_block3_3_conv").filters == 1024  # 2048 * 0.5


def test_auto_named_layers_do_not_depend_on_what_was_built_before(built):
    keras.layers.Conv2D(3, 3)  # bump Keras' auto-name counters
    keras.layers.BatchNormalization()
    again = models.build_model("inception_v3", num_tasks=NUM_TASKS, image_size=75)
    assert [x.name for x in again.layers] == [x.name for x in built["inception_v3"].layers]
    assert [w.path for w in again.weights] == [w.path for w in built["inception_v3"].weights]


def test_forward_pass_and_mixed_precision_head():
    model = models.build_model("cbr_tiny", num_tasks=3, image_size=32, widths=(4, 8))
    out = model(np.zeros((2, 32, 32, 3), np.float32))
    assert out.shape == (2, 3)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = models.build_model("cbr_tiny", num_tasks=3, image_size=32, widths=(4, 8))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert mixed.get_layer("conv1_conv").compute_dtype == "float16"
    assert mixed(np.zeros((1, 32, 32, 3), np.float32)).dtype == "float32"


def test_default_preprocess_modes():
    assert models.default_preprocess_mode("resnet50") == "caffe"
    assert models.default_preprocess_mode("resnet50_slim") == "caffe"
    assert models.default_preprocess_mode("inception_v3") == "tf"
    assert models.default_preprocess_mode("densenet121") == "torch"
    assert models.default_preprocess_mode("cbr_small") == "unit"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "vgg16"}, "unknown model 'vgg16'"),
        ({"name": "resnet50", "widths": (8,)}, "only the CBR models take widths"),
        ({"name": "inception_v3", "image_size": 64}, "too small for inception_v3"),
        ({"name": "cbr_tiny", "widths": (8, 0)}, "positive widths"),
        ({"name": "cbr_tiny", "num_tasks": 0}, "num_tasks=0"),
        ({"name": "resnet50", "channels": 2}, "1 or 3 input channels"),
        ({"name": "resnet50_slim", "width_multiplier": 0.0}, "width_multiplier=0.0"),
    ],
)
def test_bad_arguments_fail_clearly(kwargs, message):
    args = {"num_tasks": 1, "image_size": 32, **kwargs}
    name = args.pop("name")
    with pytest.raises(ValueError, match=message):
        models.build_model(name, **args)
