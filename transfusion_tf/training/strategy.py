"""tf.distribute strategy selection (SPEC T2) and the chief/worker facts the trainer needs.

`auto` picks: a TPU when `TPU_NAME` is set, `multi_worker` when `TF_CONFIG` names more than
one task, `mirrored` with more than one GPU, else `one_device` (GPU:0 or CPU:0).
`multi_worker` reads the cluster from `TF_CONFIG` (MultiWorkerMirroredStrategy).
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON: {err}") from None


def _cluster_size(tf_config: dict) -> int:
    cluster = tf_config.get("cluster", {})
    return sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))


def resolve_strategy_name(name: str) -> str:
    """The concrete strategy `auto` stands for here; other names are returned as given."""
    if name not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}; got {name!r}")
    if name != "auto":
        return name
    if os.environ.get("TPU_NAME"):
        return "tpu"
    if _cluster_size(_tf_config()) > 1:
        return "multi_worker"
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return "mirrored"
    return "one_device"


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Creates the strategy named by `--strategy`; create it before any other TF op runs."""
    name = resolve_strategy_name(name)
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        if not devices:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker":
        if _cluster_size(_tf_config()) < 1:
            raise ValueError("--strategy=multi_worker needs TF_CONFIG naming the cluster")
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME"))
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the one worker that writes the workdir (always true outside multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
        return True
    return task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()
    )


def worker_id(strategy: tf.distribute.Strategy) -> int:
    """This worker's index in the cluster (0 outside multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 0
    return int(resolver.task_id or 0)


def check_batch_size(strategy: tf.distribute.Strategy, batch_size: int) -> None:
    """The global batch must split evenly over replicas; ValueError names the flag."""
    replicas = strategy.num_replicas_in_sync
    if batch_size < 1 or batch_size % replicas:
        raise ValueError(
            f"--batch_size={batch_size} is not divisible by the {replicas} replicas of the strategy"
        )
