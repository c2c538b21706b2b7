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
import shutil
import time
from collections.abc import Iterator, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from transfusion_tf import config as config_lib
from transfusion_tf import workdir as workdir_lib
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


class WorkdirConflictError(ValueError):
    """The workdir already holds a run with a different configuration."""


# --- checks before anything is built ----------------------------------------------------


def _check_choice(field: str, value: Any, choices: Sequence[str]) -> None:
    """ConfigError naming `field` ("TrainConfig.optimizer") when `value` is not a choice."""
    if value not in choices:
        raise config_lib.ConfigError(f"{field} must be one of {', '.join(choices)}; got {value!r}")


def _check_names(cfg: config_lib.RunConfig) -> None:
    """Checks the fields that name an entry of a registry owned by another package."""
    from transfusion_tf.init import registry as init_registry
    from transfusion_tf.models import registry as model_registry

    for field, value, registry in (
        ("ModelConfig.name", cfg.model.name, model_registry.MODELS),
        ("InitConfig.name", cfg.init.name, init_registry.INITS),
    ):
        if value not in registry:
            raise config_lib.ConfigError(
                f"{field}={value!r} is unknown; choose one of: {', '.join(registry.names())}"
            )
    init_registry.validate_init_config(cfg.init)
    tc = cfg.train
    _check_choice("TrainConfig.strategy", tc.strategy, strategy_lib.STRATEGIES)
    _check_choice("TrainConfig.lr_schedule", tc.lr_schedule, optim.SCHEDULES)
    _check_choice("TrainConfig.optimizer", tc.optimizer, optim.OPTIMIZERS)
    _check_choice("TrainConfig.precision", tc.precision, optim.PRECISIONS)
    _check_choice("TrainConfig.threshold_rule", tc.threshold_rule, metrics_lib.THRESHOLD_RULES)


def _check_dataset(cfg: config_lib.RunConfig) -> None:
    """Checks the fields that must agree with the dataset: its task count and task names."""
    from transfusion_tf.data import info as info_lib

    data_dir = cfg.data.dataset_dir
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"DataConfig.dataset_dir: directory not found: {data_dir}")
    tasks = list(info_lib.load_dataset_info(data_dir)["tasks"])
    if cfg.model.num_tasks != len(tasks):
        raise config_lib.ConfigError(
            f"ModelConfig.num_tasks={cfg.model.num_tasks} (the model's outputs) but "
            f"DataConfig.dataset_dir={data_dir} has {len(tasks)} tasks"
        )
    unknown = [t for t in cfg.train.threshold_tasks if t not in tasks]
    if unknown:
        raise config_lib.ConfigError(
            f"TrainConfig.threshold_tasks names tasks {unknown} that {data_dir} does not have; "
            f"its tasks are: {', '.join(tasks)}"
        )


def validate_config(cfg: config_lib.RunConfig) -> None:
    """Checks a run configuration before anything is built.

    Raises ConfigError (a ValueError) naming the config field (`TrainConfig.learning_rate`),
    FileNotFoundError for a missing dataset directory.
    """
    cfg.validate()
    _check_names(cfg)
    _check_dataset(cfg)
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
        dataset=f"DataConfig.dataset_dir={cfg.data.dataset_dir}",
    )
    return cfg.replace(train=cfg.train.replace(loss=loss))


def _check_workdir(cfg: config_lib.RunConfig) -> dict[str, Any] | None:
    """Refuses a workdir with another config; returns results of a finished identical run."""
    workdir = cfg.train.workdir
    if not os.path.exists(os.path.join(workdir, workdir_lib.CONFIG_FILE)):
        return None
    try:
        existing = workdir_lib.read_config(workdir)
    except workdir_lib.WorkdirError as err:
        raise WorkdirConflictError(str(err)) from None
    if existing != cfg:
        old, new = existing.to_dict(), cfg.to_dict()
        diffs = [
            f"{section}.{key}: {old[section].get(key)!r} -> {new[section].get(key)!r}"
            for section in new
            for key in new[section]
            if old[section].get(key) != new[section].get(key)
        ]
        backups = os.path.join(workdir, workdir_lib.CHECKPOINTS_DIR)
        hint = ""
        if not (os.path.isdir(backups) and os.listdir(backups)):
            hint = (
                f"; that run holds no backup (it stopped before its first one), so deleting "
                f"{workdir} loses nothing worth resuming"
            )
        raise WorkdirConflictError(
            f"TrainConfig.workdir={workdir} already holds a run with a different configuration "
            f"({'; '.join(diffs)}); use a new workdir{hint}"
        )
    return workdir_lib.read_results(workdir)


# --- pieces of a run ---------------------------------------------------------------------


@contextlib.contextmanager
def _precision(precision: str) -> Iterator[None]:
    """Sets Keras' global dtype policy for the duration of a run."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _hparams(cfg: config_lib.RunConfig) -> dict[str, Any]:
    return {
        "model": cfg.model.name,
        "init": cfg.init.name,
        "transfuse_upto": cfg.init.transfuse_upto,
        "lr": cfg.train.learning_rate,
        "dataset": os.path.basename(os.path.normpath(cfg.data.dataset_dir)),
        "seed": cfg.train.seed,
    }


def eval_record(
    *,
    predict: Any,
    valid: tf.data.Dataset,
    step: int,
    loss: str,
    class_weights: Sequence[float] | None,
    tasks: Sequence[str],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One eval record of the validation split, and the predictions it was computed from.

    Args:
      predict: images [B, S, S, C] -> logits [B, T] (`loop.make_logits_fn`).
      valid: the validation split's batches ({"image", "labels", "mask", "example_id"}).
      loss: the resolved training loss ("sigmoid" | "softmax"): the record's loss is that
        function over the whole split, and its probabilities turn logits into scores.

    Returns:
      (record, predictions): predictions holds labels, mask [N, T], scores (probabilities
      [N, T]) and example_id [N].
    """
    out = loop_lib.predict_dataset(predict, valid)
    labels, logits, mask = out["labels"], out["scores"], out["mask"]
    scores = losses_lib.probabilities(logits, loss=loss).numpy()
    report = metrics_lib.auc_report(labels=labels, scores=scores, mask=mask, tasks=list(tasks))
    record = {
        "step": int(step),
        "auc": report["auc"],
        "auc_mean": report["auc_mean"],
        "auprc": report["auprc"],
        "auprc_mean": report["auprc_mean"],
        "loss": losses_lib.mean_loss(
            loss, labels=labels, logits=logits, mask=mask, class_weights=class_weights
        ),
        "num_examples": int(labels.shape[0]),
    }
    if loss == "softmax":
        record.update(metrics_lib.accuracy_report(labels=labels, scores=scores, mask=mask))
    return record, {**out, "scores": scores}


class _Throughput:
    """Images per second (SPEC T7). The first loop call traces the tf.function: the steady
    state starts after it and counts everything (input waits, evals, backups, logging); the
    loop rate counts the time inside later loop calls only."""

    def __init__(self) -> None:
        self._loop_seconds, self._loop_images = 0.0, 0
        self._steady_start: float | None = None
        self._steady_first_step = 0

    def loop_done(self, *, elapsed: float, images: int, step: int) -> None:
        """Counts one loop call that ended at `step`."""
        if self._steady_start is None:
            self._steady_start, self._steady_first_step = time.perf_counter(), step
        else:
            self._loop_seconds += elapsed
            self._loop_images += images

    def rates(self, *, step: int, batch_size: int) -> dict[str, float | None]:
        """`examples_per_second` and `train_loop_examples_per_second` up to now."""
        steady_seconds, steady_images = 0.0, 0
        if self._steady_start is not None:
            steady_seconds = time.perf_counter() - self._steady_start
            steady_images = (step - self._steady_first_step) * batch_size
        return {
            "examples_per_second": (
                steady_images / steady_seconds if steady_images and steady_seconds > 0 else None
            ),
            "train_loop_examples_per_second": (
                self._loop_images / self._loop_seconds if self._loop_seconds > 0 else None
            ),
        }


class Trainer:
    """One training run of a validated, resolved RunConfig; `run` drives it once, `close`
    releases its writers. Each method does one step of the run; the run's state (model,
    step, history, best eval) changes only through them."""

    def __init__(self, cfg: config_lib.RunConfig) -> None:
        from transfusion_tf.data import info as info_lib

        self.cfg = cfg
        self.workdir = cfg.train.workdir
        self.info = info_lib.load_dataset_info(cfg.data.dataset_dir)
        self.tasks = list(self.info["tasks"])
        self.strategy = strategy_lib.make_strategy(cfg.train.strategy)
        strategy_lib.check_batch_size(self.strategy, cfg.data.batch_size)
        self.chief = strategy_lib.is_chief(self.strategy)
        self.claimed = False  # config.json written: the workdir is this run's
        self.warnings: list[dict[str, str]] = []
        self.summaries = summaries_lib.RunSummaries(self.workdir, enabled=self.chief)
        self._backups: ckpt_lib.BackupManager | None = None
        self._history: list[dict[str, Any]] = []
        self._best: dict[str, Any] | None = None  # the eval record of the best mean AUC
        self._last_predictions: tuple[int, dict[str, np.ndarray]] | None = None
        self._throughput = _Throughput()
        self.step = 0
        self.train_subset_sha256: str | None = None
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

    def path(self, name: str) -> str:
        """A file of the run record (a `workdir` name) in this run's workdir."""
        return os.path.join(self.workdir, name)

    def warn(self, warning: dict[str, str] | None) -> None:
        """Logs a `health` warning and keeps it for `results.json` (None: nothing to say)."""
        if warning is not None and warning not in self.warnings:
            logging.warning("%s: %s", self.workdir, warning["message"])
            self.warnings.append(warning)

    def close(self) -> None:
        """Closes the TensorBoard writers and the backup manager."""
        self.summaries.close()
        if self._backups is not None:
            self._backups.close()

    # -- the run ----------------------------------------------------------------------------
    def run(self, *, wall_start: float) -> dict[str, Any]:
        """Builds, restores or initialises, trains to `train_steps`; returns the results."""
        tc = self.cfg.train
        self._build()
        resumed, init_report = self._restore()
        self._open_history()
        self._open_data()
        self._claim()
        # The init is evaluated too (step 0, before any update), once: a run resumed before
        # its first backup re-creates the same init and finds the step-0 record in the history.
        if self.step == 0 and not any(r["step"] == 0 for r in self._history):
            self._record_eval()
            self.summaries.flush()
        while self.step < tc.train_steps:
            self._train_loop_call()
            evaluated = self._maybe_eval()
            self._maybe_backup(evaluated=evaluated)
            self.summaries.flush()
        rates = self._throughput.rates(step=self.step, batch_size=self.cfg.data.batch_size)
        return self._finish(
            resumed=resumed, init_report=init_report, rates=rates, wall_start=wall_start
        )

    def _build(self) -> None:
        """The model, optimizer, step counter and backups, in the strategy's scope."""
        from transfusion_tf.models import registry as model_registry

        cfg = self.cfg
        with self.strategy.scope():
            self.model = workdir_lib.build_model(cfg)
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
        self._backups = ckpt_lib.BackupManager(
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

    def _restore(self) -> tuple[bool, dict[str, Any]]:
        """Restores the latest backup, or initialises; returns (resumed, the init report)."""
        resumed = self._backups.restore_latest()
        self.step = int(self.step_var.numpy())
        if resumed:
            logging.info(
                "resuming %s at step %d of %d", self.workdir, self.step, self.cfg.train.train_steps
            )
            init_report = workdir_lib.read_json(self.path(workdir_lib.INIT_REPORT_FILE))
        else:
            init_report = self._initialize()
        if self.chief:
            trial_id = os.path.basename(self.workdir.rstrip("/"))
            self.summaries.hparams(_hparams(self.cfg), trial_id=trial_id)
        return bool(resumed), init_report

    def _initialize(self) -> dict[str, Any]:
        """Applies the init strategy; writes init weights, report and filters (chief only)."""
        from transfusion_tf.init import registry as init_registry

        with self.strategy.scope():
            report = init_registry.initialize(
                self.model, model_name=self.cfg.model.name, init=self.cfg.init
            )
        if self.chief:
            os.makedirs(self.workdir, exist_ok=True)
            workdir_lib.write_text_atomic(self.path(workdir_lib.INIT_REPORT_FILE), report.to_json())
            ckpt_lib.save_weights_atomic(self.model, self.path(workdir_lib.INIT_WEIGHTS))
            self.summaries.text(0, "init/report", report.summary())
            self.summaries.filters(0, summaries_lib.conv1_kernel(self.model, self.conv1_layers))
        return report.to_dict()

    def _open_history(self) -> None:
        """The eval records up to the restored step (later ones are redone); the best one."""
        self._history = [
            r for r in workdir_lib.read_history(self.workdir) if r["step"] <= self.step
        ]
        if self.chief:
            workdir_lib.write_text_atomic(
                self.path(workdir_lib.HISTORY_FILE),
                "".join(json.dumps(r) + "\n" for r in self._history),
            )
        self._best = max(
            (r for r in self._history if r.get("auc_mean") is not None),
            key=lambda r: r["auc_mean"],
            default=None,
        )

    def _open_data(self) -> None:
        """The input pipelines from the current step, the train loop and the predict fn."""
        cfg = self.cfg
        train_ds, self._valid = self._datasets(self.step)
        self._iterator = iter(train_ds)
        self._train_loop = loop_lib.make_train_loop(
            strategy=self.strategy,
            model=self.model,
            optimizer=self.optimizer,
            global_batch_size=cfg.data.batch_size,
            loss=cfg.train.loss,
            class_weights=cfg.train.class_weights,
            prepare_batch=pipeline_lib.deferred_augment(
                image_size=cfg.model.image_size,
                preprocess_mode=self.preprocess_mode,
                augment=cfg.data.augment,
            )
            if self.defer_augment
            else None,
        )
        self._predict = loop_lib.make_logits_fn(self.model)

    def _claim(self) -> None:
        """Writes `config.json`. Only now: a run that failed while building the model, loading
        its source or opening the data left no config.json to refuse the corrected command."""
        if self.chief:
            os.makedirs(self.workdir, exist_ok=True)
            workdir_lib.write_text_atomic(
                self.path(workdir_lib.CONFIG_FILE), self.cfg.to_json() + "\n"
            )
        self.claimed = True

    def _datasets(self, start_step: int) -> tuple[Any, tf.data.Dataset]:
        """(the distributed train split from `start_step`'s seed, the validation split)."""
        from transfusion_tf.data import pipeline

        cfg = self.cfg
        data = cfg.data

        def train_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
            return pipeline.build_dataset(
                dataset_dir=data.dataset_dir,
                split="train",
                batch_size=data.batch_size,
                image_size=cfg.model.image_size,
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

        self.train_subset_sha256 = self._record_train_subset(start_step)
        train = self.strategy.distribute_datasets_from_function(train_fn)
        valid = pipeline.build_dataset(
            dataset_dir=data.dataset_dir,
            split="valid",
            batch_size=data.batch_size,
            image_size=cfg.model.image_size,
            channels=cfg.model.channels,
            preprocess_mode=self.preprocess_mode,
            training=False,
            seed=data.seed,
            augment="none",
            cache=data.cache,
            deterministic=True,
        )
        return train, valid

    def _record_train_subset(self, start_step: int) -> str | None:
        """Writes the `train_examples` subset's ids (chief); returns their SHA-256.

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
        path = self.path(workdir_lib.TRAIN_SUBSET_FILE)
        if start_step > 0 and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                if f.read() != text:
                    raise ValueError(
                        f"DataConfig.train_examples={data.train_examples} "
                        f"DataConfig.subset_seed={data.subset_seed} now draws other examples "
                        f"of {data.dataset_dir} than {path} lists for this run (was the dataset "
                        "rewritten?); use a new TrainConfig.workdir"
                    )
        if self.chief:
            workdir_lib.write_text_atomic(path, text)
        # The SHA-256 of the file's text, which a worker other than the chief does not write.
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    # -- steps ------------------------------------------------------------------------------
    def _train_loop_call(self) -> None:
        """Trains up to the next eval, backup or loop boundary; logs loss, lr and speed."""
        tc, batch_size = self.cfg.train, self.cfg.data.batch_size
        step = self.step
        n = min(
            tc.steps_per_loop,
            tc.train_steps - step,
            tc.eval_every_steps - step % tc.eval_every_steps,
            tc.checkpoint_every_steps - step % tc.checkpoint_every_steps,
        )
        t0 = time.perf_counter()
        with verify_lib.data_loss_errors(dataset_dir=self.cfg.data.dataset_dir, split="train"):
            loss = float(self._train_loop(self._iterator, tf.constant(n, tf.int32)))
        elapsed = time.perf_counter() - t0
        if not math.isfinite(loss):
            raise loop_lib.NonFiniteLossError(self._non_finite_message(loss, step, step + n))
        self.step = step + n
        self.step_var.assign(self.step)
        self._throughput.loop_done(elapsed=elapsed, images=n * batch_size, step=self.step)
        images_per_second = n * batch_size / max(elapsed, 1e-9)
        lr = float(self.schedule(self.optimizer.iterations))
        logging.info(
            "step %d/%d loss %.4f lr %.4g %.1f img/s",
            self.step,
            tc.train_steps,
            loss,
            lr,
            images_per_second,
        )
        self.summaries.scalars(
            self.step,
            {
                "train/loss": loss,
                "train/learning_rate": lr,
                "perf/images_per_second": images_per_second,
            },
        )

    def _maybe_eval(self) -> bool:
        """Evaluates every `eval_every_steps` and at the end; returns whether it did."""
        tc = self.cfg.train
        evaluated = self.step % tc.eval_every_steps == 0 or self.step == tc.train_steps
        if evaluated:
            self._record_eval()
        return evaluated

    def _maybe_backup(self, *, evaluated: bool) -> None:
        """Backs up for resume at evals, every `checkpoint_every_steps` and at the end."""
        tc = self.cfg.train
        if evaluated or self.step % tc.checkpoint_every_steps == 0 or self.step == tc.train_steps:
            self._backups.save(self.step)

    def _evaluate(self) -> dict[str, Any]:
        """`eval_record` of the validation split, which must read whole and as listed."""
        cfg = self.cfg
        with verify_lib.data_loss_errors(dataset_dir=cfg.data.dataset_dir, split="valid"):
            record, predictions = eval_record(
                predict=self._predict,
                valid=self._valid,
                step=self.step,
                loss=cfg.train.loss,
                class_weights=cfg.train.class_weights,
                tasks=self.tasks,
            )
        verify_lib.check_pass_count(
            dataset_dir=cfg.data.dataset_dir, split="valid", read=record["num_examples"]
        )
        self._last_predictions = (self.step, predictions)
        return record

    def _record_eval(self) -> None:
        """Evaluates the current weights and records them (history, TensorBoard, best)."""
        step = self.step
        record = self._evaluate()
        self._history.append(record)
        logging.info(
            "eval step %d mean AUC %s per task %s", step, record["auc_mean"], record["auc"]
        )
        if self.chief:
            self.summaries.eval_scalars(step, record)
            if step > 0:  # the filters at step 0 were written with the init report
                kernel = summaries_lib.conv1_kernel(self.model, self.conv1_layers)
                self.summaries.filters(step, kernel)
            workdir_lib.append_history(self.workdir, record)
        best = self._best
        if record["auc_mean"] is not None and (
            best is None or record["auc_mean"] > best["auc_mean"]
        ):
            self._best = record
            if self.chief:
                ckpt_lib.save_weights_atomic(self.model, self.path(workdir_lib.BEST_WEIGHTS))

    def _non_finite_message(self, loss: float, start: int, end: int) -> str:
        """What a NaN/inf training loss means for this workdir, and what to do."""
        tc = self.cfg.train
        what = (
            f"training loss became {loss} between steps {start} and {end} "
            f"(TrainConfig.learning_rate={tc.learning_rate}, "
            f"TrainConfig.optimizer={tc.optimizer})"
        )
        latest = self._backups.latest
        if latest is None:
            return (
                f"{what}; no backup was written yet, so nothing of it is kept: lower "
                f"TrainConfig.learning_rate and train again after deleting {self.workdir} (or "
                "in a new TrainConfig.workdir)"
            )
        return (
            f"{what}; the newest backup, {latest}, holds the weights from before it; lower "
            "TrainConfig.learning_rate and train again in a new TrainConfig.workdir (rerunning "
            "this command would resume with the same settings)"
        )

    def _finish(
        self,
        *,
        resumed: bool,
        init_report: dict[str, Any],
        rates: dict[str, float | None],
        wall_start: float,
    ) -> dict[str, Any]:
        """Writes the final (and fallback best) weights, predictions and `results.json`."""
        if self.chief:
            ckpt_lib.save_weights_atomic(self.model, self.path(workdir_lib.FINAL_WEIGHTS))
            if self._best is None:
                # No defined AUC ever (e.g. a single-class validation split): best = final.
                ckpt_lib.save_weights_atomic(self.model, self.path(workdir_lib.BEST_WEIGHTS))
        final = self._history[-1] if self._history else self._evaluate()
        if self._last_predictions is None or self._last_predictions[0] != self.step:
            # Resumed after the final eval was recorded: predict again with the final weights.
            self._evaluate()
        if self.chief:
            out = self._last_predictions[1]
            predictions_lib.save_predictions(
                self.path(predictions_lib.VALID_PREDICTIONS_FILE),
                labels=out["labels"],
                scores=out["scores"],
                mask=out["mask"],
                example_id=out["example_id"],
                tasks=self.tasks,
                step=self.step,
            )
        for warning in health.run_warnings(self._history):
            self.warn(warning)
        results = {
            **self._auc_results(final),
            **rates,
            "wall_seconds": time.perf_counter() - wall_start,
            **self._run_facts(resumed=resumed, init_report=init_report),
            "final_top1_accuracy": final.get("top1_accuracy"),
            "final_top5_accuracy": final.get("top5_accuracy"),
            "warnings": list(self.warnings),
        }
        if self.chief:
            workdir_lib.write_json_atomic(self.path(workdir_lib.RESULTS_FILE), results)
            logging.info("finished %s: final mean AUC %s", self.workdir, results["final_auc_mean"])
        return results

    def _auc_results(self, final: dict[str, Any]) -> dict[str, Any]:
        """The validation AUCs of `results.json`: final, best and their convergence."""
        tc, history = self.cfg.train, self._history
        crossings = metrics_lib.threshold_crossings(
            history, tc.auc_thresholds, rule=tc.threshold_rule, tasks=tc.threshold_tasks
        )
        best = self._best
        return {
            "final_auc": final["auc"],
            "final_auc_mean": final["auc_mean"],
            "final_auprc": final["auprc"],
            "final_auprc_mean": final["auprc_mean"],
            "best_auc_mean": best["auc_mean"] if best else None,
            "best_step": best["step"] if best else None,
            "steps_to_threshold": {t: c["step"] for t, c in crossings.items()},
            "steps_to_threshold_interpolated": {t: c["interpolated"] for t, c in crossings.items()},
            "steps_to_threshold_censored": {t: c["censored"] for t, c in crossings.items()},
            "threshold_rule": tc.threshold_rule,
            "threshold_tasks": list(tc.threshold_tasks),
            "auc_curve_area": metrics_lib.auc_curve_area(history, tasks=tc.threshold_tasks),
        }

    def _run_facts(self, *, resumed: bool, init_report: dict[str, Any]) -> dict[str, Any]:
        """What `results.json` records of the run itself: versions, settings, provenance."""
        cfg, tc = self.cfg, self.cfg.train
        return {
            "versions": workdir_lib.versions(),
            "seed": tc.seed,
            "source_sha256": init_report.get("source_sha256"),
            "model": cfg.model.name,
            "init": cfg.init.name,
            "tasks": self.tasks,
            "train_steps": self.step,
            "dataset_dir": cfg.data.dataset_dir,
            "strategy": strategy_lib.resolve_strategy_name(tc.strategy),
            "num_replicas": self.strategy.num_replicas_in_sync,
            "precision": tc.precision,
            "resumed": resumed,
            "train_subset_sha256": self.train_subset_sha256,
            "loss_function": tc.loss,
        }


def train_and_evaluate(cfg: config_lib.RunConfig) -> dict[str, Any]:
    """Trains one run and evaluates it on the validation split; returns `results.json`'s dict.

    Args:
      cfg: the resolved run configuration (`model.num_tasks` must equal the dataset's tasks).

    Returns:
      The results dict written to `results.json` (keys in the module docstring).

    Raises:
      ConfigError (a ValueError) naming the config field, ValueError / FileNotFoundError
      naming the file for bad settings, WorkdirConflictError for a workdir of another run,
      loop.NonFiniteLossError on NaN loss.
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
        trainer = Trainer(cfg)
        try:
            return trainer.run(wall_start=wall_start)
        finally:
            trainer.close()
            if created and trainer.chief and not trainer.claimed:
                # Failed before training started: the folder holds only this attempt's files
                # (TensorBoard events, init report), nothing a corrected command needs.
                shutil.rmtree(cfg.train.workdir, ignore_errors=True)
