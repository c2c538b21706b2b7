"""`transfusion-evaluate` library (SPEC T5): a run or a SavedModel on one split of a dataset.

Writes `<output_dir>/evaluation_<split>.json` (per-task AUROC and AUPRC with seeded bootstrap
95% CIs, macro means, counts; top-1 / top-5 accuracy for a softmax-trained model),
`<output_dir>/roc_<split>.png` (ROC curve per task) and `<output_dir>/predictions_<split>.npz`
(probabilities, labels and mask per example: `training.predictions`, which `transfusion-report`
resamples when it compares runs). With a workdir the default output directory is
`<workdir>/evaluation`, where the report looks.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

from transfusion_tf import workdir as workdir_lib
from transfusion_tf.training import checkpoint as ckpt_lib
from transfusion_tf.training import loop as loop_lib
from transfusion_tf.training import metrics as metrics_lib
from transfusion_tf.training import predictions as predictions_lib


def _model_source(
    *, workdir: str | None, saved_model: str | None, weights: str
) -> tuple[Any, dict[str, Any], list[str] | None]:
    """(predict fn [B,S,S,C] -> probabilities, preprocessing settings and the loss, model task
    names)."""
    from transfusion_tf.export import saved_model as export_lib
    from transfusion_tf.models import registry as model_registry

    if (workdir is None) == (saved_model is None):
        raise ValueError("give exactly one of --workdir and --saved_model")
    if workdir is not None:
        cfg, model = workdir_lib.load_model(workdir, weights=weights)
        results_path = os.path.join(workdir, workdir_lib.RESULTS_FILE)
        tasks = None
        if os.path.isfile(results_path):
            with open(results_path, encoding="utf-8") as f:
                tasks = json.load(f).get("tasks")
        prep = {
            "image_size": cfg.model.image_size,
            "channels": cfg.model.channels,
            "mode": model_registry.default_preprocess_mode(cfg.model.name),
            "num_tasks": cfg.model.num_tasks,
            "loss": cfg.train.loss,
        }
        return loop_lib.make_predict_fn(model, loss=cfg.train.loss), prep, tasks
    if not os.path.isfile(os.path.join(saved_model, "saved_model.pb")):
        raise FileNotFoundError(f"--saved_model: no saved_model.pb in {saved_model}")
    tasks = export_lib.load_tasks(saved_model)
    prep = export_lib.load_preprocessing(saved_model)
    prep["num_tasks"] = len(tasks)
    prep["loss"] = export_lib.load_loss(saved_model)
    fn = tf.saved_model.load(saved_model).signatures[export_lib.SIGNATURE_IMAGES]

    def predict(images):
        return fn(images=images)["probabilities"]

    return predict, prep, tasks


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
    from transfusion_tf.data import info as info_lib
    from transfusion_tf.data import pipeline, verify

    if batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1; got {batch_size}")
    if bootstrap_samples < 1:
        raise ValueError(f"--bootstrap_samples must be >= 1; got {bootstrap_samples}")
    info = info_lib.load_dataset_info(dataset_dir)
    tasks = list(info["tasks"])
    if split not in info["splits"]:
        raise ValueError(
            f"--split={split!r} is not in {dataset_dir} (splits: {', '.join(info['splits'])})"
        )
    predict, prep, model_tasks = _model_source(
        workdir=workdir, saved_model=saved_model, weights=weights
    )
    if model_tasks is not None and list(model_tasks) != tasks:
        raise ValueError(
            f"the model predicts tasks {list(model_tasks)} but --dataset_dir={dataset_dir} "
            f"has tasks {tasks}"
        )
    if prep["num_tasks"] != len(tasks):
        raise ValueError(
            f"the model has {prep['num_tasks']} outputs but --dataset_dir={dataset_dir} has "
            f"{len(tasks)} tasks"
        )
    dataset = pipeline.build_dataset(
        dataset_dir=dataset_dir,
        split=split,
        batch_size=batch_size,
        image_size=prep["image_size"],
        channels=prep["channels"],
        preprocess_mode=prep["mode"],
        training=False,
        augment="none",
        deterministic=True,
    )
    with verify.data_loss_errors(dataset_dir=dataset_dir, split=split):
        out = loop_lib.predict_dataset(predict, dataset)
    verify.check_pass_count(dataset_dir=dataset_dir, split=split, read=int(out["labels"].shape[0]))
    report = metrics_lib.bootstrap_report(
        labels=out["labels"],
        scores=out["scores"],
        mask=out["mask"],
        tasks=tasks,
        num_samples=bootstrap_samples,
        seed=seed,
    )
    if prep["loss"] == "softmax":
        report.update(
            metrics_lib.accuracy_report(
                labels=out["labels"], scores=out["scores"], mask=out["mask"]
            )
        )
    report.update(
        loss_function=prep["loss"],
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
    os.makedirs(output_dir, exist_ok=True)
    json_path = os.path.join(output_dir, f"evaluation_{split}.json")
    png_path = os.path.join(output_dir, f"roc_{split}.png")
    plot_roc(
        labels=out["labels"], scores=out["scores"], mask=out["mask"], report=report, path=png_path
    )
    report["roc_png"] = png_path
    report["predictions"] = predictions_lib.save_predictions(
        os.path.join(output_dir, predictions_lib.evaluation_file(split)),
        labels=out["labels"],
        scores=out["scores"],
        mask=out["mask"],
        example_id=out["example_id"],
        tasks=tasks,
    )
    ckpt_lib.write_text_atomic(json_path, json.dumps(report, indent=2, sort_keys=True) + "\n")
    logging.info(
        "evaluation of %s on %s/%s written to %s",
        workdir or saved_model,
        dataset_dir,
        split,
        json_path,
    )
    return report
