"""`transfusion-evaluate` library (SPEC T5): a run or a SavedModel on one split of a dataset.

Writes `<output_dir>/evaluation_<split>.json` (per-task AUROC and AUPRC with seeded bootstrap
95% CIs, macro means, counts; top-1 / top-5 accuracy for a softmax-trained model),
`<output_dir>/roc_<split>.png` (ROC curve per task) and `<output_dir>/predictions_<split>.npz`
(probabilities, labels and mask per example: `training.predictions`, which `transfusion-report`
resamples when it compares runs). With a workdir the default output directory is
`<workdir>/evaluation`, where the report looks.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

from transfusion_tf import workdir as workdir_lib
from transfusion_tf.training import exported as exported_lib
from transfusion_tf.training import loop as loop_lib
from transfusion_tf.training import metrics as metrics_lib
from transfusion_tf.training import predictions as predictions_lib


@dataclasses.dataclass(frozen=True)
class _Source:
    """The model to score: `predict` maps float32 images [B, S, S, C] to probabilities [B, T].

    `prep` holds image_size, channels and mode (how the images are preprocessed); `tasks`
    are the model's task names when it records them (None otherwise).
    """

    predict: Callable[[tf.Tensor], tf.Tensor]
    prep: dict[str, Any]
    num_tasks: int
    loss: str
    tasks: list[str] | None


def _model_source(*, workdir: str | None, saved_model: str | None, weights: str) -> _Source:
    """A workdir's `weights` weights or an exported SavedModel, as a `_Source`."""
    from transfusion_tf.models import registry as model_registry

    if (workdir is None) == (saved_model is None):
        raise ValueError("give exactly one of --workdir and --saved_model")
    if workdir is not None:
        cfg, model = workdir_lib.load_model(workdir, weights=weights)
        prep = {
            "image_size": cfg.model.image_size,
            "channels": cfg.model.channels,
            "mode": model_registry.default_preprocess_mode(cfg.model.name),
        }
        return _Source(
            predict=loop_lib.make_predict_fn(model, loss=cfg.train.loss),
            prep=prep,
            num_tasks=cfg.model.num_tasks,
            loss=cfg.train.loss,
            tasks=(workdir_lib.read_results(workdir) or {}).get("tasks"),
        )
    model = exported_lib.load_exported(saved_model)
    return _Source(
        predict=model.predict,
        prep=model.preprocessing,
        num_tasks=len(model.tasks),
        loss=model.loss,
        tasks=model.tasks,
    )


def _check_request(*, dataset_dir: str, split: str, batch_size: int, bootstrap_samples: int):
    """The dataset's task names, after checking the flags; ValueError names the bad one."""
    from transfusion_tf.data import info as info_lib

    if batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1; got {batch_size}")
    if bootstrap_samples < 1:
        raise ValueError(f"--bootstrap_samples must be >= 1; got {bootstrap_samples}")
    info = info_lib.load_dataset_info(dataset_dir)
    if split not in info["splits"]:
        raise ValueError(
            f"--split={split!r} is not in {dataset_dir} (splits: {', '.join(info['splits'])})"
        )
    return list(info["tasks"])


def _check_tasks(source: _Source, *, tasks: list[str], dataset_dir: str) -> None:
    """ValueError when the model's tasks (or their number) differ from the dataset's."""
    if source.tasks is not None and list(source.tasks) != tasks:
        raise ValueError(
            f"the model predicts tasks {list(source.tasks)} but --dataset_dir={dataset_dir} "
            f"has tasks {tasks}"
        )
    if source.num_tasks != len(tasks):
        raise ValueError(
            f"the model has {source.num_tasks} outputs but --dataset_dir={dataset_dir} has "
            f"{len(tasks)} tasks"
        )


def _predict_split(
    source: _Source, *, dataset_dir: str, split: str, batch_size: int
) -> dict[str, np.ndarray]:
    """One ordered pass over `split`: labels, scores, mask [N, T] and example_id [N]."""
    from transfusion_tf.data import pipeline, verify

    dataset = pipeline.build_dataset(
        dataset_dir=dataset_dir,
        split=split,
        batch_size=batch_size,
        image_size=source.prep["image_size"],
        channels=source.prep["channels"],
        preprocess_mode=source.prep["mode"],
        training=False,
        augment="none",
        deterministic=True,
    )
    with verify.data_loss_errors(dataset_dir=dataset_dir, split=split):
        out = loop_lib.predict_dataset(source.predict, dataset)
    verify.check_pass_count(dataset_dir=dataset_dir, split=split, read=int(out["labels"].shape[0]))
    return out


def plot_roc(
    *, labels: np.ndarray, scores: np.ndarray, mask: np.ndarray, report: dict, path: str
) -> None:
    """Writes one ROC curve per defined task (AUC and CI in the legend) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for t, task in enumerate(report["auc"]):
        if report["auc"][task] is None:
            continue
        keep = mask[:, t] > 0
        fpr, tpr, _ = roc_curve(labels[keep, t] > 0.5, scores[keep, t])
        ci = report.get("auc_ci", {}).get(task)
        ci_text = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        ax.plot(fpr, tpr, label=f"{task}: {report['auc'][task]:.3f}{ci_text}")
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC (AUC, bootstrap 95% CI)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _metrics(
    out: dict[str, np.ndarray], *, tasks: list[str], loss: str, bootstrap_samples: int, seed: int
) -> dict[str, Any]:
    """AUROC / AUPRC with bootstrap CIs of predictions `out` (and top-k accuracy for softmax)."""
    report = metrics_lib.bootstrap_report(
        labels=out["labels"],
        scores=out["scores"],
        mask=out["mask"],
        tasks=tasks,
        num_samples=bootstrap_samples,
        seed=seed,
    )
    if loss == "softmax":
        report.update(
            metrics_lib.accuracy_report(
                labels=out["labels"], scores=out["scores"], mask=out["mask"]
            )
        )
    return report


def _write_outputs(
    report: dict[str, Any], out: dict[str, np.ndarray], *, output_dir: str, split: str
) -> str:
    """Writes the ROC figure, the predictions and (last) the JSON report; returns its path.

    Adds the figure's and the predictions' paths to `report`.
    """
    os.makedirs(output_dir, exist_ok=True)
    png_path = os.path.join(output_dir, workdir_lib.evaluation_roc_file(split))
    plot_roc(
        labels=out["labels"], scores=out["scores"], mask=out["mask"], report=report, path=png_path
    )
    report["roc_png"] = png_path
    report["predictions"] = predictions_lib.save_predictions(
        os.path.join(output_dir, workdir_lib.evaluation_predictions_file(split)),
        labels=out["labels"],
        scores=out["scores"],
        mask=out["mask"],
        example_id=out["example_id"],
        tasks=report["tasks"],
    )
    json_path = os.path.join(output_dir, workdir_lib.evaluation_report_file(split))
    workdir_lib.write_json_atomic(json_path, report)
    return json_path


def evaluate(
    *,
    dataset_dir: str,
    split: str,
    output_dir: str,
    workdir: str | None = None,
    saved_model: str | None = None,
    weights: str = "final",
    batch_size: int = 32,
    bootstrap_samples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluates a workdir's weights or a SavedModel on `split`; returns the JSON written.

    Raises:
      ValueError / FileNotFoundError naming the flag or file for bad input (missing split,
      task names of the model differing from the dataset's, ...).
    """
    tasks = _check_request(
        dataset_dir=dataset_dir,
        split=split,
        batch_size=batch_size,
        bootstrap_samples=bootstrap_samples,
    )
    source = _model_source(workdir=workdir, saved_model=saved_model, weights=weights)
    _check_tasks(source, tasks=tasks, dataset_dir=dataset_dir)
    out = _predict_split(source, dataset_dir=dataset_dir, split=split, batch_size=batch_size)
    report = _metrics(
        out, tasks=tasks, loss=source.loss, bootstrap_samples=bootstrap_samples, seed=seed
    )
    report.update(
        loss_function=source.loss,
        split=split,
        dataset_dir=dataset_dir,
        num_examples=int(out["labels"].shape[0]),
        source={
            "workdir": workdir,
            "weights": weights if workdir else None,
            "saved_model": saved_model,
        },
        tasks=tasks,
    )
    json_path = _write_outputs(report, out, output_dir=output_dir, split=split)
    logging.info(
        "evaluation of %s on %s/%s written to %s",
        workdir or saved_model,
        dataset_dir,
        split,
        json_path,
    )
    return report
