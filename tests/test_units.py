"""Unit maps: splitting a model into units, naming a cut point, and the error cases."""

import keras
import pytest

from transfusion_tf import models
from transfusion_tf.models.units import (
    Unit,
    resolve_unit_index,
    split_into_units,
    unit_of_layer,
)


@pytest.fixture(scope="module")
def cbr():
    return models.build_model("cbr_tiny", num_tasks=2, image_size=32, widths=(4, 8, 8))


def test_cbr_units_own_conv_and_bn(cbr):
    units = models.model_units(cbr, "cbr_tiny")
    assert units == [
        Unit("conv1", ("conv1_conv", "conv1_bn"), "conv1_pool"),
        Unit("conv2", ("conv2_conv", "conv2_bn"), "conv2_pool"),
        Unit("conv3", ("conv3_conv", "conv3_bn"), "conv3_pool"),
    ]
    assert unit_of_layer(units)["conv2_bn"] == "conv2"
    assert units[0].to_dict()["output_layer"] == "conv1_pool"
    tall = models.get_units("cbr_large_tall", widths=(4, 4, 4, 4, 4))
    assert tall[-1].output_layer == "conv5_relu"  # no pool after the last conv


def test_resolve_unit_index_by_name_or_count(cbr):
    units = models.model_units(cbr, "cbr_tiny")
    assert resolve_unit_index(units, "conv2", model_name="cbr_tiny") == 1
    assert resolve_unit_index(units, 3, model_name="cbr_tiny") == 2
    assert resolve_unit_index(units, " 1 ", model_name="cbr_tiny") == 0
    with pytest.raises(ValueError, match="choose one of: conv1, conv2, conv3"):
        resolve_unit_index(units, "block1", model_name="cbr_tiny")
    with pytest.raises(ValueError, match="has 3 units"):
        resolve_unit_index(units, 0, model_name="cbr_tiny")


def test_split_rejects_missing_or_misordered_outputs(cbr):
    with pytest.raises(ValueError, match="not in the model"):
        split_into_units(cbr, [("a", "conv9_pool")], model_name="cbr_tiny")
    with pytest.raises(ValueError, match="not in topological order"):
        split_into_units(cbr, [("a", "conv2_pool"), ("b", "conv1_pool")], model_name="cbr_tiny")
    with pytest.raises(ValueError, match="comes after the last unit output"):
        split_into_units(cbr, [("a", "conv1_pool")], model_name="cbr_tiny")


def test_layers_with_weights_after_a_unit_boundary_are_assigned_to_the_next_unit():
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(2, 3, name="a_conv")(inputs)
    x = keras.layers.Activation("relu", name="a_out")(x)
    x = keras.layers.Conv2D(2, 3, name="b_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(x))
    units = split_into_units(model, [("a", "a_out"), ("b", "b_conv")], model_name="toy")
    assert [u.layers for u in units] == [("a_conv",), ("b_conv",)]
