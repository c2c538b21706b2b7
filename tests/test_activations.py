"""Unit activations of workdirs (transfusion_tf.analysis.activations) and the weight analyses.

The workdirs here are made by hand the way the trainer lays them out (config.json and Keras
weights files of `models.build_model`), so these tests need no training.
"""

import json
import os

import numpy as np
import pytest

from transfusion_tf import config
from transfusion_tf import workdir as workdir_lib
from transfusion_tf.analysis import activations as act
from transfusion_tf.analysis import analyses, cca, cka
from transfusion_tf.analysis import runs as analysis_runs
from transfusion_tf.analysis.measures import MeasureOptions

IMAGE_SIZE = 32
WIDTHS = (8, 8, 16)


def tensorboard_summaries(output_dir):
    """{tag: plugin name} of the summaries under `<output_dir>/tensorboard`."""
    from tensorboard.backend.event_processing import event_accumulator

    events = event_accumulator.EventAccumulator(
        os.path.join(output_dir, "tensorboard"), size_guidance={"tensors": 0}
    )
    events.Reload()
    return {
        tag: events.SummaryMetadata(tag).plugin_data.plugin_name for tag in events.Tags()["tensors"]
    }


def make_workdir(root, name, *, init="random", seed=0, noise=0.05):
    """A workdir whose final weights are its init weights plus seeded Gaussian noise."""
    import keras

    from transfusion_tf.models import registry

    workdir = os.path.join(root, name)
    os.makedirs(os.path.join(workdir, "weights"))
    cfg = config.RunConfig(
        model=config.ModelConfig(
            name="cbr_tiny", num_tasks=1, image_size=IMAGE_SIZE, widths=WIDTHS
        ),
        init=config.InitConfig(name=init, seed=seed),
        train=config.TrainConfig(workdir=workdir, seed=seed),
    )
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(cfg.to_json())
    keras.utils.set_random_seed(seed)
    model = registry.build_model("cbr_tiny", num_tasks=1, image_size=IMAGE_SIZE, widths=WIDTHS)
    model.save_weights(os.path.join(workdir, "weights", "init.weights.h5"))
    rng = np.random.default_rng(seed)
    for v in model.trainable_weights:
        value = v.numpy()
        v.assign(value + noise * rng.standard_normal(value.shape).astype(value.dtype))
    model.save_weights(os.path.join(workdir, "weights", "final.weights.h5"))
    return workdir


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("activations"))
    return {
        "a": make_workdir(root, "a", seed=0),
        "b": make_workdir(root, "b", seed=1),
        "t": make_workdir(root, "t", init="imagenet", seed=2),
    }


def images(count=12, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.uniform(0, 1, size=(count, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    return [data[i : i + batch] for i in range(0, count, batch)]


def test_activation_spec_checks():
    with pytest.raises(ValueError, match="conv_policy='flatten'"):
        act.ActivationSpec(conv_policy="flatten")
    with pytest.raises(ValueError, match="num_examples=0"):
        act.ActivationSpec(num_examples=0)
    with pytest.raises(ValueError, match="max_positions=-1"):
        act.ActivationSpec(max_positions=-1)


def test_workdir_errors(tmp_path, workdirs):
    with pytest.raises(workdir_lib.WorkdirError, match=r"config\.json not found"):
        act.load_run(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(workdir_lib.WorkdirError, match="not a valid run config"):
        act.load_run(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model": {"depth": 3}}))
    with pytest.raises(workdir_lib.WorkdirError, match="not a valid run config"):
        act.load_run(str(tmp_path))
    with pytest.raises(workdir_lib.WorkdirError, match="has no best weights"):
        act.load_run(workdirs["a"], which="best")
    with pytest.raises(ValueError, match="weights='last'"):
        act.load_run(workdirs["a"], which="last")


def test_weights_of_another_model_are_a_clear_error(tmp_path, workdirs):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(workdirs["a"], other)
    cfg = config.RunConfig.from_json((other / "config.json").read_text())
    wider = cfg.replace(model=cfg.model.replace(widths=(8, 8, 32)))
    (other / "config.json").write_text(wider.to_json())
    with pytest.raises(workdir_lib.WorkdirError, match="cannot load into cbr_tiny"):
        act.load_run(str(other), which="final")


def test_position_indices_are_seeded_and_capped():
    keep = act.position_indices(seed=3, image_index=5, positions=100, cap=10)
    again = act.position_indices(seed=3, image_index=5, positions=100, cap=10)
    other = act.position_indices(seed=3, image_index=6, positions=100, cap=10)
    np.testing.assert_array_equal(keep, again)
    assert len(set(keep)) == 10 and list(keep) == sorted(keep)
    assert not np.array_equal(keep, other)
    np.testing.assert_array_equal(
        act.position_indices(seed=0, image_index=0, positions=6, cap=10), np.arange(6)
    )


def test_paired_datapoints_policies():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 8, 8, 4))
    b = rng.normal(size=(3, 4, 4, 5))
    spec = act.ActivationSpec(conv_policy="positions", max_positions=10)
    x, y = act.paired_datapoints(a, b, spec=spec, first_image=0)
    assert x.shape == (30, 4) and y.shape == (30, 5)
    # Resized by area averaging to the smaller 4x4 map: each position averages a 2x2 block.
    pooled = a.reshape(3, 4, 2, 4, 2, 4).mean(axis=(2, 4)).reshape(3, 16, 4)
    keep = act.position_indices(seed=0, image_index=1, positions=16, cap=10)
    np.testing.assert_allclose(x[10:20], pooled[1, keep], atol=1e-6)
    x, y = act.paired_datapoints(a, b, spec=act.ActivationSpec(conv_policy="pool"), first_image=0)
    np.testing.assert_allclose(x, a.mean(axis=(1, 2)))
    assert y.shape == (3, 5)
    with pytest.raises(ValueError, match="cannot pair"):
        act.paired_datapoints(a, rng.normal(size=(3, 5)), spec=spec, first_image=0)
    with pytest.raises(ValueError, match="differ in size"):
        act.paired_datapoints(a, b[:2], spec=spec, first_image=0)


def test_unit_outputs_and_self_similarity_is_one(workdirs):
    run = act.load_run(workdirs["a"], which="final")
    names = [u.name for u in run.units]
    assert names == ["conv1", "conv2", "conv3"]
    outputs = act.UnitExtractor(run, names)(images()[0])
    assert outputs["conv1"].shape[0] == 4 and outputs["conv3"].shape[-1] == 16
    twin = act.load_run(workdirs["a"], which="final")
    spec = act.ActivationSpec(max_positions=16)
    stats = act.pairwise_unit_similarity(
        [run, twin], [(0, 1)], images=images(), unit_names=names, spec=spec
    )
    for unit in names:
        acc = stats[(0, 1)][unit]
        assert acc.n == 12 * 16
        assert acc.cca().mean == pytest.approx(1.0, abs=1e-6)
        assert acc.linear_cka() == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="unknown units"):
        act.UnitExtractor(run, ["block9"])


def test_streamed_unit_similarity_equals_in_memory(workdirs):
    runs = [act.load_run(workdirs["a"], which="init"), act.load_run(workdirs["a"], which="final")]
    names = [u.name for u in runs[0].units]
    spec = act.ActivationSpec(max_positions=20, seed=4)
    stats = act.pairwise_unit_similarity(
        runs, [(0, 1)], images=images(), unit_names=names, spec=spec
    )
    extractors = [act.UnitExtractor(r, names) for r in runs]
    for unit in names:
        xs, ys, seen = [], [], 0
        for batch in images():
            x, y = act.paired_datapoints(
                extractors[0](batch)[unit], extractors[1](batch)[unit], spec=spec, first_image=seen
            )
            xs.append(x)
            ys.append(y)
            seen += batch.shape[0]
        x, y = np.concatenate(xs), np.concatenate(ys)
        acc = stats[(0, 1)][unit]
        assert acc.cca().mean == pytest.approx(cca.cca(x, y).mean, abs=1e-8)
        assert acc.pwcca().value == pytest.approx(cca.pwcca(x, y).value, abs=1e-8)
        assert acc.linear_cka() == pytest.approx(cka.linear_cka(x, y), abs=1e-8)
        assert 0.0 < acc.cca().mean < 1.0


def test_pair_kinds():
    assert analyses.pair_kind("random", "random") == "random_vs_random"
    assert analyses.pair_kind("imagenet", "random") == "random_vs_transfer"
    assert analyses.pair_kind("meanvar", "imagenet") == "transfer_vs_transfer"
    assert analyses.pair_group("imagenet", "random") == "random_vs_imagenet"


def test_weight_change_known_answer(workdirs, tmp_path):
    payload = analyses.weight_change(workdirs=[workdirs["a"]], output_dir=str(tmp_path))
    run = act.load_run(workdirs["a"], which="init")
    w0 = run.model.get_layer("conv2_conv").get_weights()
    final = act.load_run(workdirs["a"], which="final")
    w1 = final.model.get_layer("conv2_conv").get_weights()
    num = sum(np.sum((b - a) ** 2) for a, b in zip(w0, w1, strict=True))
    den = sum(np.sum(a**2) for a in w0)
    layers = {e["layer"]: e["relative_change"] for e in payload["runs"][0]["layers"]}
    assert layers["conv2_conv"] == pytest.approx(np.sqrt(num / den), rel=1e-6)
    assert set(payload["runs"][0]["units"]) == {"conv1", "conv2", "conv3", "head"}
    for name in ("weight_change.json", "weight_change.csv", "weight_change.png"):
        assert (tmp_path / name).is_file()
    # TensorBoard holds the figure and the table, no per-layer scalar curves.
    assert tensorboard_summaries(tmp_path) == {
        "weight_change/weight_change": "images",
        "weight_change/units": "text",
    }


def test_filter_grids_of_unchanged_kernel(workdirs, tmp_path):
    payload = analyses.filter_grids(
        workdirs=[workdirs["a"], workdirs["t"]], output_dir=str(tmp_path)
    )
    assert [r["layer"] for r in payload["runs"]] == ["conv1_conv", "conv1_conv"]
    assert payload["runs"][0]["shape"] == [5, 5, 3, 8]
    assert 0 < payload["runs"][0]["relative_change"] < 1
    assert (tmp_path / "filters_a.png").is_file() and (tmp_path / "filters_t.png").is_file()
    rows = (tmp_path / "filters.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 8
    assert tensorboard_summaries(tmp_path) == {
        "filters/filters_a": "images",
        "filters/filters_t": "images",
        "filters/runs": "text",
    }


def test_init_vs_final_and_compare_on_images(workdirs, tmp_path, monkeypatch):
    """The two activation analyses with images fed directly (the dataset path is in the CLI
    tests): self-pairs, the Fig. 4 pairs and Fig. 2 grouping."""
    monkeypatch.setattr(analysis_runs, "images", lambda path, run, spec: iter(images()))
    monkeypatch.setattr(analysis_runs, "dataset_dir", lambda path, run: "unused")
    spec = act.ActivationSpec(max_positions=16)
    options = MeasureOptions(svcca_dims=4)
    ivf = analyses.init_vs_final(
        workdirs=list(workdirs.values()),
        output_dir=str(tmp_path / "ivf"),
        spec=spec,
        options=options,
    )
    assert [r["run"] for r in ivf["runs"]] == ["a", "b", "t"]
    assert len(ivf["pairs"]) == 3 * 3  # 3 run pairs x 3 units
    for r in ivf["runs"]:
        for values in r["units"].values():
            assert 0.0 < values["cca_mean"] < 1.0 and values["datapoints"] == 12 * 16
    assert (tmp_path / "ivf" / "init_vs_final_scatter.png").is_file()
    cmp = analyses.compare_runs(
        workdirs=list(workdirs.values()),
        output_dir=str(tmp_path / "cmp"),
        spec=spec,
        measures=["pwcca", "cka_linear"],
        options=options,
    )
    assert set(cmp["groups"]["by_kind"]) == {"random_vs_random", "random_vs_transfer"}
    assert cmp["groups"]["by_kind"]["random_vs_transfer"]["pwcca"]["pairs"] == 2
    pair = cmp["pairs"][0]
    assert pair["top_units"] == ["conv2", "conv3"]
    expected = np.mean([pair["units"][u]["pwcca"] for u in ("conv2", "conv3")])
    assert pair["top_two"]["pwcca"] == pytest.approx(expected)
    for name in ("compare.json", "compare.csv", "compare_units.png", "compare_fig2.png"):
        assert (tmp_path / "cmp" / name).is_file()
    # The results as their figures and a table, not per-pair scalar curves over unit indices.
    assert tensorboard_summaries(tmp_path / "ivf") == {
        "init_vs_final/init_vs_final_units": "images",
        "init_vs_final/init_vs_final_scatter": "images",
        "init_vs_final/runs": "text",
    }
    assert tensorboard_summaries(tmp_path / "cmp") == {
        "compare/compare_units": "images",
        "compare/compare_fig2": "images",
        "compare/pairs": "text",
    }
