"""T2: `multi_worker` as two local processes (TF_CONFIG on free loopback ports) trains the same
number of steps as one process, on the one --train_examples subset, and gives a sane AUC.
(`mirrored` on two logical CPU devices is run with the other CLI runs in test_train_cli.py.)"""

import json
import socket

import pytest
import test_train_helpers as helpers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_two_local_processes(tmp_path_factory, tmp_path):
    data = helpers.tiny_dataset(tmp_path_factory)
    workdir = tmp_path / "mw"
    args = helpers.train_flags(data, str(workdir), "--strategy=multi_worker", "--train_examples=12")
    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(helpers.run_cli("train", args, env_extra={"TF_CONFIG": json.dumps(tf_config)}))
    outputs = [p.communicate(timeout=400) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    summaries = [json.loads(out) for out, _ in outputs]
    assert [s["train_steps"] for s in summaries] == [4, 4]
    results = json.loads((workdir / "results.json").read_text())
    assert results["strategy"] == "multi_worker" and results["num_replicas"] == 2
    assert results["train_steps"] == 4
    assert 0.0 <= results["final_auc_mean"] <= 1.0
    # The workers split the one --train_examples subset between them (tests/test_pipeline.py
    # checks the split); the chief records it.
    from transfusion_tf.data import pipeline

    want = pipeline.train_subset_ids(data, num_examples=12, subset_seed=0)
    assert (workdir / "train_subset.txt").read_text().split() == [i.decode() for i in want]
    # Only the chief writes the workdir; the other worker's backups went to a temp dir.
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.suffix == ".index")
