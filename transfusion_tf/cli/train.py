"""`transfusion-train`: trains one run of the study (SPEC T1). Flags -> RunConfig -> trainer.

Example:
  transfusion-train --dataset_dir=data/fundus --model=resnet50 --init=imagenet \
      --workdir=runs/resnet50_imagenet_s0 --train_steps=20000 --eval_every_steps=500
Flags can come from a file: `--flagfile=flags/table1_resnet50_imagenet.flags`.
"""

from __future__ import annotations

import json

from absl import app, flags

from transfusion_tf import config
from transfusion_tf.cli import common
from transfusion_tf.data import augment
from transfusion_tf.training import losses, metrics, optim
from transfusion_tf.training import strategy as strategy_lib

FLAGS = flags.FLAGS

# Data
flags.DEFINE_string("dataset_dir", None, "Prepared dataset directory (dataset_info.json + shards).")
flags.DEFINE_integer("batch_size", 32, "GLOBAL batch size (split over replicas).")
flags.DEFINE_integer("image_size", 224, "Square model input side in pixels.")
flags.DEFINE_integer("channels", 3, "Model input channels (1 or 3).")
flags.DEFINE_enum(
    "augment", "default", list(augment.AUGMENT_POLICIES), "Train-time augmentation policy."
)
flags.DEFINE_integer(
    "train_examples", None, "Train on a subset of N examples, drawn by --subset_seed."
)
flags.DEFINE_integer(
    "subset_seed",
    config.DataConfig.subset_seed,
    "Seed that alone draws the --train_examples subset: not --seed, nor the resume step, so "
    "every seed, init and resumption trains on the same images by default. Set it per seed "
    "for a different subset per seed.",
)
flags.DEFINE_bool("balanced", False, "Class-balanced sampling of the first task.")
flags.DEFINE_bool("cache", False, "Cache decoded examples in memory.")
flags.DEFINE_integer("shuffle_buffer", 2048, "Shuffle buffer size (examples).")
# Model
flags.DEFINE_string("model", "cbr_small", "Model name (see transfusion-models).")
flags.DEFINE_list("widths", None, "CBR widths override, e.g. 8,16,32.")
flags.DEFINE_float("width_multiplier", 0.5, "Upper-unit width multiplier of resnet50_slim.")
# Init
flags.DEFINE_string(
    "init", "random", "Init strategy: random, imagenet, meanvar, transfusion, gabor."
)
flags.DEFINE_string(
    "source_weights", None, "'imagenet', a weights file, a .keras model or a workdir."
)
flags.DEFINE_string(
    "stats_file", None, "Per-tensor statistics JSON (transfusion-stats) for meanvar."
)
flags.DEFINE_string("transfuse_upto", None, "Last unit copied by transfusion (name or count).")
flags.DEFINE_enum("upper_init", "random", ["random", "meanvar"], "Init above --transfuse_upto.")
flags.DEFINE_enum(
    "bn_policy", "identity", ["identity", "meanvar", "transfer"], "BatchNorm policy of meanvar."
)
flags.DEFINE_enum("gray_policy", "repeat", ["repeat", "sum"], "1-channel input vs RGB source.")
flags.DEFINE_string("random_initializer", None, "Override of Keras' default kernel initializer.")
# Training
flags.DEFINE_string("workdir", None, "Output directory of the run (resumed if it exists).")
flags.DEFINE_integer("seed", 0, "Seed of init, data order and augmentation.")
flags.DEFINE_enum("optimizer", "sgd", list(optim.OPTIMIZERS), "Optimizer.")
flags.DEFINE_float("learning_rate", 0.1, "Peak learning rate.")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_enum("lr_schedule", "cosine", list(optim.SCHEDULES), "Learning-rate schedule.")
flags.DEFINE_integer("warmup_steps", 0, "Linear warmup steps.")
flags.DEFINE_float("weight_decay", 0.0, "Decoupled weight decay (not on BN or biases).")
flags.DEFINE_integer("train_steps", 1000, "Total optimizer steps.")
flags.DEFINE_integer("eval_every_steps", 100, "Validation AUC every N steps (and at the end).")
flags.DEFINE_integer("steps_per_loop", 10, "Steps per tf.function call.")
flags.DEFINE_integer(
    "checkpoint_every_steps", 100, "Backup for resume every N steps (and at evals)."
)
flags.DEFINE_list("auc_thresholds", ["0.91"], "Mean-AUC thresholds for steps_to_threshold.")
flags.DEFINE_list("class_weights", None, "Per-task (softmax: per-class) loss weights.")
flags.DEFINE_enum(
    "loss",
    config.TrainConfig.loss,
    list(losses.LOSSES),
    "sigmoid: masked binary cross-entropy per task (multi-label); softmax: cross-entropy over "
    "mutually exclusive classes (single-label datasets only); auto: softmax when the "
    "dataset_info.json of --dataset_dir says single_label, else sigmoid (older datasets "
    "without the field: sigmoid).",
)
flags.DEFINE_enum(
    "threshold_rule",
    config.TrainConfig.threshold_rule,
    list(metrics.THRESHOLD_RULES),
    "'sustained': a threshold counts as reached when it holds at the next eval too; 'first': "
    "at the first eval that reaches it.",
)
flags.DEFINE_list(
    "threshold_tasks",
    list(config.TrainConfig.threshold_tasks),
    "Tasks whose mean AUC the thresholds apply to (e.g. Consolidation); empty: all tasks.",
)
flags.DEFINE_enum("strategy", "auto", list(strategy_lib.STRATEGIES), "tf.distribute strategy.")
flags.DEFINE_enum("precision", "float32", list(optim.PRECISIONS), "Compute precision.")
flags.DEFINE_bool("deterministic", False, "Op determinism + deterministic input order.")


def config_from_flags() -> config.RunConfig:
    """The RunConfig the flags describe; `num_tasks` comes from the dataset's task list."""
    from transfusion_tf.data import info as info_lib
    from transfusion_tf.init import registry as init_registry

    if not FLAGS.dataset_dir:
        raise ValueError("--dataset_dir is required")
    if not FLAGS.workdir:
        raise ValueError("--workdir is required")
    try:
        info = info_lib.load_dataset_info(FLAGS.dataset_dir)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"--dataset_dir: {err}") from None
    num_tasks = len(info["tasks"])
    thresholds = common.parse_floats("auc_thresholds", FLAGS.auc_thresholds) or ()
    init = config.InitConfig(
        name=FLAGS.init,
        source_weights=FLAGS.source_weights,
        stats_file=FLAGS.stats_file,
        transfuse_upto=FLAGS.transfuse_upto,
        upper_init=FLAGS.upper_init,
        bn_policy=FLAGS.bn_policy,
        gray_policy=FLAGS.gray_policy,
        random_initializer=FLAGS.random_initializer,
        seed=FLAGS.seed,
    )
    # Gray data with an RGB source is fed as RGB unless --gray_policy=sum (SPEC I2).
    model_channels = init_registry.input_channels(data_channels=FLAGS.channels, init=init)
    return config.RunConfig(
        data=config.DataConfig(
            dataset_dir=FLAGS.dataset_dir,
            image_size=FLAGS.image_size,
            channels=FLAGS.channels,
            batch_size=FLAGS.batch_size,
            augment=FLAGS.augment,
            train_examples=FLAGS.train_examples,
            subset_seed=FLAGS.subset_seed,
            balanced=FLAGS.balanced,
            cache=FLAGS.cache,
            shuffle_buffer=FLAGS.shuffle_buffer,
            deterministic=FLAGS.deterministic,
            seed=FLAGS.seed,
        ),
        model=config.ModelConfig(
            name=FLAGS.model,
            num_tasks=num_tasks,
            image_size=FLAGS.image_size,
            channels=model_channels,
            widths=common.parse_ints("widths", FLAGS.widths),
            width_multiplier=FLAGS.width_multiplier,
        ),
        init=init,
        train=config.TrainConfig(
            workdir=FLAGS.workdir,
            optimizer=FLAGS.optimizer,
            learning_rate=FLAGS.learning_rate,
            momentum=FLAGS.momentum,
            lr_schedule=FLAGS.lr_schedule,
            warmup_steps=FLAGS.warmup_steps,
            weight_decay=FLAGS.weight_decay,
            train_steps=FLAGS.train_steps,
            eval_every_steps=FLAGS.eval_every_steps,
            steps_per_loop=FLAGS.steps_per_loop,
            checkpoint_every_steps=FLAGS.checkpoint_every_steps,
            auc_thresholds=thresholds,
            threshold_rule=FLAGS.threshold_rule,
            threshold_tasks=tuple(FLAGS.threshold_tasks),
            strategy=FLAGS.strategy,
            precision=FLAGS.precision,
            class_weights=common.parse_floats("class_weights", FLAGS.class_weights),
            loss=FLAGS.loss,
            deterministic=FLAGS.deterministic,
            seed=FLAGS.seed,
        ),
    )


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from transfusion_tf.training import loop, trainer

    with common.usage_errors():
        cfg = config_from_flags()
        trainer.validate_config(cfg)
    try:
        with common.usage_errors():
            results = trainer.train_and_evaluate(cfg)
    except loop.NonFiniteLossError as err:
        common.fail(str(err))
    summary = {k: results.get(k) for k in ("final_auc_mean", "best_auc_mean", "best_step")}
    summary["steps_to_threshold"] = results.get("steps_to_threshold")
    summary["auc_curve_area"] = results.get("auc_curve_area")
    summary["train_steps"] = results.get("train_steps")
    print(json.dumps(summary, sort_keys=True))


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
