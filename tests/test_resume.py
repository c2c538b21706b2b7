"""T4: a training process killed with SIGKILL mid-run resumes from its last backup and
finishes with the full step count on the same --train_examples subset; a truncated history
line is dropped on resume; a resumed run whose subset would change is refused."""

import json
import os
import signal
import time

import pytest
import test_train_helpers as helpers


@pytest.mark.slow
def test_kill_9_then_same_command_finishes_all_steps(tmp_path_factory, tmp_path):
    data = helpers.tiny_dataset(tmp_path_factory)
    workdir = tmp_path / "run"
    args = helpers.train_flags(data, str(workdir))
    args += [
        "--train_steps=60",
        "--eval_every_steps=20",
        "--checkpoint_every_steps=2",
        "--steps_per_loop=2",
        "--train_examples=12",
        "--seed=3",
    ]
    proc = helpers.run_cli("train", args)
    marker = workdir / "checkpoints" / "checkpoint"
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no backup was written in time"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (workdir / "results.json").exists(), "the run ended before it was killed"
    subset = (workdir / "train_subset.txt").read_text()

    again = helpers.run_cli("train", args)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    assert results["train_steps"] == 60
    assert results["resumed"] is True
    history = [json.loads(x) for x in (workdir / "eval_history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history] == [0, 20, 40, 60]  # one step-0 eval, not repeated
    assert json.loads(out)["train_steps"] == 60
    # The resumed run trained on the images of the killed one, which an unkilled run of any
    # seed draws too: --subset_seed (default 0) alone picks them.
    from transfusion_tf.data import pipeline

    assert (workdir / "train_subset.txt").read_text() == subset
    want = pipeline.train_subset_ids(data, num_examples=12, subset_seed=0)
    assert subset == "".join(i.decode() + "\n" for i in want)
    assert json.loads((workdir / "config.json").read_text())["data"]["subset_seed"] == 0


def test_truncated_history_line_is_dropped(tmp_path):
    from transfusion_tf import workdir

    (tmp_path / "eval_history.jsonl").write_text(
        json.dumps({"step": 2, "auc_mean": 0.5}) + "\n" + '{"step": 4, "auc'
    )
    assert [r["step"] for r in workdir.read_history(str(tmp_path))] == [2]


def test_resume_on_a_changed_subset_is_refused(tmp_path_factory, tmp_path):
    from transfusion_tf.training import trainer

    data = helpers.tiny_dataset(tmp_path_factory)
    workdir = tmp_path / "run"
    cfg = helpers.tiny_config(data, str(workdir), train_steps=3, eval_every_steps=3)
    cfg = cfg.replace(data=cfg.data.replace(train_examples=8))
    results = trainer.train_and_evaluate(cfg)
    assert len((workdir / "train_subset.txt").read_text().splitlines()) == 8
    assert results["train_subset_sha256"]
    # As if the dataset had been rewritten with other ids while the run was unfinished.
    (workdir / "results.json").unlink()
    (workdir / "train_subset.txt").write_text("other/0000001\n")
    with pytest.raises(ValueError, match="now draws other examples"):
        trainer.train_and_evaluate(cfg)


@pytest.mark.slow
def test_restart_before_the_first_backup_keeps_one_step0_eval(tmp_path_factory, tmp_path):
    """A run killed after its step-0 eval but before any backup starts again from its init and
    does not evaluate step 0 a second time."""
    import shutil

    from transfusion_tf.training import trainer

    data = helpers.tiny_dataset(tmp_path_factory)
    workdir = tmp_path / "run"
    cfg = helpers.tiny_config(data, str(workdir))
    trainer.train_and_evaluate(cfg)
    # What a kill right after the step-0 eval leaves: config, init files, the step-0 record.
    history = (workdir / "eval_history.jsonl").read_text().splitlines()
    (workdir / "eval_history.jsonl").write_text(history[0] + "\n")
    shutil.rmtree(workdir / "checkpoints")
    (workdir / "results.json").unlink()
    results = trainer.train_and_evaluate(cfg)
    steps = [
        json.loads(x)["step"] for x in (workdir / "eval_history.jsonl").read_text().splitlines()
    ]
    assert steps == [0, 3, 6]
    assert results["resumed"] is False and results["train_steps"] == 6
