"""The run record's readers and writers (transfusion_tf.workdir)."""

import json
import os
import re

import pytest

from transfusion_tf import workdir


def _write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def test_missing_config_is_both_file_not_found_and_workdir_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a transfusion-train workdir") as info:
        workdir.read_config(str(tmp_path))
    assert isinstance(info.value, workdir.WorkdirError)


def test_bad_config_names_the_file(tmp_path):
    _write(tmp_path / workdir.CONFIG_FILE, json.dumps({"data": {}, "colour": 1}))
    with pytest.raises(workdir.WorkdirError, match="config.json is not a valid run config"):
        workdir.read_config(str(tmp_path))


def test_history_drops_only_a_line_cut_while_written(tmp_path):
    _write(tmp_path / workdir.HISTORY_FILE, '{"step": 0}\n{"step": 5}\n{"step": 1')
    assert [r["step"] for r in workdir.read_history(str(tmp_path))] == [0, 5]


@pytest.mark.parametrize(
    "text, where", [('{"step": 0}\noops\n', ":2: not valid JSON"), ('{"x": 1}\n', ":1: record")]
)
def test_history_bad_whole_line_names_file_and_line(tmp_path, text, where):
    _write(tmp_path / workdir.HISTORY_FILE, text)
    with pytest.raises(workdir.WorkdirError, match=f"eval_history.jsonl{where}"):
        workdir.read_history(str(tmp_path))


def test_history_absent_is_empty_and_append_round_trips(tmp_path):
    assert workdir.read_history(str(tmp_path)) == []
    workdir.append_history(str(tmp_path), {"step": 3, "auc": 0.5})
    assert workdir.read_history(str(tmp_path)) == [{"step": 3, "auc": 0.5}]


def test_json_writer_is_atomic_and_reader_names_bad_file(tmp_path):
    path = str(tmp_path / workdir.RESULTS_FILE)
    workdir.write_json_atomic(path, {"final_auc_mean": 0.7})
    assert os.listdir(tmp_path) == [workdir.RESULTS_FILE]
    assert workdir.read_results(str(tmp_path)) == {"final_auc_mean": 0.7}
    _write(path, "{not json")
    with pytest.raises(workdir.WorkdirError, match="results.json: not valid JSON"):
        workdir.read_results(str(tmp_path))
    os.remove(path)
    assert workdir.read_results(str(tmp_path)) is None


def test_weights_choices_and_missing_weights(tmp_path):
    with pytest.raises(ValueError, match="choose one of final, best, init"):
        workdir.weights_path(str(tmp_path), "last")
    with pytest.raises(FileNotFoundError, match="has no best weights"):
        workdir.existing_weights(str(tmp_path), "best")


def test_sha256_of_a_file(tmp_path):
    _write(tmp_path / "a.txt", "abc")
    assert workdir.sha256(str(tmp_path / "a.txt")) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def _tiny_run(path, widths=(4, 8)):
    from transfusion_tf import config

    cfg = config.RunConfig(model=config.ModelConfig(name="cbr_tiny", widths=widths))
    _write(path / workdir.CONFIG_FILE, cfg.to_json())
    model = workdir.build_model(cfg)
    os.makedirs(path / workdir.WEIGHTS_DIR)
    model.save_weights(workdir.weights_path(str(path), "final"))
    return cfg, model


def test_load_model_round_trips_the_final_weights(tmp_path):
    cfg, saved = _tiny_run(tmp_path)
    loaded_cfg, loaded = workdir.load_model(str(tmp_path))
    assert loaded_cfg.model == cfg.model and loaded.name == "cbr_tiny"
    for a, b in zip(saved.weights, loaded.weights, strict=True):
        assert (a.numpy() == b.numpy()).all()
    with pytest.raises(FileNotFoundError, match="has no init weights"):
        workdir.load_model(str(tmp_path), weights="init")


def test_weights_that_do_not_fit_name_the_file(tmp_path):
    cfg, _ = _tiny_run(tmp_path)
    wider = workdir.build_model(cfg.replace(model=cfg.model.replace(widths=(4, 16))))
    with pytest.raises(workdir.WorkdirError, match="final.weights.h5: cannot load into cbr_tiny"):
        workdir.load_weights(wider, str(tmp_path), weights="final")


def test_versions_and_evaluation_file_names():
    assert {"transfusion_tf", "tensorflow", "keras", "numpy", "python"} <= set(workdir.versions())
    assert workdir.evaluation_report_file("test") == "evaluation_test.json"
    assert workdir.evaluation_predictions_file("test") == "predictions_test.npz"
    assert workdir.evaluation_roc_file("valid") == "roc_valid.png"


def _legacy_config(data_size, model_size):
    """A config.json as written while image_size lived in both "data" and "model"."""
    from transfusion_tf import config

    raw = config.RunConfig(model=config.ModelConfig(image_size=model_size)).to_dict()
    raw["data"]["image_size"] = data_size
    return json.dumps(raw)


def test_config_with_image_size_in_data_and_model_still_loads(tmp_path):
    _write(tmp_path / workdir.CONFIG_FILE, _legacy_config(64, 64))
    cfg = workdir.read_config(str(tmp_path))
    assert cfg.model.image_size == 64 and not hasattr(cfg.data, "image_size")


def test_config_whose_two_image_sizes_disagree_names_the_file(tmp_path):
    _write(tmp_path / workdir.CONFIG_FILE, _legacy_config(64, 32))
    path = os.path.join(str(tmp_path), workdir.CONFIG_FILE)
    with pytest.raises(workdir.WorkdirError, match="data.image_size=64 and model.image_size=32"):
        workdir.read_config(str(tmp_path))
    with pytest.raises(workdir.WorkdirError, match=re.escape(path)):
        workdir.read_config(str(tmp_path))
