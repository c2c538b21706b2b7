"""P2 benchmark: `transfusion-train`'s steady-state images/s vs a bare `model.fit`, in one run.

A: the trainer (`train_and_evaluate`) on real TFRecords of a synthetic dataset, with its eval
   hooks (validation AUC every --eval_every_steps), backups, TensorBoard summaries and logging;
   its `examples_per_second` counts images per wall second after the first (tracing) loop call.
B: `model.fit` on in-memory tensors with the same model, global batch, resolution, optimizer and
   precision, timed between batch-end callbacks after a warm-up, so neither tracing nor fit's
   end-of-training idle stall (tf.data autotuning winding down) is measured. B runs once before
   and once after A (half the steps each) and their rates are averaged, so a machine whose load
   drifts during the run biases neither side.

The last line printed is one JSON object with both rates and `ratio` = A / B (target >= 0.9).

  python bench/train.py --model=cbr_tiny --image_size=32 --batch_size=32
  python bench/train.py --model=resnet50 --image_size=224 --precision=mixed_float16  # GPU
"""

from __future__ import annotations

import os
import time

import _common
from absl import flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "cbr_tiny", "Registered model name.")
flags.DEFINE_integer("image_size", 32, "Input resolution.")
flags.DEFINE_integer("batch_size", 32, "Global batch size.")
flags.DEFINE_integer("train_steps", 200, "Trainer steps (A); fit runs as many, in two halves (B).")
flags.DEFINE_integer("warmup_steps", 10, "Steps of each fit (B) not timed.")
flags.DEFINE_integer("eval_every_steps", 50, "Trainer eval cadence (A).")
flags.DEFINE_integer("steps_per_loop", 10, "Trainer steps per tf.function call (A).")
flags.DEFINE_integer("num_examples", 400, "Synthetic dataset size (A) and in-memory set (B).")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_float16", "mixed_bfloat16"], "")
flags.DEFINE_enum("augment", "default", ["default", "none"], "Trainer augmentation (A).")
flags.DEFINE_string("dataset_dir", None, "Use this prepared dataset instead of a synthetic one.")
flags.DEFINE_string("strategy", "auto", "Trainer strategy (A).")


class _BatchClock:
    """Keras callback: times batches after `warmup` of them (no end-of-fit stall inside)."""

    def __init__(self, warmup: int):
        import keras

        class Clock(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.count, self.start, self.end = 0, None, None

            def on_train_batch_end(self, batch, logs=None):
                self.count += 1
                if self.count == warmup:
                    self.start = time.perf_counter()
                self.end = time.perf_counter()

        self.callback = Clock()

    def images_per_second(self, batch_size: int, warmup: int) -> float:
        cb = self.callback
        return (cb.count - warmup) * batch_size / (cb.end - cb.start)


def bench_trainer(dataset_dir: str, workdir: str) -> dict:
    from transfusion_tf import config
    from transfusion_tf.data import info as info_lib
    from transfusion_tf.training import trainer

    tasks = info_lib.load_dataset_info(dataset_dir)["tasks"]
    cfg = config.RunConfig(
        data=config.DataConfig(
            dataset_dir=dataset_dir,
            batch_size=FLAGS.batch_size,
            augment=FLAGS.augment,
        ),
        model=config.ModelConfig(
            name=FLAGS.model, num_tasks=len(tasks), image_size=FLAGS.image_size
        ),
        train=config.TrainConfig(
            workdir=workdir,
            optimizer="sgd",
            learning_rate=0.01,
            train_steps=FLAGS.train_steps,
            eval_every_steps=FLAGS.eval_every_steps,
            checkpoint_every_steps=FLAGS.eval_every_steps,
            steps_per_loop=FLAGS.steps_per_loop,
            precision=FLAGS.precision,
            strategy=FLAGS.strategy,
        ),
    )
    return trainer.train_and_evaluate(cfg)


def bench_fit(num_tasks: int, steps: int) -> float:
    import keras
    import numpy as np

    from transfusion_tf.models import registry as model_registry
    from transfusion_tf.training import losses

    keras.config.set_dtype_policy(FLAGS.precision)
    rng = np.random.default_rng(0)
    n = FLAGS.num_examples
    x = rng.random((n, FLAGS.image_size, FLAGS.image_size, 3), dtype=np.float32)
    y = (rng.random((n, num_tasks)) > 0.5).astype(np.float32)
    model = model_registry.build_model(
        FLAGS.model, num_tasks=num_tasks, image_size=FLAGS.image_size
    )

    def loss(y_true, logits):
        return losses.masked_bce_per_example(
            labels=y_true, logits=logits, mask=keras.ops.ones_like(y_true)
        )

    optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    if FLAGS.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer, loss=loss)
    steps_per_epoch = n // FLAGS.batch_size
    total = steps + FLAGS.warmup_steps
    epochs = -(-total // steps_per_epoch)
    clock = _BatchClock(FLAGS.warmup_steps)
    model.fit(
        x, y, batch_size=FLAGS.batch_size, epochs=epochs, verbose=0, callbacks=[clock.callback]
    )
    keras.config.set_dtype_policy("float32")
    return clock.images_per_second(FLAGS.batch_size, FLAGS.warmup_steps)


def main() -> None:
    import tensorflow as tf

    from transfusion_tf.data import info as info_lib

    with _common.scratch(None, prefix="bench_train_") as scratch:
        dataset_dir = FLAGS.dataset_dir or _common.write_fundus(
            os.path.join(scratch, "fundus"),
            num_examples=FLAGS.num_examples,
            image_size=FLAGS.image_size,
            workers=os.cpu_count() or 1,
        )
        num_tasks = len(info_lib.load_dataset_info(dataset_dir)["tasks"])
        fit_before = bench_fit(num_tasks, FLAGS.train_steps // 2)
        results = bench_trainer(dataset_dir, os.path.join(scratch, "run"))
        fit_after = bench_fit(num_tasks, FLAGS.train_steps // 2)
        fit_rate = (fit_before + fit_after) / 2
    trainer_rate = results["examples_per_second"]
    summary = {
        "model": FLAGS.model,
        "image_size": FLAGS.image_size,
        "batch_size": FLAGS.batch_size,
        "precision": FLAGS.precision,
        "device": "GPU" if tf.config.list_logical_devices("GPU") else "CPU",
        "trainer_images_per_second": round(trainer_rate, 2),
        "trainer_loop_only_images_per_second": round(results["train_loop_examples_per_second"], 2),
        "fit_images_per_second": round(fit_rate, 2),
        "fit_before_after": [round(fit_before, 2), round(fit_after, 2)],
        "ratio": round(trainer_rate / fit_rate, 3),
    }
    logging.info("P2: %s", summary)
    _common.print_result(summary)


if __name__ == "__main__":
    _common.run(main)
