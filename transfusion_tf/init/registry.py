"""The init registry (SPEC I1-I6): `initialize(model, model_name=..., init=...)` -> InitReport.

Strategies: "random", "imagenet" (pretrained transfer from ImageNet or `source_weights`),
"meanvar", "transfusion" and "gabor". The head is always new. A 1-channel model with a
3-channel source follows `gray_policy`: "sum" sums conv1's kernel over input channels;
"repeat" (default) keeps 3 input channels, so the model is built with
`input_channels(data_channels=1, init=...) == 3` and the input pipeline repeats gray to RGB.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from absl import logging

from transfusion_tf import config as config_lib
from transfusion_tf.init import strategies
from transfusion_tf.init.report import InitReport
from transfusion_tf.models import registry as model_registry
from transfusion_tf.registry import Registry

INITS: Registry[Callable[[strategies.InitContext], None]] = Registry("init strategy")
INITS.add("random", strategies.init_random)
INITS.add("imagenet", strategies.init_imagenet)
INITS.add("meanvar", strategies.init_meanvar)
INITS.add("transfusion", strategies.init_transfusion)
INITS.add("gabor", strategies.init_gabor)

# Strategies that read source weights or statistics (gabor only when a source is given).
_SOURCED = ("imagenet", "meanvar", "transfusion")


def validate_init_config(init: config_lib.InitConfig) -> None:
    """Raises `InitError` naming the setting when a value of `init` is not allowed."""
    if init.name not in INITS:
        raise strategies.InitError(
            f"unknown init {init.name!r}; choose one of: {', '.join(INITS.names())}"
        )
    for field, allowed in (
        ("bn_policy", strategies.BN_POLICIES),
        ("gray_policy", strategies.GRAY_POLICIES),
        ("upper_init", strategies.UPPER_INITS),
    ):
        value = getattr(init, field)
        if value not in allowed:
            raise strategies.InitError(f"{field}={value!r}; choose one of: {', '.join(allowed)}")


def input_channels(*, data_channels: int, init: config_lib.InitConfig) -> int:
    """Input channels to build the model with: 3 for gray data under gray_policy "repeat".

    With a source (every strategy but random, and gabor without a source), 1-channel data is
    fed as RGB (gray repeated) unless `gray_policy="sum"` folds conv1 to one channel.
    """
    sourced = init.name in _SOURCED or (init.name == "gabor" and init.stats_file is not None)
    sourced = sourced or (init.name == "gabor" and init.source_weights is not None)
    if data_channels == 1 and sourced and init.gray_policy == "repeat":
        return 3
    return data_channels


def initialize(model: keras.Model, *, model_name: str, init: config_lib.InitConfig) -> InitReport:
    """Sets every variable of `model` (built by `build_model(model_name, ...)`) per `init`.

    Args:
      model: the model; its variables are assigned in place (inside a distribution strategy
        scope too).
      model_name: its registered architecture (gives the unit map and the source backbone).
      init: the init settings.

    Returns:
      The InitReport with one row per model variable.

    Raises:
      InitError / SourceError (ValueError) or FileNotFoundError, naming the setting, file or
      layer at fault.
    """
    validate_init_config(init)
    spec = model_registry.get_spec(model_name)
    units = model_registry.model_units(model, model_name)
    report = InitReport(
        strategy=init.name,
        model=model_name,
        settings={
            "seed": init.seed,
            "gray_policy": init.gray_policy,
            "input_channels": int(model.input.shape[-1]),
        },
    )
    if init.name in ("meanvar",) or (init.name == "transfusion" and init.upper_init == "meanvar"):
        report.settings["bn_policy"] = init.bn_policy
    if init.name == "transfusion":
        report.settings["transfuse_upto"] = init.transfuse_upto
        report.settings["upper_init"] = init.upper_init
    if init.random_initializer:
        report.settings["random_initializer"] = init.random_initializer
    context = strategies.InitContext(
        model=model,
        model_name=model_name,
        init=init,
        units=units,
        report=report,
        transferable_units=spec.transferable_units or len(units),
    )
    INITS.get(init.name)(context)
    paths = [v.path for v in model.weights]
    reported = [row["variable"] for row in report.rows]
    if sorted(paths) != sorted(reported):
        missing = sorted(set(paths) - set(reported))
        raise RuntimeError(f"init {init.name!r} left variables unaccounted for: {missing[:5]}")
    logging.info("Initialised %s with %s: %s", model_name, init.name, report.counts())
    return report
