"""`transfusion-analyze` end to end through its CLI on workdirs made by `transfusion-train`.

Three tiny runs (two random seeds, one transferred from the first) are trained by the real
train CLI in one subprocess; every analyze invocation (each mode and each bad input) then runs
in one more subprocess through the CLI's `main`, as the console script calls it.
"""

import json
import os
import shutil

import h5py
import numpy as np
import pytest
import test_train_helpers as helpers
from test_activations import tensorboard_summaries

from transfusion_tf.analysis import cca, cka

TRAIN_EXTRA = ("--widths=8,8,16", "--train_steps=2", "--eval_every_steps=2", "--augment=none")
ANALYSIS = ("--split=train", "--num_examples=16", "--batch_size=8", "--max_positions=8")
TOP_KEYS = ("cca_mean", "svcca_mean", "pwcca", "cka_linear", "cka_linear_debiased", "cka_rbf")


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    data = helpers.tiny_dataset(tmp_path_factory)
    root = tmp_path_factory.mktemp("analyze_cli")
    runs = {"r0": ("--seed=0",), "r1": ("--seed=1",)}
    runs["t0"] = ("--seed=2", "--init=imagenet", f"--source_weights={root / 'r0'}")
    trained = helpers.run_cli_batch(
        "train",
        [helpers.train_flags(data, str(root / n), *TRAIN_EXTRA, *e) for n, e in runs.items()],
    )
    for name, rec in zip(runs, trained, strict=True):
        assert rec["ok"], (name, rec["error"])
    shutil.copytree(root / "r0", root / "r0_copy")
    os.makedirs(root / "no_weights")
    shutil.copy(root / "r0" / "config.json", root / "no_weights" / "config.json")
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 12))
    np.save(root / "a.npy", a)
    np.save(root / "b.npy", a[:, :6] @ rng.normal(size=(6, 9)) + rng.normal(size=(200, 9)))
    np.save(root / "short.npy", a[:150])
    np.save(root / "cube.npy", np.zeros((10, 2, 2)))
    np.savez(root / "pair.npz", a=a, b=a)
    wd = {n: str(root / n) for n in ("r0", "r1", "t0", "r0_copy", "no_weights")}
    out = root / "out"

    def analyze(name, *flags):
        return [f"--output_dir={out / name}", *flags]

    three = f"--workdirs={wd['r0']},{wd['r1']},{wd['t0']}"
    invocations = {
        "compare": analyze("compare", "--mode=compare", three, *ANALYSIS),
        "compare_self": analyze(
            "compare_self",
            "--mode=compare",
            f"--workdirs={wd['r0']},{wd['r0_copy']}",
            f"--dataset_dir={data}",
            "--conv_policy=pool",
            "--measures=cka_linear,cca_mean,cka_minibatch",
            "--minibatch_size=6",
            *ANALYSIS,
        ),
        "init_vs_final": analyze("ivf", "--mode=init_vs_final", three, *ANALYSIS),
        "filters": analyze("filters", "--mode=filters", f"--workdirs={wd['r0']},{wd['t0']}"),
        "weight_change": analyze("wc", "--mode=weight_change", f"--workdirs={wd['r0']}"),
        "arrays": analyze(
            "arrays",
            "--mode=arrays",
            f"--a={root / 'a.npy'}",
            f"--b={root / 'b.npy'}",
            "--svcca_dims=4",
        ),
        "bad_missing_npy": analyze(
            "x", "--mode=arrays", f"--a={root / 'none.npy'}", f"--b={root / 'b.npy'}"
        ),
        "bad_examples": analyze(
            "x", "--mode=arrays", f"--a={root / 'a.npy'}", f"--b={root / 'short.npy'}"
        ),
        "bad_ndim": analyze(
            "x", "--mode=arrays", f"--a={root / 'cube.npy'}", f"--b={root / 'b.npy'}"
        ),
        "bad_npz": analyze(
            "x", "--mode=arrays", f"--a={root / 'pair.npz'}", f"--b={root / 'b.npy'}"
        ),
        "bad_no_b": analyze("x", "--mode=arrays", f"--a={root / 'a.npy'}"),
        "bad_svcca_dims": analyze(
            "x",
            "--mode=arrays",
            f"--a={root / 'a.npy'}",
            f"--b={root / 'b.npy'}",
            "--svcca_dims=most",
        ),
        "bad_mode": analyze("x", "--mode=cluster", three),
        "bad_measure": analyze("x", "--mode=compare", three, "--measures=cca_max"),
        "bad_stream_measure": analyze("x", "--mode=compare", three, "--measures=cka_rbf"),
        "bad_minibatch_size": analyze(
            "x", "--mode=compare", three, "--measures=cka_minibatch", "--minibatch_size=2"
        ),
        "bad_no_weights": analyze("x", "--mode=weight_change", f"--workdirs={wd['no_weights']}"),
        "bad_not_workdir": analyze("x", "--mode=filters", f"--workdirs={root / 'nowhere'}"),
        "bad_one_workdir": analyze("x", "--mode=compare", f"--workdirs={wd['r0']}"),
        "bad_no_workdirs": analyze("x", "--mode=init_vs_final"),
        "bad_unit": analyze("x", "--mode=compare", three, "--units=block9"),
        "bad_null_permutations": analyze(
            "x", "--mode=compare", three, "--null_permutations=1", *ANALYSIS
        ),
        "bad_rows_per_image": analyze(
            "x",
            "--mode=arrays",
            f"--a={root / 'a.npy'}",
            f"--b={root / 'b.npy'}",
            "--rows_per_image=7",
        ),
        "bad_dataset": analyze(
            "x", "--mode=compare", three, f"--dataset_dir={root / 'no_dataset'}"
        ),
    }
    records = helpers.run_cli_batch("analyze", list(invocations.values()))
    return {
        "root": root,
        "out": out,
        "workdirs": wd,
        **dict(zip(invocations, records, strict=True)),
    }


def _payload(batch, name, filename, directory=None):
    rec = batch[name]
    assert rec["ok"], rec["error"]
    return json.loads((batch["out"] / (directory or name) / filename).read_text())


@pytest.mark.slow
def test_compare_groups_pairs_by_init(batch):
    payload = _payload(batch, "compare", "compare.json")
    assert len(payload["pairs"]) == 3
    kinds = payload["groups"]["by_kind"]
    assert kinds["random_vs_random"]["cca_mean"]["pairs"] == 1
    assert kinds["random_vs_transfer"]["cca_mean"]["pairs"] == 2
    assert set(payload["groups"]["by_init"]) == {"random_vs_random", "random_vs_imagenet"}
    for pair in payload["pairs"]:
        assert pair["top_units"] == ["conv2", "conv3"]
        for unit, values in pair["units"].items():
            assert values["datapoints"] == 16 * 8, unit
            for m in ("cca_mean", "svcca_mean", "pwcca", "cka_linear"):
                assert 0.0 <= values[m] <= 1.0 + 1e-9
            for m in ("cca_mean", "svcca_mean", "pwcca", "cka_linear"):
                assert values["null"][m]["permutations"] == 10
                assert values["null"][m]["sd"] >= 0.0
                assert values["above_chance"][m] in (True, False)
            assert values["features"][0] == values["features"][1]
            assert values["datapoints_per_feature"] == pytest.approx(
                values["datapoints"] / sum(values["features"])
            )
        expected = np.mean([pair["units"][u]["cca_mean"] for u in pair["top_units"]])
        assert pair["top_two"]["cca_mean"] == pytest.approx(expected)
        null_means = [pair["units"][u]["null"]["cca_mean"]["mean"] for u in pair["top_units"]]
        assert pair["top_two_null"]["cca_mean"]["mean"] == pytest.approx(np.mean(null_means))
    # 128 datapoints for 8 + 8 .. 16 + 16 features: below 10 per feature, flagged.
    assert payload["low_datapoints_per_feature"]
    assert kinds["random_vs_transfer"]["cca_mean"]["null_mean"] is not None
    out = batch["out"] / "compare"
    for name in ("compare.csv", "compare_units.png", "compare_fig2.png"):
        assert (out / name).is_file()
    header = (out / "compare.csv").read_text().splitlines()[0].split(",")
    for column in ("cca_mean", "cca_mean_null_mean", "cca_mean_null_sd", "cca_mean_above_chance"):
        assert column in header
    assert "null_permutations" in header and "datapoints_per_feature" in header
    assert tensorboard_summaries(out) == {
        "compare/compare_units": "images",
        "compare/compare_fig2": "images",
        "compare/pairs": "text",
    }
    assert "random_vs_transfer" in batch["compare"]["stdout"]


@pytest.mark.slow
def test_compare_run_with_its_copy_is_identical(batch):
    payload = _payload(batch, "compare_self", "compare.json")
    (pair,) = payload["pairs"]
    assert pair["kind"] == "random_vs_random"
    for unit, values in pair["units"].items():
        assert values["datapoints"] == 16, unit  # pool policy: one datapoint per image
        assert values["cka_linear"] == pytest.approx(1.0, abs=1e-9)
        assert values["cca_mean"] == pytest.approx(1.0, abs=1e-6)
        assert values["cka_minibatch"] == pytest.approx(1.0, abs=1e-9)
        # A run and its copy are identical; linear CKA tells it from chance, while CCA on 16
        # datapoints for 16 + 16 features is near its ceiling even by chance.
        assert values["above_chance"]["cka_linear"] is True, unit
        assert values["null"]["cka_linear"]["mean"] < 0.99
    # (about 0.9 here, varying with the runs' nondeterministic CPU training)
    assert pair["units"]["conv3"]["null"]["cca_mean"]["mean"] > 0.8


@pytest.mark.slow
def test_init_vs_final_per_unit_and_scatter(batch):
    payload = _payload(batch, "init_vs_final", "init_vs_final.json", "ivf")
    assert [r["run"] for r in payload["runs"]] == ["r0", "r1", "t0"]
    assert [r["init"] for r in payload["runs"]] == ["random", "random", "imagenet"]
    for r in payload["runs"]:
        assert list(r["units"]) == ["conv1", "conv2", "conv3"]
        for values in r["units"].values():
            assert 0.0 < values["cca_mean"] <= 1.0 + 1e-9
        for values in r["units"].values():
            assert values["null"]["cca_mean"]["permutations"] == 10
    assert len(payload["pairs"]) == 3 * 3
    assert {p["kind"] for p in payload["pairs"]} == {"random_vs_random", "random_vs_transfer"}
    for p in payload["pairs"]:
        assert set(p["init_null"]) == set(p["final_null"]) == set(payload["measures"])
    # Fig. 4's correlation per unit and pair kind, never pooled over units.
    groups = {(c["unit"], c["kind"]): c for c in payload["init_final_correlation"]}
    assert set(groups) == {
        (u, k)
        for u in ("conv1", "conv2", "conv3")
        for k in ("random_vs_random", "random_vs_transfer")
    }
    assert groups[("conv1", "random_vs_random")]["pairs"] == 1
    assert groups[("conv1", "random_vs_random")]["correlation"] is None  # one pair: no r
    assert groups[("conv2", "random_vs_transfer")]["pairs"] == 2
    out = batch["out"] / "ivf"
    for name in ("init_vs_final.csv", "init_vs_final_units.png", "init_vs_final_scatter.png"):
        assert (out / name).is_file()
    assert tensorboard_summaries(out) == {
        "init_vs_final/init_vs_final_units": "images",
        "init_vs_final/init_vs_final_scatter": "images",
        "init_vs_final/runs": "text",
    }


def _h5_kernel(path, conv_index):
    """The kernel of the conv_index-th Conv2D, read straight from a Keras 3 weights file.

    Keras 3 stores layers under class-based names in creation order: conv2d, conv2d_1, ...
    """
    name = "conv2d" if conv_index == 0 else f"conv2d_{conv_index}"
    with h5py.File(path, "r") as f:
        return np.array(f[f"layers/{name}/vars/0"])


@pytest.mark.slow
def test_filters_match_the_weights_files(batch):
    payload = _payload(batch, "filters", "filters.json")
    assert [r["run"] for r in payload["runs"]] == ["r0", "t0"]
    r0 = batch["workdirs"]["r0"]
    k0 = _h5_kernel(os.path.join(r0, "weights", "init.weights.h5"), 0)
    k1 = _h5_kernel(os.path.join(r0, "weights", "final.weights.h5"), 0)
    run = payload["runs"][0]
    assert run["shape"] == list(k0.shape)
    expected = np.linalg.norm(k1 - k0) / np.linalg.norm(k0)
    assert run["relative_change"] == pytest.approx(expected, rel=1e-5)
    out = batch["out"] / "filters"
    assert (out / "filters_r0.png").is_file() and (out / "filters_t0.png").is_file()
    assert tensorboard_summaries(out) == {
        "filters/filters_r0": "images",
        "filters/filters_t0": "images",
        "filters/runs": "text",
    }


@pytest.mark.slow
def test_weight_change_matches_the_weights_files(batch):
    payload = _payload(batch, "weight_change", "weight_change.json", "wc")
    (run,) = payload["runs"]
    r0 = batch["workdirs"]["r0"]
    k0 = _h5_kernel(os.path.join(r0, "weights", "init.weights.h5"), 1)
    k1 = _h5_kernel(os.path.join(r0, "weights", "final.weights.h5"), 1)
    layers = {e["layer"]: e["relative_change"] for e in run["layers"]}
    # CBR convs carry no bias, so the layer's change is its kernel's.
    assert layers["conv2_conv"] == pytest.approx(
        np.linalg.norm(k1 - k0) / np.linalg.norm(k0), rel=1e-5
    )
    assert set(run["units"]) == {"conv1", "conv2", "conv3", "head"}
    assert all(v is not None and v > 0 for v in run["units"].values())
    assert (batch["out"] / "wc" / "weight_change.png").is_file()
    assert tensorboard_summaries(batch["out"] / "wc") == {
        "weight_change/weight_change": "images",
        "weight_change/units": "text",
    }


def test_arrays_mode_reports_every_measure(batch):
    payload = _payload(batch, "arrays", "similarity.json")
    a = np.load(batch["root"] / "a.npy")
    b = np.load(batch["root"] / "b.npy")
    for key in TOP_KEYS:
        assert payload[key] is not None, key
    assert payload["cca_mean"] == pytest.approx(cca.cca(a, b).mean, abs=1e-12)
    assert payload["svcca_mean"] == pytest.approx(cca.svcca(a, b, dims=4).mean, abs=1e-12)
    assert payload["svcca_dims"] == [4, 4]
    assert payload["pwcca"] == pytest.approx(cca.pwcca(a, b).value, abs=1e-12)
    assert payload["cka_rbf"] == pytest.approx(cka.rbf_cka(a, b), abs=1e-12)
    debiased = cka.linear_cka(a, b, debiased=True)
    assert payload["cka_minibatch"] == pytest.approx(debiased, abs=1e-12)  # one minibatch
    assert payload["examples"] == 200 and payload["a_features"] == 12
    for key in TOP_KEYS:
        assert payload["null"][key]["permutations"] == 10, key
        assert payload["above_chance"][key] is True, key  # b is a noisy map of a
    assert "above chance" in batch["arrays"]["stdout"]
    out = batch["out"] / "arrays"
    assert (out / "similarity.csv").is_file() and (out / "similarity.png").is_file()
    assert tensorboard_summaries(out) == {"arrays/similarity": "images", "arrays/measures": "text"}


@pytest.mark.parametrize(
    "name, message",
    [
        ("bad_missing_npy", "none.npy not found"),
        ("bad_examples", "has 200 examples but"),
        ("bad_ndim", "must be 2-D"),
        ("bad_npz", "expected one array (.npy)"),
        ("bad_no_b", "needs --a and --b"),
        ("bad_svcca_dims", "--svcca_dims='most'"),
        ("bad_mode", "mode"),
        ("bad_measure", "unknown similarity measure 'cca_max'"),
        ("bad_stream_measure", "cannot be streamed"),
        ("bad_minibatch_size", "--minibatch_size=2 must be >= 4"),
        ("bad_no_weights", "has no init weights"),
        ("bad_not_workdir", "config.json not found"),
        ("bad_one_workdir", "at least 2 workdir"),
        ("bad_no_workdirs", "needs --workdirs"),
        ("bad_unit", "unknown units ['block9']"),
        ("bad_null_permutations", "--null_permutations=1 must be 0"),
        ("bad_rows_per_image", "rows_per_image=7"),
        ("bad_dataset", "no_dataset not found"),
    ],
)
def test_bad_input_is_a_one_line_usage_error(batch, name, message):
    rec = batch[name]
    assert not rec["ok"] and rec["exit_code"] == 1
    assert rec["error"].startswith(("UsageError", "FlagError")), rec["error"]
    assert "Traceback" not in rec["error"]
    assert message in rec["error"]
