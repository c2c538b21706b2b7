"""`run_demo`: the whole study in minutes on a CPU with no downloads (SPEC X1).

Stages, each logged with its duration:
  1. synthetic datasets (SPEC D4): `synthetic_natural`, a many-class texture/shape task that
     stands in for ImageNet here, and `synthetic_fundus` with the referable-DR task;
  2. a small CBR "source" model trained on `synthetic_natural` (our stand-in for ImageNet
     pretraining; a single-label dataset, so `--loss=auto` trains it with a softmax over its
     classes, as a model is trained on ImageNet) and its per-tensor statistics file (for
     Mean Var);
  3. the target runs on `synthetic_fundus`, one per init and seed: random, transfer from the
     source (init=imagenet with the source workdir as --source_weights), meanvar from the
     statistics file, weight transfusion at two cut points, and gabor;
  4. evaluation of every run's best weights on the test split (into the run's workdir, where
     the report's paired comparisons find it);
  5. export of the best run to `<export_dir>/demo/1` and a reload check of the SavedModel;
  6. the representational analyses (Fig. 2, 3, 5 equivalents and the weight change);
  7. `report.md` with tables, paired comparisons with random and figures
     (transfusion_tf.report); the demo's own questions are answered by the same comparisons.
Every run logs to TensorBoard under `<output_dir>/runs`, so
`tensorboard --logdir <output_dir>/runs` compares them all.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

from transfusion_tf import config as config_lib
from transfusion_tf.analysis import activations as act
from transfusion_tf.analysis import analyses
from transfusion_tf.data import info as info_lib
from transfusion_tf.data import schema, synthetic
from transfusion_tf.export import saved_model
from transfusion_tf.init import stats as stats_lib
from transfusion_tf.report import build_report, compare, tables
from transfusion_tf.training import evaluation, trainer
from transfusion_tf.training import metrics as metrics_lib

STAND_IN_NOTE = (
    "`synthetic_natural` is this demo's stand-in for ImageNet: no ImageNet weights are "
    "downloaded, the 'transfer' init copies a small CBR model pretrained on synthetic textures "
    "and shapes."
)


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo; `quick` (the tests' mode) and default differ only in these numbers."""

    model: str
    widths: tuple[int, ...]
    image_size: int
    natural_examples: int
    fundus_examples: int
    batch_size: int
    source_steps: int
    target_steps: int
    eval_every_steps: int
    optimizer: str
    learning_rate: float
    seeds: tuple[int, ...]
    auc_thresholds: tuple[float, ...]
    cut_points: tuple[str, str]
    analysis_examples: int


def demo_settings(*, quick: bool, seeds: Sequence[int] | None = None) -> DemoSettings:
    """The demo's sizes: `quick` fits about 2 minutes on 2 CPU cores, default about 8.

    The paper does not give its optimiser; the demo uses Adam (SGD at these few steps barely
    leaves chance level on the synthetic tasks), the same for every init.
    """
    if quick:
        settings = DemoSettings(
            model="cbr_tiny",
            widths=(8, 16, 32, 64),
            image_size=32,
            natural_examples=300,
            fundus_examples=300,
            batch_size=32,
            source_steps=40,
            target_steps=30,
            eval_every_steps=10,
            optimizer="adam",
            learning_rate=0.003,
            seeds=(0, 1),
            auc_thresholds=(0.6, 0.7),
            cut_points=("conv1", "conv2"),
            analysis_examples=32,
        )
    else:
        settings = DemoSettings(
            model="cbr_tiny",
            widths=(8, 16, 32, 64),
            image_size=32,
            natural_examples=2000,
            fundus_examples=600,
            batch_size=32,
            source_steps=600,
            target_steps=60,
            eval_every_steps=10,
            optimizer="adam",
            learning_rate=0.003,
            seeds=(0, 1, 2),
            auc_thresholds=(0.6, 0.7),
            cut_points=("conv1", "conv2"),
            analysis_examples=64,
        )
    if seeds is not None:
        if len(seeds) < 1:
            raise ValueError("--seeds must name at least one seed")
        settings = dataclasses.replace(settings, seeds=tuple(int(s) for s in seeds))
    return settings


@dataclasses.dataclass(frozen=True)
class TargetInit:
    """One init of the target runs: its workdir label and its InitConfig fields."""

    label: str
    fields: dict[str, Any]


def target_inits(
    settings: DemoSettings, *, source_workdir: str, stats_file: str
) -> list[TargetInit]:
    """The target inits of the demo, in the order the paper discusses them."""
    lo, hi = settings.cut_points
    return [
        TargetInit("random", {"name": "random"}),
        TargetInit("transfer", {"name": "imagenet", "source_weights": source_workdir}),
        TargetInit(
            "meanvar", {"name": "meanvar", "stats_file": stats_file, "bn_policy": "identity"}
        ),
        TargetInit(
            f"transfusion_{lo}",
            {"name": "transfusion", "source_weights": source_workdir, "transfuse_upto": lo},
        ),
        TargetInit(
            f"transfusion_{hi}",
            {"name": "transfusion", "source_weights": source_workdir, "transfuse_upto": hi},
        ),
        TargetInit("gabor", {"name": "gabor"}),
    ]


class _Timer:
    """Collects the wall time of each stage and logs it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.start = time.perf_counter()

    def stage(self, name: str, fn: Callable[[], Any]) -> Any:
        logging.info("== %s", name)
        t0 = time.perf_counter()
        out = fn()
        self.seconds[name] = time.perf_counter() - t0
        logging.info("== %s done in %.1f s", name, self.seconds[name])
        return out

    def total(self) -> float:
        return time.perf_counter() - self.start


def run_config(
    settings: DemoSettings,
    *,
    dataset_dir: str,
    num_tasks: int,
    workdir: str,
    seed: int,
    train_steps: int,
    init: dict[str, Any],
) -> config_lib.RunConfig:
    """The RunConfig of one demo run (same optimisation for every init, as in the paper)."""
    return config_lib.RunConfig(
        data=config_lib.DataConfig(
            dataset_dir=dataset_dir,
            image_size=settings.image_size,
            channels=3,
            batch_size=settings.batch_size,
            augment="default",
            shuffle_buffer=512,
            seed=seed,
        ),
        model=config_lib.ModelConfig(
            name=settings.model,
            num_tasks=num_tasks,
            image_size=settings.image_size,
            channels=3,
            widths=settings.widths,
        ),
        init=config_lib.InitConfig(seed=seed, **init),
        train=config_lib.TrainConfig(
            workdir=workdir,
            optimizer=settings.optimizer,
            learning_rate=settings.learning_rate,
            lr_schedule="cosine",
            warmup_steps=0,
            weight_decay=0.0,
            train_steps=train_steps,
            eval_every_steps=settings.eval_every_steps,
            steps_per_loop=settings.eval_every_steps,
            checkpoint_every_steps=train_steps,
            auc_thresholds=settings.auc_thresholds,
            seed=seed,
        ),
    )


def _dataset(kind: str, *, root: str, num_examples: int, image_size: int, seed: int) -> str:
    """Writes (or reuses) a synthetic dataset; returns its directory."""
    path = os.path.join(root, f"synthetic_{kind}_{num_examples}x{image_size}")
    if os.path.exists(os.path.join(path, info_lib.DATASET_INFO_FILE)):
        logging.info("reusing %s", path)
        return path
    if os.path.exists(path):
        shutil.rmtree(path)  # an interrupted earlier write of our own; redo it
    synthetic.write_synthetic_dataset(
        kind=kind,
        output_dir=path,
        num_examples=num_examples,
        image_size=image_size,
        seed=seed,
        workers=1,  # a process pool costs more than it saves at these sizes
    )
    return path


def _train(cfg: config_lib.RunConfig, *, index: int, total: int) -> dict[str, Any]:
    init = cfg.init
    logging.info(
        "[%d/%d] training %s (init=%s%s, seed %d) -> %s",
        index,
        total,
        cfg.model.name,
        init.name,
        f", upto={init.transfuse_upto}" if init.transfuse_upto else "",
        cfg.train.seed,
        cfg.train.workdir,
    )
    t0 = time.perf_counter()
    results = trainer.train_and_evaluate(cfg)
    logging.info(
        "[%d/%d] final validation mean AUC %.3f in %.1f s",
        index,
        total,
        results["final_auc_mean"] if results["final_auc_mean"] is not None else float("nan"),
        time.perf_counter() - t0,
    )
    return results


def _test_table(test: dict[str, dict[str, Any]], labels: Sequence[str], seeds: Sequence[int]):
    """Markdown table of test-split AUC per init (mean ± sd over seeds) and its rows."""
    rows = []
    for label in labels:
        values = [test[f"{label}_s{s}"]["auc_mean"] for s in seeds]
        mean, sd, n = tables.mean_sd(values)
        rows.append({"init": label, "auc_mean": mean, "auc_mean_sd": sd, "seeds": n})
    body = [
        [r["init"], str(r["seeds"]), tables.fmt_mean_sd(r["auc_mean"], r["auc_mean_sd"])]
        for r in rows
    ]
    return tables.markdown_table(["init", "seeds", "test mean AUC (best weights)"], body), rows


def headline(comparisons: Sequence[dict[str, Any]], thresholds: Sequence[str]) -> list[str]:
    """The demo's questions answered by the paired comparisons with random (`report.compare`)."""
    rows = {(r["init"].split(" ")[0], r["metric"]): r for r in comparisons}
    out = []
    for t in thresholds:
        metric = compare.steps_metric(t)
        if ("meanvar", metric) in rows:
            out.append(
                "Does Mean Var reach the threshold sooner than random here? "
                + compare.sentence(rows["meanvar", metric])
            )
        if ("transfer", metric) in rows:
            out.append(
                "Does transfer from the source model converge faster? "
                + compare.sentence(rows["transfer", metric])
            )
    if ("transfer", compare.TEST_AUC) in rows:
        out.append(
            "Does transfer change the final AUC (test split)? "
            + compare.sentence(rows["transfer", compare.TEST_AUC])
        )
    return out


def run_demo(
    *,
    output_dir: str,
    export_dir: str,
    quick: bool = False,
    seeds: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Runs the whole demo (see module docstring); returns a summary dict (also demo.json).

    Args:
      output_dir: datasets, runs (TensorBoard root), analyses and report.md go here.
      export_dir: the SavedModel base directory; the best run goes to `<export_dir>/demo/1`
        (replacing an earlier demo export there).
      quick: the small sizes the tests use (about 2 minutes on 2 CPU cores).
      seeds: seeds of the target runs (default: 2 in quick mode, 3 otherwise).
    """
    settings = demo_settings(quick=quick, seeds=seeds)
    timer = _Timer()
    logging.info("transfusion demo (%s) in %s", "quick mode" if quick else "default", output_dir)
    logging.info("%s", STAND_IN_NOTE)
    os.makedirs(output_dir, exist_ok=True)
    # Quick and default runs differ in config, so each mode keeps its own workdirs (a workdir
    # refuses another config); a rerun of the same mode finds its runs finished and reuses them.
    mode = "quick" if quick else "default"
    runs_dir = os.path.join(output_dir, "runs", mode)
    data_dir = os.path.join(output_dir, "data")

    natural_dir, fundus_dir = timer.stage(
        "1. synthetic datasets",
        lambda: (
            _dataset(
                "natural",
                root=data_dir,
                num_examples=settings.natural_examples,
                image_size=settings.image_size,
                seed=1,
            ),
            _dataset(
                "fundus",
                root=data_dir,
                num_examples=settings.fundus_examples,
                image_size=settings.image_size,
                seed=2,
            ),
        ),
    )
    natural_tasks = info_lib.load_dataset_info(natural_dir)["tasks"]
    fundus_tasks = info_lib.load_dataset_info(fundus_dir)["tasks"]

    inits_preview = target_inits(settings, source_workdir="", stats_file="")
    total = 1 + len(inits_preview) * len(settings.seeds)
    source_workdir = os.path.join(runs_dir, f"source_natural_{settings.model}")
    stats_file = os.path.join(output_dir, "source_stats.json")

    def pretrain() -> dict[str, Any]:
        cfg = run_config(
            settings,
            dataset_dir=natural_dir,
            num_tasks=len(natural_tasks),
            workdir=source_workdir,
            seed=0,
            train_steps=settings.source_steps,
            init={"name": "random"},
        )
        results = _train(cfg, index=1, total=total)
        stats = stats_lib.compute_stats(
            model_name=settings.model, source_weights=source_workdir, widths=settings.widths
        )
        stats_lib.write_stats(stats, stats_file)
        logging.info("source statistics for meanvar written to %s", stats_file)
        return results

    source_results = timer.stage("2. source pretraining on synthetic_natural", pretrain)

    inits = target_inits(settings, source_workdir=source_workdir, stats_file=stats_file)
    workdirs: dict[str, str] = {}

    def train_targets() -> None:
        index = 1
        for seed in settings.seeds:
            for target in inits:
                index += 1
                name = f"{target.label}_s{seed}"
                workdirs[name] = os.path.join(runs_dir, f"fundus_{name}")
                cfg = run_config(
                    settings,
                    dataset_dir=fundus_dir,
                    num_tasks=len(fundus_tasks),
                    workdir=workdirs[name],
                    seed=seed,
                    train_steps=settings.target_steps,
                    init=target.fields,
                )
                _train(cfg, index=index, total=total)

    timer.stage("3. target runs on synthetic_fundus", train_targets)

    def evaluate_all() -> dict[str, dict[str, Any]]:
        out = {}
        for name, workdir in workdirs.items():
            # Into the workdir (transfusion-evaluate's default), where the report finds it.
            out[name] = evaluation.evaluate(
                dataset_dir=fundus_dir,
                split="test",
                output_dir=os.path.join(workdir, compare.EVALUATION_DIR),
                workdir=workdir,
                weights="best",
                bootstrap_samples=200,
            )
        return out

    test = timer.stage("4. test-split evaluation", evaluate_all)
    labels = [t.label for t in inits]
    test_md, test_rows = _test_table(test, labels, settings.seeds)

    best_name = max(workdirs, key=lambda n: test[n]["auc_mean"] or -1.0)

    def export() -> dict[str, Any]:
        target = os.path.join(export_dir, "demo", "1")
        if os.path.exists(target):
            logging.info("replacing the earlier demo export %s", target)
            shutil.rmtree(target)
        path = saved_model.export_saved_model(
            workdir=workdirs[best_name],
            export_dir=export_dir,
            name="demo",
            version=1,
            weights="best",
        )
        loaded = tf.saved_model.load(path)
        serve = loaded.signatures["serving_default"]
        encoded = _test_image_bytes(fundus_dir, count=8)
        outputs = serve(tf.constant(encoded))
        probs = next(iter(outputs.values())).numpy()
        if probs.shape != (len(encoded), len(fundus_tasks)) or not np.all(np.isfinite(probs)):
            raise RuntimeError(f"{path}: serving_default returned {probs.shape} / non-finite")
        logging.info(
            "SavedModel %s loads; serving_default on %d test images OK", path, len(encoded)
        )
        return {"path": path, "run": best_name, "probabilities_shape": list(probs.shape)}

    exported = timer.stage("5. SavedModel export and reload", export)

    analysis_dir = os.path.join(output_dir, "analysis", mode)
    spec = act.ActivationSpec(split="valid", num_examples=settings.analysis_examples)

    def analyse() -> list[str]:
        if os.path.exists(analysis_dir):
            shutil.rmtree(analysis_dir)  # an earlier demo's outputs; the report lists the dir
        seed0 = settings.seeds[0]
        pair_runs = [
            workdirs[f"{lbl}_s{s}"] for lbl in ("random", "transfer") for s in settings.seeds
        ]
        dirs = []
        if len(pair_runs) >= 2:
            analyses.compare_runs(
                workdirs=pair_runs, output_dir=os.path.join(analysis_dir, "compare"), spec=spec
            )
            dirs.append(os.path.join(analysis_dir, "compare"))
        analyses.init_vs_final(
            workdirs=pair_runs, output_dir=os.path.join(analysis_dir, "init_vs_final"), spec=spec
        )
        dirs.append(os.path.join(analysis_dir, "init_vs_final"))
        analyses.filter_grids(
            workdirs=[workdirs[f"{lbl}_s{seed0}"] for lbl in ("random", "transfer", "gabor")],
            output_dir=os.path.join(analysis_dir, "filters"),
        )
        dirs.append(os.path.join(analysis_dir, "filters"))
        analyses.weight_change(
            workdirs=[workdirs[f"{t.label}_s{seed0}"] for t in inits],
            output_dir=os.path.join(analysis_dir, "weight_change"),
        )
        dirs.append(os.path.join(analysis_dir, "weight_change"))
        return dirs

    analysis_dirs = timer.stage("6. representational analyses", analyse)

    def write_report():
        thresholds = [metric_key(t) for t in settings.auc_thresholds]
        runs, _ = tables.find_runs([os.path.join(runs_dir, "fundus_*")])
        # The same comparisons (same bootstrap seed) as the report's table.
        comparisons = compare.comparison_rows(tables.group_runs(runs))
        answers = headline(comparisons, thresholds)
        intro = "\n".join(
            [
                STAND_IN_NOTE,
                "",
                f"Target task: `referable_dr` on `synthetic_fundus` ({settings.fundus_examples} "
                f"images at {settings.image_size} px); model `{settings.model}` with widths "
                f"{list(settings.widths)}; {settings.target_steps} {settings.optimizer} steps per "
                f"run (learning rate {settings.learning_rate}, the same for every init), seeds "
                f"{list(settings.seeds)}; source model trained {settings.source_steps} steps on "
                f"`synthetic_natural` ({len(natural_tasks)} classes, "
                f"{source_results.get('loss_function', 'sigmoid')} loss, final validation top-1 "
                f"accuracy {_num(source_results.get('final_top1_accuracy'))}, mean one-vs-rest "
                f"AUC {_num(source_results['final_auc_mean'])}). "
                f"{source_quality(source_results)}",
                "",
                "### What this run found",
                "",
                *[f"- {a}" for a in answers],
            ]
        )
        timing_md = tables.markdown_table(
            ["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in timer.seconds.items()]
        )
        export_md = (
            f"Best run by test mean AUC: `{exported['run']}`, exported to `{exported['path']}` "
            f"and reloaded with `tf.saved_model.load`; `serving_default` maps a batch of encoded "
            f"images to probabilities of shape {exported['probabilities_shape']}."
        )
        tb_md = f"`tensorboard --logdir {output_dir}` shows every run (and the analyses)."
        return (
            build_report(
                workdirs=[os.path.join(runs_dir, "fundus_*")],
                output_dir=output_dir,
                title="Transfusion demo",
                analysis_dirs=analysis_dirs,
                intro=intro,
                extra_sections=[
                    ("Test split", test_md),
                    ("SavedModel", export_md),
                    ("TensorBoard", tb_md),
                    ("Timings (before this report)", timing_md),
                ],
            ),
            answers,
            comparisons,
        )

    report, answers, comparisons = timer.stage("7. report", write_report)
    summary = {
        "mode": mode,
        "report": report.markdown_path,
        "saved_model": exported["path"],
        "tensorboard_root": output_dir,
        "headline": answers,
        "findings": list(report.findings),
        "comparisons": comparisons,
        "test": test_rows,
        "source_final_auc_mean": source_results["final_auc_mean"],
        "source_loss_function": source_results.get("loss_function"),
        "source_final_top1_accuracy": source_results.get("final_top1_accuracy"),
        "stage_seconds": timer.seconds,
        "total_seconds": timer.total(),
    }
    with open(os.path.join(output_dir, "demo.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    logging.info("demo finished in %.1f s: %s", summary["total_seconds"], report.markdown_path)
    return summary


def metric_key(threshold: float) -> str:
    """The key a threshold has in results.json's steps_to_threshold."""
    return metrics_lib.format_threshold(threshold)


def source_quality(source_results: dict[str, Any]) -> str:
    """A sentence on how much the source model learned, from its validation AUC."""
    auc = source_results.get("final_auc_mean")
    if auc is None:
        return "Its validation AUC is undefined, so what it learned is unknown."
    if auc < 0.6:
        return (
            f"At AUC {auc:.3f} the source model is close to chance, so 'transfer' here mostly "
            "carries the scale of its weights rather than learned features."
        )
    if auc < 0.75:
        return (
            f"At AUC {auc:.3f} the source model has learned only weak features, so expect "
            "little feature reuse from it."
        )
    return f"At AUC {auc:.3f} the source model has learned features worth transferring."


def _num(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def _test_image_bytes(dataset_dir: str, *, count: int) -> list[bytes]:
    """The encoded images of the first `count` test examples, as the serving signature takes."""
    num_tasks = len(info_lib.load_dataset_info(dataset_dir)["tasks"])
    records = tf.data.TFRecordDataset(info_lib.split_files(dataset_dir, "test")).take(count)
    return [schema.parse_example(r, num_tasks=num_tasks)["image_bytes"].numpy() for r in records]
