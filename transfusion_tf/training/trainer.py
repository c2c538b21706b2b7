"""`train_and_evaluate(config)`: one run of the study, from init to results (SPEC T1-T4, T7).

A workdir holds `config.json`, `init_report.json`, `weights/{init,final,best}.weights.h5`,
`checkpoints/` (backups for resume), `tensorboard/`, `eval_history.jsonl`, `results.json`,
`valid_predictions.npz` (the final weights' validation probabilities, labels and mask per
example: `training.predictions`) and, with `--train_examples`, `train_subset.txt`. The
validation split is evaluated at step 0 (the init, before any update), every
`eval_every_steps` and at the end. The same command on the same workdir resumes from the last
backup (or reports a finished run); a workdir holding a different configuration is refused.
The workdir is claimed (`config.json` written) only once the model is built, initialised from
its source and the data opened: a run that fails before that leaves nothing that refuses the
corrected command (a workdir it created is removed). Every read of the data is checked: a
split whose shards hold other counts than `dataset_info.json`, a one-pass count that differs,
or a corrupted record (named by shard and offset) stops the run with one line.

`results.json` keys: final_auc {task: AUC or null}, final_auc_mean, final_auprc(_mean),
best_auc_mean, best_step, and the convergence of the validation AUC (SPEC T3; the AUC is the
mean over `threshold_tasks`, all tasks when empty; see `metrics.threshold_crossing`):
steps_to_threshold {"0.91": eval step of the crossing under `threshold_rule`, or null},
steps_to_threshold_interpolated {"0.91": step interpolated between the evals that bracket the
crossing, or null}, steps_to_threshold_censored {"0.91": true when never reached within
train_steps}, threshold_rule, threshold_tasks, auc_curve_area (the AUC averaged over steps
0..train_steps, `metrics.auc_curve_area`); then examples_per_second (steady state: images
per wall second after the first, tracing, loop call, counting input waits, evals, backups and
logging), train_loop_examples_per_second (inside the training loop only), wall_seconds,
versions, seed, source_sha256, model, init, tasks, train_steps, dataset_dir, strategy,
num_replicas, precision, resumed, train_subset_sha256, loss_function (the resolved `--loss`:
"sigmoid" or "softmax"), final_top1_accuracy and final_top5_accuracy (softmax runs; null
otherwise, and top-5 null up to 5 classes), and warnings ([{"code", "message"}] of
`training.health`: "diverged", "auc_at_chance", "batch_exceeds_train_split"; empty for a
healthy run). Eval records hold the loss of the training loss
function over the validation split, and for softmax runs top1_accuracy / top5_accuracy;
per-task AUCs of a softmax run are one-vs-rest AUCs of the softmax probabilities.

Resume reseeds the training order with `seed + step`, so a resumed run reaches the same step
count but does not replay exactly the batches the killed run would have seen; the images it
trains on are the same: the `--train_examples` subset is drawn by `data.subset_seed` alone,
and its ids are written to `train_subset.txt` (one per line, sorted; `train_subset_sha256` in
`results.json` is the SHA-256 of that file, null without a subset). Under
multi-worker training every worker evaluates the whole validation split with its own copy of
the weights; the chief's numbers are the ones recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import sklearn
import tensorflow as tf
from absl import logging

import transfusion_tf
from transfusion_tf import config as config_lib
from transfusion_tf.data import pipeline as pipeline_lib
from transfusion_tf.data import verify as verify_lib
from transfusion_tf.training import checkpoint as ckpt_lib
from transfusion_tf.training import health, optim
from transfusion_tf.training import loop as loop_lib
from transfusion_tf.training import losses as losses_lib
from transfusion_tf.training import metrics as metrics_lib
from transfusion_tf.training import predictions as predictions_lib
from transfusion_tf.training import strategy as strategy_lib
from transfusion_tf.training import summaries as summaries_lib
from transfusion_tf.workdir import (  # the run record's names, defined once
    BEST_WEIGHTS,
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    FINAL_WEIGHTS,
    HISTORY_FILE,
    INIT_REPORT_FILE,
    INIT_WEIGHTS,
    RESULTS_FILE,
    TRAIN_SUBSET_FILE,
    weights_path,
)


class WorkdirConflictError(ValueError):
    """The workdir already holds a run with a different configuration."""


def versions() -> dict[str, str]:
    """Library versions recorded in `results.json`."""
    return {
        "transfusion_tf": transfusion_tf.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "python": platform.python_version(),
    }


def validate_config(cfg: config_lib.RunConfig) -> None:
    """Checks a run configuration before anything is built; ValueError names the flag."""
    from transfusion_tf.init import registry as init_registry
    from transfusion_tf.models import registry as model_registry

    if cfg.model.name not in model_registry.MODELS:
        raise ValueError(
            f"--model={cfg.model.name!r} is unknown; choose one of: "
            + ", ".join(model_registry.MODELS.names())
        )
    if cfg.init.name not in init_registry.INITS:
        raise ValueError(
            f"--init={cfg.init.name!r} is unknown; choose one of: "
            + ", ".join(init_registry.INITS.names())
        )
    init_registry.validate_init_config(cfg.init)
    if not cfg.train.workdir:
        raise ValueError("--workdir is required")
    if not cfg.data.dataset_dir:
        raise ValueError("--dataset_dir is required")
    if not os.path.isdir(cfg.data.dataset_dir):
        raise FileNotFoundError(f"--dataset_dir: directory not found: {cfg.data.dataset_dir}")
    strategy_lib.resolve_strategy_name(cfg.train.strategy)
    optim.validate_schedule(
        name=cfg.train.lr_schedule,
        learning_rate=cfg.train.learning_rate,
        train_steps=cfg.train.train_steps,
        warmup_steps=cfg.train.warmup_steps,
    )
    if cfg.train.optimizer not in optim.OPTIMIZERS:
        raise ValueError(
            f"--optimizer must be one of {', '.join(optim.OPTIMIZERS)}; got {cfg.train.optimizer!r}"
        )
    if cfg.train.precision not in optim.PRECISIONS:
        raise ValueError(
            f"--precision must be one of {', '.join(optim.PRECISIONS)}; got {cfg.train.precision!r}"
        )
    for flag, value in (
        ("--eval_every_steps", cfg.train.eval_every_steps),
        ("--steps_per_loop", cfg.train.steps_per_loop),
        ("--checkpoint_every_steps", cfg.train.checkpoint_every_steps),
        ("--batch_size", cfg.data.batch_size),
        ("--image_size", cfg.data.image_size),
    ):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1; got {value}")
    if cfg.data.subset_seed < 0:
        raise ValueError(f"--subset_seed must be >= 0; got {cfg.data.subset_seed}")
    if cfg.data.channels not in (1, 3):
        raise ValueError(f"--channels must be 1 or 3; got {cfg.data.channels}")
    if cfg.train.weight_decay < 0:
        raise ValueError(f"--weight_decay must be >= 0; got {cfg.train.weight_decay}")
    for t in cfg.train.auc_thresholds:
        if not 0.0 < t <= 1.0:
            raise ValueError(f"--auc_thresholds must be in (0, 1]; got {t}")
    validate_thresholds(cfg)
    if cfg.train.class_weights is not None and len(cfg.train.class_weights) != cfg.model.num_tasks:
        raise ValueError(
            f"--class_weights has {len(cfg.train.class_weights)} values but the dataset has "
            f"{cfg.model.num_tasks} tasks"
        )
    resolve_config(cfg)


def resolve_config(cfg: config_lib.RunConfig) -> config_lib.RunConfig:
    """`cfg` with `train.loss` resolved: "auto" becomes the loss the dataset calls for.

    A single-label dataset (`dataset_info.json` "single_label": true) trains with "softmax",
    any other with "sigmoid"; ValueError names --loss for a bad name or softmax on multi-label.
    """
    from transfusion_tf.data import info as info_lib

    info = info_lib.load_dataset_info(cfg.data.dataset_dir)
    loss = losses_lib.resolve_loss(
        cfg.train.loss,
        single_label=info_lib.is_single_label(info),
        dataset=f"--dataset_dir={cfg.data.dataset_dir}",
    )
    return cfg.replace(train=cfg.train.replace(loss=loss))


def _parse_stored_config(text: str) -> config_lib.RunConfig:
    """A workdir's `config.json`. It holds the resolved loss; one without (from before the
    loss was recorded, read as "auto") trained with per-task sigmoids."""
    cfg = config_lib.RunConfig.from_json(text)
    if cfg.train.loss == "auto":
        cfg = cfg.replace(train=cfg.train.replace(loss="sigmoid"))
    return cfg


def validate_thresholds(cfg: config_lib.RunConfig) -> None:
    """Checks --threshold_rule and --threshold_tasks (names of the dataset's tasks)."""
    from transfusion_tf.data import info as info_lib

    rule = cfg.train.threshold_rule
    if rule not in metrics_lib.THRESHOLD_RULES:
        raise ValueError(
            f"--threshold_rule must be one of {', '.join(metrics_lib.THRESHOLD_RULES)}; "
            f"got {rule!r}"
        )
    selected = cfg.train.threshold_tasks
    if not selected:
        return
    tasks = list(info_lib.load_dataset_info(cfg.data.dataset_dir)["tasks"])
    unknown = [t for t in selected if t not in tasks]
    if unknown:
        raise ValueError(
            f"--threshold_tasks names tasks {unknown} that {cfg.data.dataset_dir} does not have; "
            f"its tasks are: {', '.join(tasks)}"
        )
    repeated = sorted({t for t in selected if selected.count(t) > 1})
    if repeated:
        raise ValueError(f"--threshold_tasks names {repeated} more than once")


@contextlib.contextmanager
def _precision(precision: str) -> Iterator[None]:
    """Sets Keras' global dtype policy for the duration of a run."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_history(workdir: str) -> list[dict[str, Any]]:
    """The eval records of a workdir's `eval_history.jsonl` (empty list if none)."""
    path = os.path.join(workdir, HISTORY_FILE)
    if not os.path.exists(path):
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    # A line cut by a kill while being written; every later line is lost too.
                    logging.warning("%s: dropping a truncated line", path)
                    break
    return records


def _check_workdir(cfg: config_lib.RunConfig) -> dict[str, Any] | None:
    """Refuses a workdir with another config; returns results of a finished identical run."""
    workdir = cfg.train.workdir
    config_path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(config_path):
        return None
    try:
        with open(config_path, encoding="utf-8") as f:
            existing = _parse_stored_config(f.read())
    except (ValueError, TypeError) as err:
        raise WorkdirConflictError(f"{config_path} is not a run configuration: {err}") from None
    if existing != cfg:
        old, new = existing.to_dict(), cfg.to_dict()
        diffs = [
            f"{section}.{key}: {old[section].get(key)!r} -> {new[section].get(key)!r}"
            for section in new
            for key in new[section]
            if old[section].get(key) != new[section].get(key)
        ]
        backups = os.path.join(workdir, CHECKPOINTS_DIR)
        hint = ""
        if not (os.path.isdir(backups) and os.listdir(backups)):
            hint = (
                f"; that run holds no backup (it stopped before its first one), so deleting "
                f"{workdir} loses nothing worth resuming"
            )
        raise WorkdirConflictError(
            f"--workdir={workdir} already holds a run with a different configuration "
            f"({'; '.join(diffs)}); use a new workdir{hint}"
        )
    results_path = os.path.join(workdir, RESULTS_FILE)
    if os.path.exists(results_path):
        return _read_json(results_path)
    return None


class _Run:
    """The state of one training run; `train_and_evaluate` drives it."""

    def __init__(self, cfg: config_lib.RunConfig) -> None:
        from transfusion_tf.data import info as info_lib

        self.cfg = cfg
        self.workdir = cfg.train.workdir
        self.info = info_lib.load_dataset_info(cfg.data.dataset_dir)
        self.tasks = list(self.info["tasks"])
        if cfg.model.num_tasks != len(self.tasks):
            raise ValueError(
                f"the model has {cfg.model.num_tasks} outputs but --dataset_dir="
                f"{cfg.data.dataset_dir} has {len(self.tasks)} tasks"
            )
        self.strategy = strategy_lib.make_strategy(cfg.train.strategy)
        strategy_lib.check_batch_size(self.strategy, cfg.data.batch_size)
        self.chief = strategy_lib.is_chief(self.strategy)
        self.path = lambda name: os.path.join(self.workdir, name)
        self.claimed = False
        self.warnings: list[dict[str, str]] = []
        train_examples = cfg.data.train_examples
        what = f"the --train_examples={train_examples} subset"
        if train_examples is None:
            train_examples = int(self.info["splits"]["train"]["num_examples"])
            what = f"the train split of {cfg.data.dataset_dir}"
        self.warn(
            health.batch_warning(
                batch_size=cfg.data.batch_size, train_examples=train_examples, what=what
            )
        )

    def warn(self, warning: dict[str, str] | None) -> None:
        """Logs a `health` warning and keeps it for `results.json` (None: nothing to say)."""
        if warning is not None and warning not in self.warnings:
            logging.warning("%s: %s", self.workdir, warning["message"])
            self.warnings.append(warning)

    # -- building ---------------------------------------------------------------------------
    def build(self) -> None:
        from transfusion_tf.models import registry as model_registry

        cfg = self.cfg
        with self.strategy.scope():
            self.model = model_registry.build_model(
                cfg.model.name,
                num_tasks=cfg.model.num_tasks,
                image_size=cfg.model.image_size,
                channels=cfg.model.channels,
                widths=cfg.model.widths,
                width_multiplier=cfg.model.width_multiplier,
            )
            self.schedule = optim.WarmupSchedule(
                name=cfg.train.lr_schedule,
                learning_rate=cfg.train.learning_rate,
                train_steps=cfg.train.train_steps,
                warmup_steps=cfg.train.warmup_steps,
            )
            self.optimizer = optim.make_optimizer(
                name=cfg.train.optimizer,
                learning_rate=self.schedule,
                momentum=cfg.train.momentum,
                weight_decay=cfg.train.weight_decay,
                precision=cfg.train.precision,
            )
            self.optimizer.build(self.model.trainable_variables)
        # A plain host variable: the step counter is assigned from the host after each loop.
        self.step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="train_step")
        self.backups = ckpt_lib.BackupManager(
            workdir=self.workdir,
            model=self.model,
            optimizer=self.optimizer,
            step=self.step_var,
            chief=self.chief,
            worker_id=strategy_lib.worker_id(self.strategy),
        )
        self.preprocess_mode = model_registry.default_preprocess_mode(cfg.model.name)
        # The augmentation runs in the train step, on the accelerator, except on TPUs, where
        # the step is compiled by XLA, which has no kernel for crop_and_resize: there the
        # input pipeline augments.
        self.defer_augment = not isinstance(self.strategy, tf.distribute.TPUStrategy)
        try:
            units = model_registry.get_units(cfg.model.name)
            self.conv1_layers = tuple(units[0].layers) if units else ()
        except (KeyError, ValueError):
            self.conv1_layers = ()

    def initialize(self) -> dict[str, Any]:
        """Applies the init strategy; writes init weights, report and config (chief only)."""
        from transfusion_tf.init import registry as init_registry

        with self.strategy.scope():
            report = init_registry.initialize(
                self.model, model_name=self.cfg.model.name, init=self.cfg.init
            )
        if self.chief:
            os.makedirs(self.workdir, exist_ok=True)
            ckpt_lib.write_text_atomic(self.path(INIT_REPORT_FILE), report.to_json())
            ckpt_lib.save_weights_atomic(self.model, self.path(INIT_WEIGHTS))
            self.summaries.text(0, "init/report", report.summary())
            self.summaries.filters(0, summaries_lib.conv1_kernel(self.model, self.conv1_layers))
        return report.to_dict()

    def datasets(self, start_step: int) -> tuple[Any, tf.data.Dataset]:
        from transfusion_tf.data import pipeline

        cfg = self.cfg
        data = cfg.data

        def train_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
            return pipeline.build_dataset(
                dataset_dir=data.dataset_dir,
                split="train",
                batch_size=data.batch_size,
                image_size=data.image_size,
                channels=cfg.model.channels,
                preprocess_mode=self.preprocess_mode,
                training=True,
                seed=data.seed + start_step,
                augment=data.augment,
                defer_augment=self.defer_augment,
                train_examples=data.train_examples,
                subset_seed=data.subset_seed,
                balanced=data.balanced,
                cache=data.cache,
                deterministic=data.deterministic,
                shuffle_buffer=data.shuffle_buffer,
                input_context=input_context,
            )

        self.train_subset_sha256 = self.record_train_subset(start_step)
        train = self.strategy.distribute_datasets_from_function(train_fn)
        valid = pipeline.build_dataset(
            dataset_dir=data.dataset_dir,
            split="valid",
            batch_size=data.batch_size,
            image_size=data.image_size,
            channels=cfg.model.channels,
            preprocess_mode=self.preprocess_mode,
            training=False,
            seed=data.seed,
            augment="none",
            cache=data.cache,
            deterministic=True,
        )
        return train, valid

    def record_train_subset(self, start_step: int) -> str | None:
        """Writes the `--train_examples` subset's ids (chief); returns their SHA-256.

        A resumed run must draw the ids it started with: a different subset (the dataset was
        rewritten under the run) is an error, not a silent change of the experiment.
        """
        from transfusion_tf.data import pipeline

        data = self.cfg.data
        if data.train_examples is None:
            return None
        ids = pipeline.train_subset_ids(
            data.dataset_dir, num_examples=data.train_examples, subset_seed=data.subset_seed
        )
        text = "".join(i.decode("utf-8") + "\n" for i in ids)
        path = self.path(TRAIN_SUBSET_FILE)
        if start_step > 0 and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                if f.read() != text:
                    raise ValueError(
                        f"--train_examples={data.train_examples} --subset_seed="
                        f"{data.subset_seed} now draws other examples of {data.dataset_dir} "
                        f"than {path} lists for this run (was the dataset rewritten?); "
                        "use a new --workdir"
                    )
        if self.chief:
            ckpt_lib.write_text_atomic(path, text)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    # -- evaluation -------------------------------------------------------------------------
    def evaluate(self, step: int, valid: tf.data.Dataset) -> dict[str, Any]:
        """One eval record; its loss is the training loss function over the whole split."""
        loss = self.cfg.train.loss
        out = loop_lib.predict_dataset(self.predict, valid)  # self.predict gives logits
        labels, logits, mask = out["labels"], out["scores"], out["mask"]
        scores = losses_lib.probabilities(logits, loss=loss).numpy()
        self.last_predictions = (int(step), {**out, "scores": scores})
        report = metrics_lib.auc_report(labels=labels, scores=scores, mask=mask, tasks=self.tasks)
        record = {
            "step": int(step),
            "auc": report["auc"],
            "auc_mean": report["auc_mean"],
            "auprc": report["auprc"],
            "auprc_mean": report["auprc_mean"],
            "loss": losses_lib.mean_loss(
                loss,
                labels=labels,
                logits=logits,
                mask=mask,
                class_weights=self.cfg.train.class_weights,
            ),
            "num_examples": int(labels.shape[0]),
        }
        if loss == "softmax":
            record.update(metrics_lib.accuracy_report(labels=labels, scores=scores, mask=mask))
        return record


def _hparams(cfg: config_lib.RunConfig) -> dict[str, Any]:
    return {
        "model": cfg.model.name,
        "init": cfg.init.name,
        "transfuse_upto": cfg.init.transfuse_upto,
        "lr": cfg.train.learning_rate,
        "dataset": os.path.basename(os.path.normpath(cfg.data.dataset_dir)),
        "seed": cfg.train.seed,
    }


def train_and_evaluate(cfg: config_lib.RunConfig) -> dict[str, Any]:
    """Trains one run and evaluates it on the validation split; returns `results.json`'s dict.

    Args:
      cfg: the resolved run configuration (`model.num_tasks` must equal the dataset's tasks).

    Returns:
      The results dict written to `results.json` (keys in the module docstring).

    Raises:
      ValueError / FileNotFoundError naming the flag or file for bad settings,
      WorkdirConflictError for a workdir of another run, loop.NonFiniteLossError on NaN loss.
    """
    validate_config(cfg)
    cfg = resolve_config(cfg)
    finished = _check_workdir(cfg)
    if finished is not None:
        logging.info(
            "%s already holds a finished run with this configuration (final mean AUC %s); "
            "nothing to do",
            cfg.train.workdir,
            finished.get("final_auc_mean"),
        )
        return finished
    keras.utils.set_random_seed(cfg.train.seed)
    if cfg.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    wall_start = time.perf_counter()
    created = not os.path.exists(cfg.train.workdir)
    with _precision(cfg.train.precision):
        run = _Run(cfg)
        run.summaries = summaries_lib.RunSummaries(cfg.train.workdir, enabled=run.chief)
        try:
            return _train(run, wall_start)
        finally:
            run.summaries.close()
            if hasattr(run, "backups"):
                run.backups.close()
            if created and run.chief and not run.claimed:
                # Failed before training started: the folder holds only this attempt's files
                # (TensorBoard events, init report), nothing a corrected command needs.
                shutil.rmtree(cfg.train.workdir, ignore_errors=True)


def _non_finite_message(run: _Run, loss: float, start: int, end: int) -> str:
    """What a NaN/inf training loss means for this workdir, and what to do."""
    tc = run.cfg.train
    what = (
        f"training loss became {loss} between steps {start} and {end} "
        f"(--learning_rate={tc.learning_rate}, --optimizer={tc.optimizer})"
    )
    latest = run.backups.latest
    if latest is None:
        return (
            f"{what}; no backup was written yet, so nothing of it is kept: lower "
            f"--learning_rate and train again after deleting {run.workdir} (or in a new "
            "--workdir)"
        )
    return (
        f"{what}; the newest backup, {latest}, holds the weights from before it; lower "
        "--learning_rate and train again in a new --workdir (rerunning this command would "
        "resume with the same settings)"
    )


def _train(run: _Run, wall_start: float) -> dict[str, Any]:
    cfg = run.cfg
    tc = cfg.train
    run.build()
    resumed = run.backups.restore_latest()
    step = int(run.step_var.numpy())
    if resumed:
        logging.info("resuming %s at step %d of %d", run.workdir, step, tc.train_steps)
        init_report = _read_json(run.path(INIT_REPORT_FILE))
    else:
        init_report = run.initialize()
    if run.chief:
        run.summaries.hparams(_hparams(cfg), trial_id=os.path.basename(run.workdir.rstrip("/")))

    history = [r for r in read_history(run.workdir) if r["step"] <= step]
    if run.chief:
        ckpt_lib.write_text_atomic(
            run.path(HISTORY_FILE), "".join(json.dumps(r) + "\n" for r in history)
        )
    best = max(
        (r for r in history if r.get("auc_mean") is not None),
        key=lambda r: r["auc_mean"],
        default=None,
    )
    best_auc, best_step = (best["auc_mean"], best["step"]) if best else (None, None)

    train_ds, valid_ds = run.datasets(step)
    iterator = iter(train_ds)
    train_loop = loop_lib.make_train_loop(
        strategy=run.strategy,
        model=run.model,
        optimizer=run.optimizer,
        global_batch_size=cfg.data.batch_size,
        loss=tc.loss,
        class_weights=tc.class_weights,
        prepare_batch=pipeline_lib.deferred_augment(
            image_size=cfg.data.image_size,
            preprocess_mode=run.preprocess_mode,
            augment=cfg.data.augment,
        )
        if run.defer_augment
        else None,
    )
    run.predict = loop_lib.make_logits_fn(run.model)
    run.last_predictions = None
    conv1 = run.conv1_layers

    def evaluate(at_step: int) -> dict[str, Any]:
        """`run.evaluate` of the validation split, which must read whole and as listed."""
        with verify_lib.data_loss_errors(dataset_dir=cfg.data.dataset_dir, split="valid"):
            record = run.evaluate(at_step, valid_ds)
        verify_lib.check_pass_count(
            dataset_dir=cfg.data.dataset_dir, split="valid", read=record["num_examples"]
        )
        return record

    # The workdir is claimed only now: a run that failed while building the model, loading
    # its source or opening the data left no config.json to refuse the corrected command.
    if run.chief:
        os.makedirs(run.workdir, exist_ok=True)
        ckpt_lib.write_text_atomic(run.path(CONFIG_FILE), cfg.to_json() + "\n")
    run.claimed = True

    def record_eval(at_step: int) -> None:
        """Evaluates the current weights and records them (history, TensorBoard, best)."""
        nonlocal best_auc, best_step
        record = evaluate(at_step)
        history.append(record)
        logging.info(
            "eval step %d mean AUC %s per task %s", at_step, record["auc_mean"], record["auc"]
        )
        if run.chief:
            run.summaries.eval_scalars(at_step, record)
            if at_step > 0:  # the filters at step 0 were written with the init report
                run.summaries.filters(at_step, summaries_lib.conv1_kernel(run.model, conv1))
            with open(run.path(HISTORY_FILE), "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if record["auc_mean"] is not None and (best_auc is None or record["auc_mean"] > best_auc):
            best_auc, best_step = record["auc_mean"], at_step
            if run.chief:
                ckpt_lib.save_weights_atomic(run.model, run.path(BEST_WEIGHTS))

    # The init is evaluated too (step 0, before any update), once: a run resumed before its
    # first backup re-creates the same init and finds the step-0 record in the history.
    if step == 0 and not any(r["step"] == 0 for r in history):
        record_eval(0)
        run.summaries.flush()

    # Steady state starts after the first loop call (which traces the tf.function); it counts
    # everything after it: input waits, evals, backups, summaries and logging.
    train_seconds, train_images, first_loop = 0.0, 0, True
    steady_start, steady_first_step = None, None
    while step < tc.train_steps:
        n = min(
            tc.steps_per_loop,
            tc.train_steps - step,
            tc.eval_every_steps - step % tc.eval_every_steps,
            tc.checkpoint_every_steps - step % tc.checkpoint_every_steps,
        )
        t0 = time.perf_counter()
        with verify_lib.data_loss_errors(dataset_dir=cfg.data.dataset_dir, split="train"):
            loss = float(train_loop(iterator, tf.constant(n, tf.int32)))
        elapsed = time.perf_counter() - t0
        if not math.isfinite(loss):
            raise loop_lib.NonFiniteLossError(_non_finite_message(run, loss, step, step + n))
        step += n
        run.step_var.assign(step)
        images_per_second = n * cfg.data.batch_size / max(elapsed, 1e-9)
        if not first_loop:  # the first call traces the tf.function: not steady state
            train_seconds += elapsed
            train_images += n * cfg.data.batch_size
        else:
            steady_start, steady_first_step = time.perf_counter(), step
        first_loop = False
        lr = float(run.schedule(run.optimizer.iterations))
        logging.info(
            "step %d/%d loss %.4f lr %.4g %.1f img/s",
            step,
            tc.train_steps,
            loss,
            lr,
            images_per_second,
        )
        run.summaries.scalars(
            step,
            {
                "train/loss": loss,
                "train/learning_rate": lr,
                "perf/images_per_second": images_per_second,
            },
        )
        evaluated = step % tc.eval_every_steps == 0 or step == tc.train_steps
        if evaluated:
            record_eval(step)
        if evaluated or step % tc.checkpoint_every_steps == 0 or step == tc.train_steps:
            run.backups.save(step)
        run.summaries.flush()

    steady_seconds = time.perf_counter() - steady_start if steady_start is not None else 0.0
    steady_images = (step - steady_first_step) * cfg.data.batch_size if steady_start else 0
    if run.chief:
        ckpt_lib.save_weights_atomic(run.model, run.path(FINAL_WEIGHTS))
        if best_step is None:
            # No defined AUC ever (e.g. a single-class validation split): best = final.
            ckpt_lib.save_weights_atomic(run.model, run.path(BEST_WEIGHTS))
    final = history[-1] if history else evaluate(step)
    if run.last_predictions is None or run.last_predictions[0] != step:
        # Resumed after the final eval was recorded: predict again with the final weights.
        evaluate(step)
    if run.chief:
        out = run.last_predictions[1]
        predictions_lib.save_predictions(
            run.path(predictions_lib.VALID_PREDICTIONS_FILE),
            labels=out["labels"],
            scores=out["scores"],
            mask=out["mask"],
            example_id=out["example_id"],
            tasks=run.tasks,
            step=step,
        )
    crossings = metrics_lib.threshold_crossings(
        history, tc.auc_thresholds, rule=tc.threshold_rule, tasks=tc.threshold_tasks
    )
    for warning in health.run_warnings(history):
        run.warn(warning)
    results = {
        "final_auc": final["auc"],
        "final_auc_mean": final["auc_mean"],
        "final_auprc": final["auprc"],
        "final_auprc_mean": final["auprc_mean"],
        "best_auc_mean": best_auc,
        "best_step": best_step,
        "steps_to_threshold": {t: c["step"] for t, c in crossings.items()},
        "steps_to_threshold_interpolated": {t: c["interpolated"] for t, c in crossings.items()},
        "steps_to_threshold_censored": {t: c["censored"] for t, c in crossings.items()},
        "threshold_rule": tc.threshold_rule,
        "threshold_tasks": list(tc.threshold_tasks),
        "auc_curve_area": metrics_lib.auc_curve_area(history, tasks=tc.threshold_tasks),
        "examples_per_second": (
            steady_images / steady_seconds if steady_images and steady_seconds > 0 else None
        ),
        "train_loop_examples_per_second": (
            train_images / train_seconds if train_seconds > 0 else None
        ),
        "wall_seconds": time.perf_counter() - wall_start,
        "versions": versions(),
        "seed": tc.seed,
        "source_sha256": init_report.get("source_sha256"),
        "model": cfg.model.name,
        "init": cfg.init.name,
        "tasks": run.tasks,
        "train_steps": step,
        "dataset_dir": cfg.data.dataset_dir,
        "strategy": strategy_lib.resolve_strategy_name(tc.strategy),
        "num_replicas": run.strategy.num_replicas_in_sync,
        "precision": tc.precision,
        "resumed": bool(resumed),
        "train_subset_sha256": run.train_subset_sha256,
        "loss_function": tc.loss,
        "final_top1_accuracy": final.get("top1_accuracy"),
        "final_top5_accuracy": final.get("top5_accuracy"),
        "warnings": list(run.warnings),
    }
    if run.chief:
        ckpt_lib.write_text_atomic(
            run.path(RESULTS_FILE), json.dumps(results, indent=2, sort_keys=True) + "\n"
        )
        logging.info("finished %s: final mean AUC %s", run.workdir, results["final_auc_mean"])
    return results


WEIGHT_CHOICES = ("final", "best", "init")


def load_run_config(workdir: str) -> config_lib.RunConfig:
    """The `config.json` of a workdir; FileNotFoundError / ValueError name the file."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: {workdir} is not a transfusion-train workdir")
    try:
        with open(path, encoding="utf-8") as f:
            return _parse_stored_config(f.read())
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path} is not a valid run configuration: {err}") from None


def load_run_model(
    workdir: str, *, weights: str = "final"
) -> tuple[config_lib.RunConfig, keras.Model]:
    """Rebuilds a run's model from `config.json` and loads `weights/<weights>.weights.h5`.

    Returns:
      (config, model) where the model maps float32 [B, S, S, C] to logits [B, T].
    """
    from transfusion_tf.models import registry as model_registry

    if weights not in WEIGHT_CHOICES:
        raise ValueError(f"--weights must be one of {', '.join(WEIGHT_CHOICES)}; got {weights!r}")
    cfg = load_run_config(workdir)
    path = weights_path(workdir, weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path} (has the run finished?)")
    model = model_registry.build_model(
        cfg.model.name,
        num_tasks=cfg.model.num_tasks,
        image_size=cfg.model.image_size,
        channels=cfg.model.channels,
        widths=cfg.model.widths,
        width_multiplier=cfg.model.width_multiplier,
    )
    model.load_weights(path)
    return cfg, model
