"""Init strategies on CBR models: every cut point, workdir / .keras / stats sources, Gabor,
BN policies, gray inputs, the report, and one test per bad source or setting."""

import hashlib
import json
import math
import os

import numpy as np
import pytest

from transfusion_tf import config, models
from transfusion_tf.init import (
    INITS,
    InitError,
    SourceError,
    initialize,
    input_channels,
    load_stats_file,
)
from transfusion_tf.init import gabor as gabor_lib
from transfusion_tf.init import stats as stats_lib

NAME = "cbr_small"


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _perturbed_cbr(*, widths=None, seed=3, num_tasks=3):
    model = models.build_model(NAME, num_tasks=num_tasks, image_size=32, widths=widths)
    rng = np.random.default_rng(seed)
    for var in model.weights:
        value = rng.normal(rng.uniform(-0.2, 0.2), rng.uniform(0.05, 0.2), tuple(var.shape))
        if var.name == "moving_variance":
            value = np.abs(value) + 0.5
        var.assign(value.astype(np.float32))
    return model


def _write_workdir(root, model, *, widths=None, num_tasks=3):
    run = config.RunConfig(
        model=config.ModelConfig(name=NAME, num_tasks=num_tasks, image_size=32, widths=widths)
    )
    os.makedirs(root / "weights", exist_ok=True)
    (root / "config.json").write_text(run.to_json())
    model.save_weights(str(root / "weights" / "final.weights.h5"))
    return str(root)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A trained-looking cbr_small saved as a workdir, a .keras model and a stats file."""
    root = tmp_path_factory.mktemp("cbr_source")
    model = _perturbed_cbr()
    workdir = _write_workdir(root / "run", model)
    keras_path = str(root / "source.keras")
    model.save(keras_path)
    stats_path = str(root / "stats.json")
    stats_lib.write_stats(
        stats_lib.compute_stats(model_name=NAME, source_weights=workdir), stats_path
    )
    values = {v.path: v.numpy() for v in model.weights}
    return {"workdir": workdir, "keras": keras_path, "stats": stats_path, "values": values}


def _init(init, *, channels=3, widths=None):
    model = models.build_model(NAME, num_tasks=2, image_size=32, channels=channels, widths=widths)
    return model, initialize(model, model_name=NAME, init=init)


def test_every_strategy_is_registered_and_accounts_for_every_variable(source):
    assert INITS.names() == ["gabor", "imagenet", "meanvar", "random", "transfusion"]
    settings = {"source_weights": source["workdir"], "transfuse_upto": "conv2"}
    for name in INITS.names():
        model, report = _init(config.InitConfig(name=name, **settings))
        assert sorted(r["variable"] for r in report.rows) == sorted(v.path for v in model.weights)
        assert {r["how"] for r in report.rows if r["layer"] == "head"} == {"new_head"}
        assert report.to_dict()["counts"] == report.counts()
        assert name in report.summary()


@pytest.mark.parametrize("upto", ["1", "2", "3", "4", "conv1", "conv3"])
def test_transfusion_every_cut_point(source, upto):
    model, report = _init(
        config.InitConfig(name="transfusion", source_weights=source["workdir"], transfuse_upto=upto)
    )
    cut = int(upto[-1])
    rows = report.by_variable()
    for index, unit in enumerate(models.model_units(model, NAME), start=1):
        for layer_name in unit.layers:
            for var in model.get_layer(layer_name).weights:
                same = np.array_equal(var.numpy(), source["values"][var.path])
                assert same == (index <= cut), var.path
                assert rows[var.path]["how"] == ("copied" if index <= cut else "random")
    assert not np.array_equal(
        model.get_layer("head").kernel.numpy(), source["values"]["head/kernel"]
    )


def test_transfusion_with_meanvar_upper_units(source):
    init = config.InitConfig(
        name="transfusion",
        source_weights=source["workdir"],
        transfuse_upto="conv2",
        upper_init="meanvar",
    )
    _, report = _init(init)
    how = {r["variable"]: r["how"] for r in report.rows}
    assert how["conv2_conv/kernel"] == "copied"
    assert how["conv3_conv/kernel"] == "meanvar"
    assert how["conv3_bn/gamma"] == "bn_identity"
    assert report.settings["upper_init"] == "meanvar"


def test_sources_in_every_format_give_the_same_tensors(source):
    for spec in (source["workdir"], source["keras"]):
        model, report = _init(config.InitConfig(name="imagenet", source_weights=spec))
        for var in model.weights:
            if not var.path.startswith("head/"):
                np.testing.assert_array_equal(var.numpy(), source["values"][var.path])
        path = report.source_file
        assert report.source_sha256 == _sha256(path)


@pytest.mark.parametrize("policy", ["identity", "meanvar", "transfer"])
def test_meanvar_batchnorm_policies(source, policy):
    model, report = _init(
        config.InitConfig(name="meanvar", source_weights=source["workdir"], bn_policy=policy)
    )
    values = source["values"]
    gamma = model.get_layer("conv4_bn").gamma.numpy()
    moving_var = model.get_layer("conv4_bn").moving_variance.numpy()
    how = report.by_variable()["conv4_bn/gamma"]["how"]
    if policy == "identity":
        assert how == "bn_identity" and np.all(gamma == 1) and np.all(moving_var == 1)
    elif policy == "transfer":
        assert how == "copied"
        np.testing.assert_array_equal(gamma, values["conv4_bn/gamma"])
    else:
        src = values["conv4_bn/gamma"]
        assert how == "meanvar" and not np.array_equal(gamma, src)
        assert abs(gamma.mean() - src.mean()) < 6 * src.std() / math.sqrt(src.size)
        assert np.all(moving_var > 0)
    kernel = model.get_layer("conv3_conv").kernel.numpy().ravel()
    src = values["conv3_conv/kernel"].ravel()
    assert abs(kernel.mean() - src.mean()) < 6 * src.std() / math.sqrt(src.size)
    assert abs(kernel.var() / src.var() - 1) < 6 * math.sqrt(2 / src.size)
    assert abs(np.corrcoef(kernel, src)[0, 1]) < 6 / math.sqrt(src.size)


def test_meanvar_runs_from_the_stats_file_alone(source):
    stats = load_stats_file(source["stats"])
    assert stats.layers["conv2_conv"][0].shape == (7, 7, 32, 64)
    assert os.path.getsize(source["stats"]) < 20_000
    model, report = _init(config.InitConfig(name="meanvar", stats_file=source["stats"]))
    digest = _sha256(source["stats"])
    row = report.by_variable()["conv2_conv/kernel"]
    assert row["how"] == "meanvar" and row["source_sha256"] == digest
    assert row["source_file"] == source["stats"]
    kernel = model.get_layer("conv2_conv").kernel.numpy()
    src = source["values"]["conv2_conv/kernel"]
    assert abs(kernel.mean() - src.mean()) < 6 * src.std() / math.sqrt(src.size)
    with pytest.raises(InitError, match="needs --source_weights"):
        _init(config.InitConfig(name="meanvar", stats_file=source["stats"], bn_policy="transfer"))


def test_random_init_is_seeded_and_uses_keras_defaults(source):
    a, report = _init(config.InitConfig(name="random", seed=1))
    b, _ = _init(config.InitConfig(name="random", seed=1))
    c, _ = _init(config.InitConfig(name="random", seed=2))
    for va, vb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    kernel = a.get_layer("conv2_conv").kernel.numpy()
    assert not np.array_equal(kernel, c.get_layer("conv2_conv").kernel.numpy())
    limit = math.sqrt(6 / (49 * 32 + 49 * 64))  # glorot_uniform
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
    assert np.all(a.get_layer("conv2_bn").gamma.numpy() == 1)
    assert set(report.counts()) == {"random", "new_head"}
    he, _ = _init(config.InitConfig(name="random", random_initializer="he_normal"))
    std = he.get_layer("conv3_conv").kernel.numpy().std()
    assert abs(std / math.sqrt(2 / (49 * 64)) - 1) < 0.1  # truncated normal, He scale


def _orientation_energy(filt, theta, *, size=64):
    """Fraction of spectral power within +-22.5 degrees of the carrier direction `theta`."""
    power = np.abs(np.fft.fftshift(np.fft.fft2(filt - filt.mean(), s=(size, size)))) ** 2
    freq = np.fft.fftshift(np.fft.fftfreq(size))
    fy, fx = np.meshgrid(freq, freq, indexing="ij")
    angle = np.arctan2(fy, fx)
    diff = np.abs((angle - theta + np.pi / 2) % np.pi - np.pi / 2)
    peak = np.unravel_index(np.argmax(power), power.shape)
    peak_freq = math.hypot(fx[peak], fy[peak])
    return power[diff < np.pi / 8].sum() / power.sum(), peak_freq


def test_gabor_bank_filters_are_oriented_and_band_limited():
    bank, params = gabor_lib.gabor_bank(kernel_size=7, in_channels=3, out_channels=64)
    assert bank.shape == (7, 7, 3, 64) and len(params) == 64
    assert len({p.theta for p in params}) == 8 and len({p.wavelength for p in params}) == 4
    for i, p in enumerate(params):
        np.testing.assert_array_equal(bank[:, :, 0, i], bank[:, :, 2, i])
        fraction, peak_freq = _orientation_energy(bank[:, :, 0, i], p.theta)
        assert fraction > 0.5, (i, p, fraction)
        assert abs(peak_freq - 1 / p.wavelength) < 0.5 / p.wavelength, (i, p, peak_freq)


def test_gabor_init_scales_to_he_or_to_the_source(source):
    model, report = _init(config.InitConfig(name="gabor"))
    kernel = model.get_layer("conv1_conv").kernel.numpy()
    assert report.by_variable()["conv1_conv/kernel"]["how"] == "gabor"
    assert abs(kernel.std() - math.sqrt(2 / (49 * 3))) < 1e-5 and abs(kernel.mean()) < 1e-6
    bank, _ = gabor_lib.gabor_bank(kernel_size=7, in_channels=3, out_channels=32)
    assert np.corrcoef(kernel.ravel(), bank.ravel())[0, 1] > 0.9999
    assert report.by_variable()["conv2_conv/kernel"]["how"] == "random"
    src = source["values"]["conv1_conv/kernel"]
    for settings in ({"source_weights": source["workdir"]}, {"stats_file": source["stats"]}):
        model, report = _init(config.InitConfig(name="gabor", **settings))
        kernel = model.get_layer("conv1_conv").kernel.numpy()
        assert abs(kernel.mean() - src.mean()) < 1e-5 and abs(kernel.std() - src.std()) < 1e-5
        assert report.by_variable()["conv1_conv/kernel"]["source_tensor"] == "conv1_conv/kernel"


def test_gray_inputs_sum_or_repeat(source):
    init = config.InitConfig(name="imagenet", source_weights=source["workdir"], gray_policy="sum")
    model, report = _init(init, channels=1)
    np.testing.assert_allclose(
        model.get_layer("conv1_conv").kernel.numpy(),
        source["values"]["conv1_conv/kernel"].sum(axis=2, keepdims=True),
        rtol=1e-6,
    )
    assert report.by_variable()["conv1_conv/kernel"]["how"] == "copied_gray_sum"
    _, report = _init(init.replace(name="meanvar"), channels=1)
    assert report.by_variable()["conv1_conv/kernel"]["how"] == "meanvar"
    with pytest.raises(
        InitError, match=r"\(7, 7, 1, 32\).*\(7, 7, 3, 32\).*build the model with channels=3"
    ):
        _init(init.replace(gray_policy="repeat"), channels=1)
    assert input_channels(data_channels=1, init=init.replace(gray_policy="repeat")) == 3
    assert input_channels(data_channels=1, init=init) == 1
    assert input_channels(data_channels=1, init=config.InitConfig(name="random")) == 1


def test_report_writes_json(source, tmp_path):
    _, report = _init(
        config.InitConfig(name="transfusion", source_weights=source["workdir"], transfuse_upto=1)
    )
    path = tmp_path / "sub" / "init_report.json"
    report.write(str(path))
    data = json.loads(path.read_text())
    assert data["strategy"] == "transfusion" and data["source_sha256"] == report.source_sha256
    assert len(data["rows"]) == len(report.rows)
    assert set(data["rows"][0]) == {
        "variable",
        "layer",
        "unit",
        "how",
        "source_tensor",
        "source_file",
        "source_sha256",
    }


def test_bad_sources_fail_clearly(source, tmp_path):
    missing = str(tmp_path / "nope.h5")
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        _init(config.InitConfig(name="imagenet", source_weights=missing))
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an hdf5 file")
    with pytest.raises(SourceError, match="garbage.h5"):
        _init(config.InitConfig(name="imagenet", source_weights=str(garbage)))
    text = tmp_path / "weights.txt"
    text.write_text("x")
    with pytest.raises(SourceError, match="unsupported format"):
        _init(config.InitConfig(name="imagenet", source_weights=str(text)))
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        _init(config.InitConfig(name="imagenet", source_weights=str(empty)))
    with pytest.raises(SourceError, match="no ImageNet weights for 'cbr_small'"):
        _init(config.InitConfig(name="imagenet"))
    bad_stats = tmp_path / "stats.json"
    bad_stats.write_text("{not json")
    with pytest.raises(SourceError, match="stats.json"):
        _init(config.InitConfig(name="meanvar", stats_file=str(bad_stats)))


def test_wrong_architecture_and_shapes_fail_clearly(source, tmp_path):
    tiny = models.build_model("cbr_tiny", num_tasks=2, image_size=32)
    weights = str(tmp_path / "small.weights.h5")
    models.build_model(NAME, num_tasks=2, image_size=32).save_weights(weights)
    with pytest.raises(SourceError, match="do not fit model 'cbr_tiny'"):
        initialize(
            tiny,
            model_name="cbr_tiny",
            init=config.InitConfig(name="imagenet", source_weights=weights),
        )
    narrow = _write_workdir(
        tmp_path / "narrow", _perturbed_cbr(widths=(8, 16, 32, 64)), widths=(8, 16, 32, 64)
    )
    with pytest.raises(InitError, match=r"conv1_conv.*\(7, 7, 3, 32\).*\(7, 7, 3, 8\)"):
        _init(config.InitConfig(name="imagenet", source_weights=narrow))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"name": "xavier"}, "unknown init 'xavier'"),
        ({"name": "meanvar", "bn_policy": "zero"}, "bn_policy='zero'"),
        ({"name": "meanvar", "gray_policy": "mean"}, "gray_policy='mean'"),
        ({"name": "transfusion", "upper_init": "gabor"}, "upper_init='gabor'"),
        ({"name": "transfusion"}, "needs transfuse_upto"),
        ({"name": "transfusion", "transfuse_upto": "block2"}, "not a unit of model 'cbr_small'"),
        ({"name": "transfusion", "transfuse_upto": "9"}, "has 4 units"),
        ({"name": "random", "random_initializer": "bogus"}, "random_initializer='bogus'"),
    ],
)
def test_bad_settings_fail_clearly(source, settings, message):
    init = config.InitConfig(source_weights=source["workdir"]).replace(**settings)
    with pytest.raises(InitError, match=message):
        _init(init)
