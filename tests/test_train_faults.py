"""Training and evaluation faced with real faults (SPEC R, T4): a run that fails before
training leaves nothing that blocks the corrected command; the NaN-loss and wrong-architecture
messages say what is true; diverged runs, runs at chance and a batch larger than the training
split finish with warnings in results.json; shards cut or changed after conversion stop
training and evaluation with one line naming the split and counts, or the shard and offset.

All training invocations run in one subprocess (TensorFlow imported once), as in
test_train_cli.py; the evaluations in another.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
import test_train_helpers as helpers

from transfusion_tf.data import info as info_lib
from transfusion_tf.training import health


def _cut_shard(dataset, split, keep):
    """Cuts the first shard of `split` back to its first `keep` whole records."""
    shard = info_lib.list_shards(str(dataset), split)[0]
    with open(shard, "rb") as f:
        data = f.read()
    at = 0
    for _ in range(keep):
        at += int.from_bytes(data[at : at + 8], "little") + 16
    with open(shard, "r+b") as f:
        f.truncate(at)
    return shard


def _flip_shard(dataset, split):
    """Changes one byte inside the second record of the first shard of `split`."""
    shard = info_lib.list_shards(str(dataset), split)[0]
    with open(shard, "r+b") as f:
        first = int.from_bytes(f.read(8), "little") + 16
        f.seek(first + 40)
        byte = f.read(1)
        f.seek(first + 40)
        f.write(bytes([byte[0] ^ 0xFF]))
    return shard, first


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    data = helpers.tiny_dataset(tmp_path_factory)
    # Per test process: under xdist each worker that runs a test of this module builds its
    # own batch, and two batches in one folder would share their workdirs.
    root = Path(tmp_path_factory.mktemp("train_faults"))
    cut = root / "data_cut"
    shutil.copytree(data, cut)
    _cut_shard(cut, "train", keep=2)
    flipped = root / "data_flipped"
    shutil.copytree(data, flipped)
    flipped_shard, flipped_offset = _flip_shard(flipped, "train")

    def flags(name, *extra, dataset=data):
        return helpers.train_flags(str(dataset), str(root / name), *extra)

    source = root / "source" / "weights" / "final.weights.h5"
    runs = {
        "source": flags("source", "--train_steps=2"),
        "bad_source": flags(
            "retry", "--init=imagenet", f"--source_weights={source}", "--widths=16,32"
        ),
        "retry": flags("retry", "--init=random", "--widths=16,32"),
        "nan": flags("nan", "--learning_rate=1e30", "--optimizer=sgd"),
        "nan_retry": flags("nan", "--learning_rate=0.05", "--optimizer=sgd"),
        "diverged": flags("diverged", "--optimizer=adam", "--learning_rate=1e6"),
        "big_batch": flags("big_batch", "--batch_size=64", "--train_steps=2"),
        "cut": flags("cut", dataset=cut),
        "flipped": flags("flipped", dataset=flipped),
    }
    records = dict(zip(runs, helpers.run_cli_batch("train", list(runs.values())), strict=True))
    return {
        "root": root,
        "data": data,
        "data_cut": cut,
        "flipped_shard": flipped_shard,
        "flipped_offset": flipped_offset,
        **records,
    }


def _results(batch, name):
    rec = batch[name]
    assert rec["ok"], rec["error"]
    with open(batch["root"] / name / "results.json") as f:
        return json.load(f)


def test_a_run_failing_on_its_source_leaves_nothing_that_blocks_the_fix(batch):
    rec = batch["bad_source"]
    assert not rec["ok"]
    assert "Traceback" not in rec["error"]
    message = rec["error"]
    assert "layer(s) could not be loaded; the first, Conv2D 'conv1_conv': it expects a " in (
        message
    )
    assert "Example error message for object" not in message
    # The corrected command in the same --workdir is accepted and trains.
    assert _results(batch, "retry")["train_steps"] == 4


def test_nan_loss_message_says_what_exists_and_what_to_do(batch):
    rec = batch["nan"]
    assert rec["exit_code"] == 1
    message = rec["error"].strip()
    assert "training loss became nan" in message.lower() or "inf" in message
    workdir = batch["root"] / "nan"
    if (workdir / "checkpoints").exists():
        assert "the newest backup, " in message and "holds the weights" in message
    else:
        assert "no backup was written yet" in message and f"deleting {workdir}" in message
        assert "checkpoints" not in message
        # The corrected command is refused with the file to delete and why.
        retry = batch["nan_retry"]
        assert not retry["ok"]
        assert "holds no backup" in retry["error"] and f"deleting {workdir}" in retry["error"]


def test_a_diverged_run_finishes_with_warnings(batch):
    results = _results(batch, "diverged")
    codes = {w["code"] for w in results["warnings"]}
    assert "diverged" in codes, results["warnings"]
    for warning in results["warnings"]:
        assert warning["message"]


def test_a_batch_larger_than_the_training_split_is_warned(batch):
    results = _results(batch, "big_batch")
    (warning,) = [w for w in results["warnings"] if w["code"] == "batch_exceeds_train_split"]
    info = info_lib.load_dataset_info(batch["data"])
    count = info["splits"]["train"]["num_examples"]
    assert warning["message"].startswith(
        f"--batch_size=64 is larger than the {count} examples of the train split of "
    )
    assert _results(batch, "source")["warnings"] == []


def test_shards_cut_back_stop_training_naming_split_and_counts(batch):
    rec = batch["cut"]
    assert not rec["ok"] and "Traceback" not in rec["error"]
    info = info_lib.load_dataset_info(str(batch["data_cut"]))
    listed = info["splits"]["train"]["num_examples"]
    assert f"split 'train' of {batch['data_cut']}: its " in rec["error"]
    assert f"but dataset_info.json lists {listed}" in rec["error"]
    assert not (batch["root"] / "cut").exists()  # nothing claimed


def test_changed_bytes_stop_training_naming_the_shard(batch):
    rec = batch["flipped"]
    assert not rec["ok"] and "Traceback" not in rec["error"]
    assert (
        f"{batch['flipped_shard']}: corrupted record at offset {batch['flipped_offset']} "
        "(record 2): CRC mismatch"
    ) in rec["error"]


def test_evaluation_of_cut_or_changed_shards(batch, tmp_path):
    workdir = batch["root"] / "source"
    cut = tmp_path / "cut"
    shutil.copytree(batch["data"], cut)
    _cut_shard(cut, "test", keep=1)
    flipped = tmp_path / "flipped"
    shutil.copytree(batch["data"], flipped)
    shard, offset = _flip_shard(flipped, "test")
    argvs = [
        [f"--workdir={workdir}", f"--dataset_dir={d}", "--split=test", "--bootstrap_samples=10"]
        + [f"--output_dir={tmp_path / ('eval_' + d.name)}"]
        for d in (cut, flipped)
    ]
    cut_rec, flipped_rec = helpers.run_cli_batch("evaluate", argvs)
    listed = info_lib.load_dataset_info(str(cut))["splits"]["test"]["num_examples"]
    assert not cut_rec["ok"] and f"split 'test' of {cut}: its " in cut_rec["error"]
    assert f"lists {listed}" in cut_rec["error"]
    assert not flipped_rec["ok"]
    assert f"{shard}: corrupted record at offset {offset} (record 2)" in flipped_rec["error"]
    assert "Traceback" not in cut_rec["error"] + flipped_rec["error"]


@pytest.mark.parametrize(
    ("history", "codes"),
    [
        (
            [{"step": 0, "loss": 0.7, "auc_mean": 0.5}, {"step": 5, "loss": 0.5, "auc_mean": 0.8}],
            [],
        ),
        (
            [{"step": 0, "loss": 0.7, "auc_mean": 0.5}, {"step": 5, "loss": 3e12, "auc_mean": 0.5}],
            ["diverged", "auc_at_chance"],
        ),
        (
            [
                {"step": 0, "loss": 0.7, "auc_mean": 0.6},
                {"step": 5, "loss": 0.69, "auc_mean": None},
            ],
            ["auc_at_chance"],
        ),
        ([{"step": 0, "loss": 0.7, "auc_mean": 0.5}], []),
    ],
)
def test_health_rules(history, codes):
    assert [w["code"] for w in health.run_warnings(history)] == codes
    assert health.batch_warning(batch_size=8, train_examples=8, what="x") is None
    assert health.batch_warning(batch_size=9, train_examples=8, what="x")["code"] == (
        "batch_exceeds_train_split"
    )


def test_workdir_not_left_behind(batch):
    assert not os.path.exists(batch["root"] / "cut")
