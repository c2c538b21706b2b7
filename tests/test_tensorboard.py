"""T7: a run's TensorBoard events, read with TensorBoard's own EventAccumulator: stable scalar
tags, hparams, conv1 filter images at init and at each eval, the init report as text."""

import glob
import os

import pytest
import test_train_helpers as helpers
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata as hp_metadata
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    workdir = helpers.tiny_run(tmp_path_factory)
    logdir = os.path.join(workdir, "tensorboard")
    assert glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
    acc = event_accumulator.EventAccumulator(logdir, size_guidance={"tensors": 0})
    acc.Reload()
    return acc


def _steps(acc, tag):
    return [e.step for e in acc.Tensors(tag)]


def test_scalar_tags_and_steps(events):
    tags = set(events.Tags()["tensors"])
    for tag in (
        "train/loss",
        "train/learning_rate",
        "perf/images_per_second",
        "eval/auc/referable_dr",
        "eval/auprc/referable_dr",
        "eval/auc_mean",
        "eval/auprc_mean",
        "eval/loss",
    ):
        assert tag in tags, tag
    assert _steps(events, "train/loss") == [3, 6]
    assert _steps(events, "eval/auc_mean") == [0, 3, 6]  # the init is evaluated too
    value = float(tensor_util.make_ndarray(events.Tensors("eval/auc_mean")[-1].tensor_proto))
    assert 0.0 <= value <= 1.0


def test_filter_images_at_init_and_each_eval(events):
    assert _steps(events, "filters/conv1") == [0, 3, 6]
    proto = events.Tensors("filters/conv1")[0].tensor_proto
    # image summaries hold [width, height, encoded PNG]
    assert proto.string_val[2][:4] == b"\x89PNG"


def test_init_report_text_and_hparams(events):
    text = events.Tensors("init/report")[0].tensor_proto.string_val[0].decode()
    assert "random" in text
    content = events.PluginTagToContent(hp_metadata.PLUGIN_NAME)
    assert hp_metadata.SESSION_START_INFO_TAG in content
    data = plugin_data_pb2.HParamsPluginData.FromString(content[hp_metadata.SESSION_START_INFO_TAG])
    hparams = data.session_start_info.hparams
    assert hparams["model"].string_value == "cbr_tiny"
    assert hparams["init"].string_value == "random"
    assert hparams["transfuse_upto"].string_value == "none"
    assert hparams["lr"].number_value == pytest.approx(0.05)
    assert hparams["seed"].number_value == 0
    assert hparams["dataset"].string_value.startswith("train_tiny_fundus")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content[hp_metadata.EXPERIMENT_TAG]
    ).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["eval/auc_mean"]
