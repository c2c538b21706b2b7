"""Init strategies on ResNet50 at 32 px with locally written sources in both HDF5 formats.

The sources are keras.applications ResNet50 (no top) weights set to non-default values, saved as
a legacy HDF5 file laid out like Keras' ImageNet files (one group per layer with `layer_names` /
`weight_names` attributes) and as a Keras 3 `.weights.h5`.
"""

import hashlib

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

from transfusion_tf import config, models
from transfusion_tf.init import initialize
from transfusion_tf.init.strategies import InitError
from transfusion_tf.models import applications


@pytest.fixture(scope="module")
def resnet_source(tmp_path_factory):
    """(legacy .h5 path, .weights.h5 path, {variable path: array}) of a perturbed ResNet50."""
    root = tmp_path_factory.mktemp("resnet_source")
    source = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    rng = np.random.default_rng(7)
    for var in source.weights:
        value = rng.normal(rng.uniform(-0.3, 0.3), rng.uniform(0.05, 0.3), tuple(var.shape))
        if var.name == "moving_variance":
            value = np.abs(value) + 0.1
        var.assign(value.astype(np.float32))
    legacy = str(root / "resnet50_notop_legacy.h5")
    with h5py.File(legacy, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    keras3 = str(root / "resnet50_notop.weights.h5")
    source.save_weights(keras3)
    values = {f"{layer.name}/{w.name}": w.numpy() for layer in source.layers for w in layer.weights}
    return legacy, keras3, values


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_legacy_source_has_the_imagenet_file_layout(resnet_source):
    legacy, _, _ = resnet_source
    with h5py.File(legacy, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        assert "conv1_conv" in names
        weight_names = list(f["conv1_conv"].attrs["weight_names"])
        assert [w.decode() if isinstance(w, bytes) else w for w in weight_names] == [
            "conv1_conv/kernel",
            "conv1_conv/bias",
        ]


def test_imagenet_files_are_keras_official_ones():
    from keras.src.applications import densenet, inception_v3, resnet

    info = applications.IMAGENET_FILES
    assert info["resnet50"].md5 == resnet.WEIGHTS_HASHES["resnet50"][1]
    assert info["resnet50"].url == resnet.BASE_WEIGHTS_PATH + info["resnet50"].fname
    assert info["inception_v3"].url == inception_v3.WEIGHTS_PATH_NO_TOP
    assert info["densenet121"].url == densenet.DENSENET121_WEIGHT_PATH_NO_TOP


@pytest.mark.parametrize("fmt", ["imagenet_legacy_h5", "keras3_weights_h5"])
def test_pretrained_transfer_copies_every_backbone_tensor(resnet_source, fmt, monkeypatch):
    legacy, keras3, values = resnet_source
    if fmt == "imagenet_legacy_h5":
        # The "imagenet" source resolves Keras' cached ImageNet file; point it at ours.
        monkeypatch.setattr(applications, "imagenet_weights_path", lambda arch: legacy)
        init, path = config.InitConfig(name="imagenet"), legacy
    else:
        init, path = config.InitConfig(name="imagenet", source_weights=keras3), keras3
    model = models.build_model("resnet50", num_tasks=3, image_size=32)
    report = initialize(model, model_name="resnet50", init=init)
    rows = report.by_variable()
    digest = _sha256(path)
    assert sorted(rows) == sorted(v.path for v in model.weights)
    for var in model.weights:
        if var.path.startswith("head/"):
            assert rows[var.path]["how"] == "new_head"
            assert rows[var.path]["source_tensor"] is None
        else:
            np.testing.assert_array_equal(var.numpy(), values[var.path], err_msg=var.path)
            assert rows[var.path]["how"] == "copied"
            assert rows[var.path]["source_tensor"] == var.path
            assert rows[var.path]["source_sha256"] == digest
    assert report.source_sha256 == digest
    assert np.abs(model.get_layer("head").kernel.numpy()).sum() > 0


def test_meanvar_matches_source_moments_without_copying(resnet_source):
    legacy, _, values = resnet_source
    model = models.build_model("resnet50", num_tasks=2, image_size=32)
    report = initialize(
        model, model_name="resnet50", init=config.InitConfig(name="meanvar", source_weights=legacy)
    )
    rows = report.by_variable()
    checked = 0
    for layer in model.layers:
        for var in layer.weights:
            how = rows[var.path]["how"]
            if isinstance(layer, keras.layers.BatchNormalization):
                assert how == "bn_identity"
                want = 1.0 if var.name in ("gamma", "moving_variance") else 0.0
                assert np.all(var.numpy() == want)
                continue
            if layer.name == "head":
                assert how == "new_head"
                continue
            assert how == "meanvar"
            got, src = var.numpy().astype(np.float64).ravel(), values[var.path].ravel()
            n = got.size
            if n < 1000:
                continue
            assert abs(got.mean() - src.mean()) < 6 * src.std() / np.sqrt(n), var.path
            assert abs(got.var() / src.var() - 1) < 6 * np.sqrt(2 / n), var.path
            assert abs(np.corrcoef(got, src)[0, 1]) < 6 / np.sqrt(n), var.path
            checked += 1
    assert checked > 50


@pytest.mark.parametrize(("upto", "copied_units"), [("block1", 2), ("4", 4)])
def test_transfusion_copies_exactly_the_units_up_to_the_cut(resnet_source, upto, copied_units):
    legacy, _, values = resnet_source
    model = models.build_model("resnet50", num_tasks=1, image_size=32)
    report = initialize(
        model,
        model_name="resnet50",
        init=config.InitConfig(name="transfusion", source_weights=legacy, transfuse_upto=upto),
    )
    units = models.model_units(model, "resnet50")
    rows = report.by_variable()
    for index, unit in enumerate(units):
        for layer_name in unit.layers:
            for var in model.get_layer(layer_name).weights:
                same = np.array_equal(var.numpy(), values[var.path])
                if index < copied_units:
                    assert same and rows[var.path]["how"] == "copied", var.path
                else:
                    assert not same and rows[var.path]["how"] == "random", var.path


def test_slim_takes_conv1_to_block2_from_resnet50(resnet_source):
    legacy, _, values = resnet_source
    lower = {"conv1", "block1", "block2"}
    init = config.InitConfig(name="transfusion", source_weights=legacy, transfuse_upto="block2")
    model = models.build_model("resnet50_slim", num_tasks=1, image_size=32)
    rows = initialize(model, model_name="resnet50_slim", init=init).by_variable()
    for unit in models.model_units(model, "resnet50_slim"):
        for layer_name in unit.layers:
            for var in model.get_layer(layer_name).weights:
                if unit.name in lower:
                    np.testing.assert_array_equal(var.numpy(), values[var.path])
                    assert rows[var.path]["how"] == "copied"
                else:
                    assert rows[var.path]["how"] == "random"
    with pytest.raises(InitError, match="up to unit block2 only"):
        initialize(
            model,
            model_name="resnet50_slim",
            init=config.InitConfig(name="transfusion", source_weights=legacy, transfuse_upto=4),
        )


@pytest.mark.slow
def test_inception_auto_named_layers_transfer_from_a_legacy_file(tmp_path):
    """Inception-v3 relies on Keras auto-names; the legacy (topological) file still maps 1:1."""
    keras.layers.Conv2D(1, 1)  # bump auto-name counters: names must not depend on it
    source = keras.applications.InceptionV3(
        include_top=False, weights=None, input_shape=(75, 75, 3)
    )
    rng = np.random.default_rng(1)
    for var in source.weights:
        var.assign(rng.uniform(0.5, 1.5, tuple(var.shape)).astype(np.float32))
    path = str(tmp_path / "inception_notop.h5")
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    ordered = [w.numpy() for layer in source.layers for w in layer.weights]
    model = models.build_model("inception_v3", num_tasks=1, image_size=75)
    report = initialize(
        model,
        model_name="inception_v3",
        init=config.InitConfig(name="imagenet", source_weights=path),
    )
    backbone = [w for layer in model.layers[:-2] for w in layer.weights]
    assert len(backbone) == len(ordered)
    for var, want in zip(backbone, ordered, strict=True):
        np.testing.assert_array_equal(var.numpy(), want, err_msg=var.path)
    assert report.counts() == {"copied": len(ordered), "new_head": 2}


@pytest.mark.slow
def test_densenet_transfers_from_both_weight_formats_and_transfuses_by_unit(tmp_path):
    """DenseNet121 (torch preprocessing, concatenating blocks) through the same code path."""
    source = keras.applications.DenseNet121(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    rng = np.random.default_rng(3)
    for var in source.weights:
        value = rng.uniform(0.5, 1.5, tuple(var.shape)).astype(np.float32)
        var.assign(value)
    legacy = str(tmp_path / "densenet121_notop.h5")
    with h5py.File(legacy, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    keras3 = str(tmp_path / "densenet121_notop.weights.h5")
    source.save_weights(keras3)
    values = {f"{layer.name}/{w.name}": w.numpy() for layer in source.layers for w in layer.weights}
    for path in (legacy, keras3):
        model = models.build_model("densenet121", num_tasks=1, image_size=32)
        report = initialize(
            model,
            model_name="densenet121",
            init=config.InitConfig(name="imagenet", source_weights=path),
        )
        assert report.counts() == {"copied": len(values), "new_head": 2}
        for var in model.weights:
            if var.path in values:
                np.testing.assert_array_equal(var.numpy(), values[var.path], err_msg=var.path)
    model = models.build_model("densenet121", num_tasks=1, image_size=32)
    report = initialize(
        model,
        model_name="densenet121",
        init=config.InitConfig(name="transfusion", source_weights=legacy, transfuse_upto=2),
    )
    units = models.model_units(model, "densenet121")
    rows = report.by_variable()
    for index, unit in enumerate(units):
        for layer_name in unit.layers:
            for var in model.get_layer(layer_name).weights:
                copied = rows[var.path]["how"] == "copied"
                assert copied == (index < 2), var.path
                assert np.array_equal(var.numpy(), values[var.path]) == copied, var.path
