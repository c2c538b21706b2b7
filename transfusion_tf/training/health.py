"""Rules that tell a run that obviously went wrong from one that merely learned little.

Pure functions over a run's settings and its eval history (`eval_history.jsonl` records), so
a resumed run reaches the same verdicts. Each returns a warning {"code", "message"} or None;
the trainer logs them and lists them under "warnings" in `results.json`, where
`transfusion-report` marks the run.

- `batch_warning`: the global batch is larger than the training examples, so every step
  repeats examples (and the epoch the paper's schedules assume does not exist).
- `divergence_warning`: the validation loss at the end is more than DIVERGENCE_FACTOR times
  its value at the init (step 0), or not finite: the optimiser diverged (e.g. Adam at a
  learning rate of 1e6 ends near 1e12).
- `chance_warning`: every eval after the init has a mean AUC within CHANCE_TOLERANCE of 0.5
  (or undefined): the model never ranked examples better than a coin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

DIVERGENCE_FACTOR = 10.0
CHANCE_TOLERANCE = 0.02

Warning = dict[str, str]


def batch_warning(*, batch_size: int, train_examples: int, what: str) -> Warning | None:
    """A warning when `batch_size` (global) exceeds `train_examples` (the examples of `what`,
    e.g. "the train split of data/retina")."""
    if batch_size <= train_examples:
        return None
    return {
        "code": "batch_exceeds_train_split",
        "message": (
            f"--batch_size={batch_size} is larger than the {train_examples} examples of {what}: "
            "every step repeats examples; lower --batch_size"
        ),
    }


def divergence_warning(history: Sequence[Mapping[str, Any]]) -> Warning | None:
    """A warning when the last eval's loss is far above (or not finite, unlike) the init's."""
    start = next((r for r in history if r.get("step") == 0), None)
    if start is None or start.get("loss") is None or len(history) < 2:
        return None
    end = history[-1]
    first, last = float(start["loss"]), end.get("loss")
    if last is None or not math.isfinite(first):
        return None
    last = float(last)
    if math.isfinite(last) and last <= DIVERGENCE_FACTOR * max(first, 1e-6):
        return None
    return {
        "code": "diverged",
        "message": (
            f"the validation loss rose from {first:.4g} at the init to {last:.4g} at step "
            f"{end['step']}: training diverged; lower --learning_rate"
        ),
    }


def chance_warning(history: Sequence[Mapping[str, Any]]) -> Warning | None:
    """A warning when no eval after the init had a mean AUC away from chance (0.5)."""
    evals = [r for r in history if r.get("step", 0) > 0]
    if not evals:
        return None
    values = [r.get("auc_mean") for r in evals]
    if any(v is not None and abs(float(v) - 0.5) > CHANCE_TOLERANCE for v in values):
        return None
    shown = ", ".join("undefined" if v is None else f"{float(v):.3f}" for v in values[:6])
    more = ", ..." if len(values) > 6 else ""
    return {
        "code": "auc_at_chance",
        "message": (
            f"the mean validation AUC stayed at chance at every eval of the run ({shown}{more}): "
            "the model learned nothing it can rank by; check --learning_rate and the labels"
        ),
    }


def run_warnings(history: Sequence[Mapping[str, Any]]) -> list[Warning]:
    """The history-based warnings of a finished run (divergence, AUC at chance)."""
    found = [divergence_warning(history), chance_warning(history)]
    return [w for w in found if w is not None]
