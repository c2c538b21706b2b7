"""Initialisation strategies of the study (SPEC I1-I6) and their sources and report."""

from transfusion_tf.init.registry import (
    INITS,
    initialize,
    input_channels,
    validate_init_config,
)
from transfusion_tf.init.report import InitReport
from transfusion_tf.init.sources import (
    SourceError,
    load_source_weights,
    load_stats_file,
    write_stats,
)
from transfusion_tf.init.strategies import InitError

__all__ = [
    "INITS",
    "InitError",
    "InitReport",
    "SourceError",
    "initialize",
    "input_channels",
    "load_source_weights",
    "load_stats_file",
    "validate_init_config",
    "write_stats",
]
