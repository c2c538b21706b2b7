"""The custom loop, schedules, optimizers, backups and summaries on a tiny Keras model."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from transfusion_tf import tiling
from transfusion_tf.training import checkpoint, loop, optim, summaries
from transfusion_tf.training import strategy as strategy_lib


def _tiny_model():
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv1_conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    outputs = keras.layers.Dense(2, name="head", dtype="float32")(x)
    return keras.Model(inputs, outputs)


def _dataset(batch):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(64, 8, 8, 1)).astype(np.float32)
    labels = np.stack([images.mean(axis=(1, 2, 3)) > 0, images[:, 0, 0, 0] > 0], 1)
    ds = tf.data.Dataset.from_tensor_slices(
        {
            "image": images,
            "labels": labels.astype(np.float32),
            "mask": np.ones_like(labels, np.float32),
        }
    )
    return ds.repeat().batch(batch, drop_remainder=True)


@pytest.mark.parametrize(
    ("name", "step", "want"),
    [
        ("constant", 50, 0.1),
        ("cosine", 0, 0.1),
        ("cosine", 50, 0.05),
        ("cosine", 100, 0.0),
        ("step", 49, 0.1),
        ("step", 50, 0.01),
        ("step", 80, 0.001),
    ],
)
def test_schedules(name, step, want):
    sched = optim.WarmupSchedule(name=name, learning_rate=0.1, train_steps=100)
    assert float(sched(step)) == pytest.approx(want, abs=1e-7)


def test_warmup_is_linear_then_schedule():
    sched = optim.WarmupSchedule(name="cosine", learning_rate=1.0, train_steps=110, warmup_steps=10)
    assert float(sched(0)) == pytest.approx(0.1)
    assert float(sched(4)) == pytest.approx(0.5)
    assert float(sched(10)) == pytest.approx(1.0)
    assert float(sched(60)) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"name": "linear"}, "--lr_schedule"),
        ({"learning_rate": 0.0}, "--learning_rate"),
        ({"train_steps": 0}, "--train_steps"),
        ({"warmup_steps": -1}, "--warmup_steps"),
    ],
)
def test_bad_schedule_settings_name_the_flag(kwargs, flag):
    args = {"name": "cosine", "learning_rate": 0.1, "train_steps": 10, "warmup_steps": 0, **kwargs}
    with pytest.raises(ValueError, match=flag):
        optim.validate_schedule(**args)


def test_optimizers_and_bad_names():
    for name in optim.OPTIMIZERS:
        opt = optim.make_optimizer(name=name, learning_rate=0.1, weight_decay=1e-4)
        assert isinstance(opt, keras.optimizers.Optimizer)
    lso = optim.make_optimizer(name="sgd", learning_rate=0.1, precision="mixed_float16")
    assert isinstance(lso, keras.optimizers.LossScaleOptimizer)
    with pytest.raises(ValueError, match="--optimizer"):
        optim.make_optimizer(name="rmsprop", learning_rate=0.1)
    with pytest.raises(ValueError, match="--precision"):
        optim.make_optimizer(name="sgd", learning_rate=0.1, precision="float64")


def test_strategy_names_and_batch_check():
    assert strategy_lib.resolve_strategy_name("auto") == "one_device"
    with pytest.raises(ValueError, match="--strategy"):
        strategy_lib.resolve_strategy_name("horovod")
    strategy = strategy_lib.make_strategy("one_device")
    assert strategy_lib.is_chief(strategy)
    strategy_lib.check_batch_size(strategy, 3)
    with pytest.raises(ValueError, match="--batch_size=0"):
        strategy_lib.check_batch_size(strategy, 0)


def test_loop_learns_and_backups_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    strategy = strategy_lib.make_strategy("one_device")
    with strategy.scope():
        model = _tiny_model()
        opt = optim.make_optimizer(name="adam", learning_rate=0.05)
        opt.build(model.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64)
    train = strategy.distribute_datasets_from_function(
        lambda ctx: _dataset(ctx.get_per_replica_batch_size(16))
    )
    it = iter(train)
    train_loop = loop.make_train_loop(
        strategy=strategy, model=model, optimizer=opt, global_batch_size=16
    )
    first = float(train_loop(it, tf.constant(5)))
    for _ in range(4):
        last = float(train_loop(it, tf.constant(10)))
    assert last < first
    assert int(opt.iterations) == 45

    backups = checkpoint.BackupManager(workdir=str(tmp_path), model=model, optimizer=opt, step=step)
    step.assign(45)
    backups.save(45)
    saved = [w.numpy().copy() for w in model.weights]
    train_loop(it, tf.constant(3))
    step.assign(48)
    assert backups.restore_latest()
    assert int(step) == 45 and int(opt.iterations) == 45
    for a, b in zip(saved, model.weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())

    predict = loop.make_predict_fn(model)
    out = loop.predict_dataset(predict, _dataset(16).take(2))
    assert out["scores"].shape == (32, 2) and np.all((out["scores"] > 0) & (out["scores"] < 1))

    path = os.path.join(tmp_path, "weights", "final.weights.h5")
    checkpoint.save_weights_atomic(model, path)
    assert os.path.exists(path) and not os.path.exists(path.replace("final", "final.tmp"))
    with pytest.raises(ValueError, match="must end with .weights.h5"):
        checkpoint.save_weights_atomic(model, os.path.join(tmp_path, "w.h5"))


def test_empty_eval_split_is_an_error():
    predict = loop.make_predict_fn(_tiny_model())
    with pytest.raises(ValueError, match="empty"):
        loop.predict_dataset(predict, _dataset(4).take(0))


def test_filter_grid_shapes():
    grid = tiling.filter_grid(np.random.rand(5, 5, 1, 10).astype(np.float32), scale=2)
    assert grid.shape == (1, 2 * (3 * 6 + 1), 2 * (4 * 6 + 1), 3)  # 10 filters: 3 rows x 4
    assert grid.min() >= 0 and grid.max() <= 1
    kernel = summaries.conv1_kernel(_tiny_model())
    assert kernel.shape == (3, 3, 1, 4)


def test_deferred_augmentation_in_the_step_trains_like_host_augmentation(tmp_path):
    """The trainer's split (integer pixels in, augment_batch inside the step) gives the same
    updates as augmenting in the input pipeline."""
    from transfusion_tf.data import pipeline, synthetic

    data = str(tmp_path / "fundus")
    synthetic.write_synthetic_dataset(
        kind="fundus", output_dir=data, num_examples=48, image_size=16, num_shards=2, seed=1
    )
    strategy = strategy_lib.make_strategy("one_device")
    weights = {}
    for defer in (False, True):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            inputs = keras.Input((16, 16, 3))
            x = keras.layers.Conv2D(4, 3)(inputs)
            x = keras.layers.GlobalAveragePooling2D()(x)
            model = keras.Model(inputs, keras.layers.Dense(1)(x))
            opt = optim.make_optimizer(name="sgd", learning_rate=0.1)
            opt.build(model.trainable_variables)
        kwargs = dict(
            dataset_dir=data,
            split="train",
            batch_size=8,
            image_size=16,
            channels=3,
            preprocess_mode="torch",
            training=True,
            augment="affine",
            seed=5,
            deterministic=True,
            defer_augment=defer,
        )
        train = strategy.distribute_datasets_from_function(
            lambda ctx, kwargs=kwargs: pipeline.build_dataset(input_context=ctx, **kwargs)
        )
        finish = pipeline.deferred_augment(image_size=16, preprocess_mode="torch", augment="affine")
        train_loop = loop.make_train_loop(
            strategy=strategy,
            model=model,
            optimizer=opt,
            global_batch_size=8,
            prepare_batch=finish if defer else None,
        )
        initial = [w.numpy() for w in model.weights]
        train_loop(iter(train), tf.constant(3))
        weights[defer] = [w.numpy() for w in model.weights]
        assert not np.allclose(weights[defer][0], initial[0])  # the kernel was updated
    for host, deferred in zip(weights[False], weights[True], strict=True):
        np.testing.assert_allclose(deferred, host, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", ["sigmoid", "softmax"])
def test_eval_loss_is_the_train_step_loss_on_the_same_batch(loss):
    """The trainer's eval record takes its loss from the training loss function itself."""
    from transfusion_tf.training import trainer

    rng = np.random.default_rng(1)
    images = rng.normal(size=(16, 8, 8, 1)).astype(np.float32)
    if loss == "softmax":
        labels = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 16)]
    else:
        labels = rng.integers(0, 2, (16, 2)).astype(np.float32)
    mask = np.ones_like(labels)
    mask[2, 0] = mask[5, 1] = 0.0  # unknown labels: masked (sigmoid) / example left out (softmax)
    batch = {"image": images, "labels": labels, "mask": mask}
    ds = tf.data.Dataset.from_tensor_slices(batch).batch(16)
    strategy = strategy_lib.make_strategy("one_device")
    with strategy.scope():
        model = _tiny_model()
        opt = optim.make_optimizer(name="sgd", learning_rate=0.0, momentum=0.0)
        opt.build(model.trainable_variables)
    train_loop = loop.make_train_loop(
        strategy=strategy,
        model=model,
        optimizer=opt,
        global_batch_size=16,
        loss=loss,
        class_weights=(1.0, 2.5),
    )
    train_loss = float(
        train_loop(iter(strategy.experimental_distribute_dataset(ds)), tf.constant(1))
    )
    record, _ = trainer.eval_record(
        predict=loop.make_logits_fn(model),
        valid=ds,
        step=0,
        loss=loss,
        class_weights=(1.0, 2.5),
        tasks=["a", "b"],
    )
    assert record["loss"] == pytest.approx(train_loss, rel=1e-5)
    assert ("top1_accuracy" in record) == (loss == "softmax")
    assert "top5_accuracy" not in record  # 2 classes


def test_threshold_settings_are_validated_naming_the_setting(tmp_path_factory, tmp_path):
    import test_train_helpers as helpers

    from transfusion_tf.training import trainer

    data = helpers.tiny_dataset(tmp_path_factory)
    cfg = helpers.tiny_config(data, str(tmp_path / "w"))
    trainer.validate_config(cfg.replace(train=cfg.train.replace(threshold_tasks=("referable_dr",))))
    rule = "TrainConfig.threshold_rule must be one of first, sustained"
    with pytest.raises(ValueError, match=rule):
        trainer.validate_config(cfg.replace(train=cfg.train.replace(threshold_rule="median")))
    with pytest.raises(ValueError, match=r"TrainConfig.threshold_tasks names tasks \['Edema'\]"):
        trainer.validate_config(cfg.replace(train=cfg.train.replace(threshold_tasks=("Edema",))))
