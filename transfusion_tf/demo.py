"""`run_demo`: the whole study in minutes on a CPU with no downloads (SPEC X1).

The demo is a list of stages (`STAGES`, data: a name, the function and the modes that run
it), each logged with its duration:
  1. datasets: `photo_patches` (`data.photos`: crops of the two photographs scikit-learn
     bundles, one class per region of a photograph) stands in for ImageNet; `synthetic_fundus`
     (SPEC D4) holds the referable-DR target task;
  2. a small CBR "source" model trained on `photo_patches` (a single-label dataset, so
     `--loss=auto` trains it with a softmax over its classes, as a model is trained on
     ImageNet) and its per-tensor statistics file (for Mean Var);
  3. a pilot random-init run on `synthetic_fundus` (a seed outside the target seeds) whose
     plateau fixes the AUC thresholds before any target run starts: chance + a fraction
     (`THRESHOLD_FRACTIONS`) of the way to the pilot's plateau;
  4. the target runs, one per init and seed, paired by seed: random, transfer from the source
     (init=imagenet with the source workdir as --source_weights), meanvar from the statistics
     file, weight transfusion up to the lowest unit (and further cut points where the settings
     name them), and gabor (several wavelengths, scaled to the source conv1's statistics);
  5. `--full` only: random-init runs of a model with 2x the widths (about 4x the weights) for
     "larger models change less" (Fig. 3), and random / transfer runs on a small training
     subset for transfer's gain with few images against many (the paper's 5,000-image
     regime, Tables 2-3);
  6. evaluation of every run's best weights on the test split (into the run's workdir, where
     the report's paired comparisons find it);
  7. export of the best run to `<export_dir>/demo/1` and a reload check of the SavedModel;
  8. the representational analyses (Fig. 2, 3, 5 equivalents and the weight change) and the
     orientation selectivity of conv1 (source vs its random init vs Gabor);
  9. `report.md`, led by the claims table (`report.claims`: one row per claim of the paper,
     the paired difference with its 95 % CI and the verdict), then the supporting tables and
     figures once each, and what the demo cannot show.
Every run logs to TensorBoard under `<output_dir>/runs/<mode>`, so
`tensorboard --logdir <output_dir>/runs/<mode>` compares them all.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
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
from transfusion_tf.data import photos, schema, synthetic
from transfusion_tf.export import saved_model
from transfusion_tf.init import stats as stats_lib
from transfusion_tf.report import build_report, compare, tables
from transfusion_tf.report import claims as claims_lib
from transfusion_tf.report import stats as report_stats
from transfusion_tf.training import evaluation, trainer
from transfusion_tf.training import metrics as metrics_lib

STAND_IN_NOTE = (
    "`photo_patches` is this demo's stand-in for ImageNet: no ImageNet weights are "
    "downloaded; the 'transfer' init copies a small CBR model pretrained to tell apart "
    "regions of the two photographs that ship with scikit-learn, from random crops."
)

MODES = ("quick", "default", "full")

# The target task's difficulty: lesions 3x their default radius (haemorrhages 3-6 px across at
# 32 px) at 0.4x their default opacity among 4x the lesion-like distractors, each image's
# lesions at a visibility drawn from U(0, 1). Random-init probes (seeds 100, 101) plateau at
# validation AUC 0.86 and 0.89 after 600 steps, slopes 0.013 and 0.003 AUC per 100 steps.
TARGET_STYLE = synthetic.FundusStyle(
    lesion_scale=3.0, lesion_contrast=0.4, distractors=4.0, min_visibility=0.0
)


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo; the modes differ only in these numbers.

    `train_examples`: the target runs' training subset (None: the whole train split);
    `large_widths` / `small_train_examples` (`--full` only): the larger model's widths and the
    small-data regime's training subset.
    """

    mode: str
    model: str
    widths: tuple[int, ...]
    image_size: int
    source_examples: int
    fundus_examples: int
    batch_size: int
    source_steps: int
    source_weight_decay: float
    target_steps: int
    eval_every_steps: int
    optimizer: str
    learning_rate: float
    seeds: tuple[int, ...]
    pilot_seed: int
    cut_points: tuple[str, ...]
    analysis_examples: int
    analysis_seeds: int  # seeds of random and transfer runs whose pairs are compared (Fig. 2)
    fundus_style: synthetic.FundusStyle = TARGET_STYLE
    train_examples: int | None = None
    large_widths: tuple[int, ...] | None = None
    small_train_examples: int | None = None

    @property
    def quick(self) -> bool:
        return self.mode == "quick"


# Thresholds sit this far from chance (0.5) to the pilot random run's plateau; the claims use
# the last (the paper's 0.91 on Retina is close to its random plateau).
THRESHOLD_FRACTIONS = (0.75, 0.9)
PLATEAU_PART = 0.25  # the last quarter of a run's evals: its plateau level and slope

_QUICK = DemoSettings(
    mode="quick",
    model="cbr_tiny",
    widths=(8, 16, 32, 64),
    image_size=32,
    source_examples=300,
    fundus_examples=400,
    batch_size=32,
    source_steps=40,
    source_weight_decay=5e-4,
    target_steps=30,
    eval_every_steps=5,
    optimizer="adam",
    learning_rate=0.003,
    seeds=(0, 1),
    pilot_seed=100,
    cut_points=("conv1", "conv2"),
    analysis_examples=32,
    analysis_seeds=2,
    # A smoke test of every stage: the easier default task learns within 30 steps.
    fundus_style=synthetic.DEFAULT_FUNDUS_STYLE,
)
_DEFAULT = dataclasses.replace(
    _QUICK,
    mode="default",
    source_examples=6000,
    fundus_examples=3000,
    source_steps=2000,
    target_steps=600,
    eval_every_steps=20,
    seeds=(0, 1, 2, 3, 4),
    cut_points=("conv1",),
    analysis_examples=64,
    analysis_seeds=4,
    fundus_style=TARGET_STYLE,
)
_FULL = dataclasses.replace(
    _DEFAULT, mode="full", large_widths=(16, 32, 64, 128), small_train_examples=150
)
_SETTINGS = {"quick": _QUICK, "default": _DEFAULT, "full": _FULL}


def demo_settings(
    *, quick: bool = False, full: bool = False, seeds: Sequence[int] | None = None
) -> DemoSettings:
    """The demo's sizes: `quick` fits about 3 minutes on 2 CPU cores, default about 15,
    `full` (default + a larger model and a small-data regime) about 45.

    The paper does not give its optimiser; the demo uses Adam with a cosine schedule (SGD at
    these few steps barely leaves chance level on the synthetic tasks), the same for every
    init, and evaluates at step 0 and every `eval_every_steps`.
    """
    if quick and full:
        raise ValueError("--quick and --full exclude each other")
    settings = _SETTINGS["quick" if quick else "full" if full else "default"]
    if seeds is not None:
        if len(seeds) < 1:
            raise ValueError("--seeds must name at least one seed")
        seeds = tuple(int(s) for s in seeds)
        if settings.pilot_seed in seeds:
            raise ValueError(f"--seeds must not hold the pilot run's seed {settings.pilot_seed}")
        settings = dataclasses.replace(settings, seeds=seeds)
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
    transfusions = [
        TargetInit(
            f"transfusion_{cut}",
            {"name": "transfusion", "source_weights": source_workdir, "transfuse_upto": cut},
        )
        for cut in settings.cut_points
    ]
    return [
        TargetInit("random", {"name": "random"}),
        TargetInit("transfer", {"name": "imagenet", "source_weights": source_workdir}),
        TargetInit(
            "meanvar", {"name": "meanvar", "stats_file": stats_file, "bn_policy": "identity"}
        ),
        *transfusions,
        TargetInit("gabor", {"name": "gabor", "stats_file": stats_file}),
    ]


class _Timer:
    """Collects the wall time of each stage and logs one line per stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.start = time.perf_counter()

    def stage(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        self.seconds[name] = time.perf_counter() - t0
        logging.info("%-52s %6.1f s", name, self.seconds[name])
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
    auc_thresholds: tuple[float, ...],
    widths: tuple[int, ...] | None = None,
    train_examples: int | None = None,
    weight_decay: float = 0.0,
) -> config_lib.RunConfig:
    """The RunConfig of one demo run (same optimisation for every init, as in the paper).

    `widths` (default: the settings') sizes the model; `train_examples` draws a training
    subset (`--train_examples`, the same subset for every init and seed).
    """
    return config_lib.RunConfig(
        data=config_lib.DataConfig(
            dataset_dir=dataset_dir,
            channels=3,
            batch_size=settings.batch_size,
            augment="default",
            shuffle_buffer=512,
            seed=seed,
            train_examples=train_examples,
        ),
        model=config_lib.ModelConfig(
            name=settings.model,
            num_tasks=num_tasks,
            image_size=settings.image_size,
            channels=3,
            widths=widths or settings.widths,
        ),
        init=config_lib.InitConfig(seed=seed, **init),
        train=config_lib.TrainConfig(
            workdir=workdir,
            optimizer=settings.optimizer,
            learning_rate=settings.learning_rate,
            lr_schedule="cosine",
            warmup_steps=0,
            weight_decay=weight_decay,
            train_steps=train_steps,
            eval_every_steps=settings.eval_every_steps,
            steps_per_loop=settings.eval_every_steps,
            checkpoint_every_steps=train_steps,
            auc_thresholds=auc_thresholds,
            seed=seed,
        ),
    )


def _dataset(
    kind: str,
    *,
    root: str,
    num_examples: int,
    image_size: int,
    seed: int,
    style: synthetic.FundusStyle = synthetic.DEFAULT_FUNDUS_STYLE,
) -> str:
    """Writes (or reuses) a dataset: `photo` (`data.photos`) or a synthetic kind; returns
    its directory."""
    prefix = photos.SOURCE_FORMAT if kind == "photo" else f"synthetic_{kind}"
    name = f"{prefix}_{num_examples}x{image_size}"
    if kind == "fundus" and style != synthetic.DEFAULT_FUNDUS_STYLE:
        name += f"_l{style.lesion_scale:g}c{style.lesion_contrast:g}d{style.distractors:g}"
        if style.min_visibility < 1:
            name += f"v{style.min_visibility:g}"
    path = os.path.join(root, name)
    if os.path.exists(os.path.join(path, info_lib.DATASET_INFO_FILE)):
        logging.debug("reusing %s", path)
        return path
    if os.path.exists(path):
        shutil.rmtree(path)  # an interrupted earlier write of our own; redo it
    if kind == "photo":
        photos.write_photo_dataset(
            output_dir=path, num_examples=num_examples, image_size=image_size, seed=seed
        )
        return path
    synthetic.write_synthetic_dataset(
        kind=kind,
        output_dir=path,
        num_examples=num_examples,
        image_size=image_size,
        seed=seed,
        workers=1,  # a process pool costs more than it saves at these sizes
        fundus_style=style,
    )
    return path


def plateau_and_slope(
    history: Sequence[dict[str, Any]], *, tasks: Sequence[str] = ()
) -> tuple[float | None, float | None]:
    """(mean AUC, least-squares slope in AUC per 100 steps) over the last `PLATEAU_PART` of a
    run's evals: how high its curve ends and whether it still rises there."""
    curve = [
        (int(r["step"]), metrics_lib.convergence_auc(r, tasks=tasks))
        for r in sorted(history, key=lambda r: r["step"])
    ]
    curve = [(s, a) for s, a in curve if a is not None]
    if len(curve) < 2:
        return None, None
    last_step = curve[-1][0]
    tail = [(s, a) for s, a in curve if s >= (1.0 - PLATEAU_PART) * last_step]
    if len(tail) < 2:
        tail = curve[-2:]
    steps, aucs = np.asarray(tail, np.float64).T
    slope = np.polyfit(steps, aucs, 1)[0] * 100.0
    return float(aucs.mean()), float(slope)


def thresholds_from_plateau(plateau: float) -> tuple[float, ...]:
    """AUC thresholds `THRESHOLD_FRACTIONS` of the way from chance (0.5) to `plateau`."""
    if plateau <= 0.55:
        raise RuntimeError(
            f"the pilot random run plateaus at AUC {plateau:.3f}, too close to chance to set "
            "thresholds; the target task is not learnable at these sizes"
        )
    return tuple(round(0.5 + f * (plateau - 0.5), 3) for f in THRESHOLD_FRACTIONS)


def _conv1_kernels(workdir: str) -> tuple[np.ndarray, np.ndarray]:
    """(init, final) conv1 kernels [k, k, in, out] of a run."""
    _, _, variables = analyses._init_and_final_weights(workdir)
    _, _, _, w0, w1 = next(v for v in variables if v[0] == "conv1_conv" and v[3].ndim == 4)
    return w0, w1


def conv1_filter_scores(*, source_workdir: str, gabor_workdir: str) -> list[dict[str, Any]]:
    """Orientation selectivity of conv1: the source's random init, the trained source, Gabor."""
    from transfusion_tf.analysis import orientation

    source_init, source_final = _conv1_kernels(source_workdir)
    gabor_init, _ = _conv1_kernels(gabor_workdir)
    return [
        {"conv1": label, **orientation.summary(kernel)}
        for label, kernel in (
            ("random init (the source's step 0)", source_init),
            ("source model after pretraining", source_final),
            ("gabor init", gabor_init),
        )
    ]


def relative_weight_change(workdir: str) -> float:
    """‖W_final − W_init‖ / ‖W_init‖ over all trainable weights of a run but its head."""
    _, units, variables = analyses._init_and_final_weights(workdir)
    body = {layer for u in units for layer in u.layers}
    diff = init = 0.0
    for layer, _, trainable, w0, w1 in variables:
        if trainable and layer in body:
            diff += float(np.sum((w1 - w0) ** 2))
            init += float(np.sum(w0**2))
    return float(np.sqrt(diff / init)) if init > 0 else float("nan")


def small_data_claim(
    test: dict[str, dict[str, Any]], *, seeds: Sequence[int], train_examples: int | None
) -> claims_lib.ClaimRow:
    """Transfer helps more with few training images: (transfer − random test AUC) on the
    small subset minus the same gain on the whole train split, paired by seed."""
    claim = "Transfer helps more with little data"
    paper = (
        "With 5,000 training images transfer adds more (ResNet50 92.2 → 94.6 on Retina) than "
        "with the full set, though little for the small CBRs (Tables 2–3)."
    )
    if train_examples is None:
        return claims_lib.ClaimRow(
            claim, paper, "needs --full", None, None, None, "–", claims_lib.NOT_TESTED
        )

    def gain(prefix: str, seed: int) -> float:
        return (
            test[f"{prefix}transfer_s{seed}"]["auc_mean"]
            - test[f"{prefix}random_s{seed}"]["auc_mean"]
        )

    diff = report_stats.paired_difference(
        base=[gain("", s) for s in seeds], other=[gain("small_", s) for s in seeds]
    )
    return claims_lib.ClaimRow(
        claim,
        paper,
        f"transfer's test-AUC gain over random with {train_examples} training images − "
        "its gain with the whole train split",
        diff.mean_diff,
        diff.ci_low,
        diff.ci_high,
        f"{diff.n_pairs} seed pairs",
        diff.verdict,
        "AUC",
    )


def _auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil's (1982) standard error of an AUC."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (
        auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)
    ) / max(positives * negatives, 1)
    return float(np.sqrt(max(var, 0.0)))


class _BarStream:
    """A text stream that prints through `tqdm.write`, so log lines stand above the bar."""

    def __init__(self, bar: Any, file: Any) -> None:
        self._bar, self._file = bar, file

    def write(self, text: str) -> int:
        if text.strip():
            self._bar.write(text.rstrip("\n"), file=self._file)
        return len(text)

    def flush(self) -> None:
        self._file.flush()


class _Progress:
    """A progress bar over the demo's training runs; while it is open, absl's console lines
    go through `tqdm.write` and stand above it instead of breaking it."""

    def __init__(self, total: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="runs", unit="run", dynamic_ncols=True, leave=False)
        handler = logging.get_absl_handler().python_handler
        self._handler = handler
        self._stream = handler.stream
        if self._stream in (sys.stderr, sys.stdout):
            handler.setStream(_BarStream(self.bar, self._stream))

    def train(self, cfg: config_lib.RunConfig, *, label: str) -> dict[str, Any]:
        """Trains one run (or finds it finished) and advances the bar."""
        self.bar.set_postfix_str(label)
        t0 = time.perf_counter()
        results = trainer.train_and_evaluate(cfg)
        logging.debug(
            "%s: final validation mean AUC %s in %.1f s",
            label,
            _num(results["final_auc_mean"]),
            time.perf_counter() - t0,
        )
        self.bar.update(1)
        if self.bar.n >= self.bar.total:
            self.close()  # the last run: later stage lines print below, not above a bar
        return results

    def close(self) -> None:
        """Closes the bar (once the training stages are over) and restores the console."""
        if self._handler.stream is not self._stream:
            self._handler.setStream(self._stream)
        self.bar.close()


@dataclasses.dataclass
class _Demo:
    """What the stages share: the settings and paths, and each stage's results by name.

    Each stage reads the fields earlier stages filled in and fills in its own.
    """

    settings: DemoSettings
    output_dir: str
    export_dir: str
    progress: _Progress
    timer: _Timer
    source_dir: str = ""
    fundus_dir: str = ""
    source_results: dict[str, Any] = dataclasses.field(default_factory=dict)
    pilot_plateau: float = float("nan")
    pilot_slope: float | None = None
    thresholds: tuple[float, ...] = ()
    workdirs: dict[str, str] = dataclasses.field(default_factory=dict)  # target runs
    extra_workdirs: dict[str, str] = dataclasses.field(default_factory=dict)  # --full runs
    test: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    exported: dict[str, Any] = dataclasses.field(default_factory=dict)
    analysis_dirs: list[str] = dataclasses.field(default_factory=list)
    compare_payload: dict[str, Any] | None = None
    filter_scores: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    weight_change: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def mode(self) -> str:
        return self.settings.mode

    @property
    def runs_dir(self) -> str:
        # Each mode keeps its own workdirs (a workdir refuses another config); a rerun of the
        # same mode finds its runs finished and reuses them.
        return os.path.join(self.output_dir, "runs", self.mode)

    @property
    def analysis_dir(self) -> str:
        return os.path.join(self.output_dir, "analysis", self.mode)

    @property
    def source_workdir(self) -> str:
        return os.path.join(self.runs_dir, f"source_photo_{self.settings.model}")

    @property
    def stats_file(self) -> str:
        return os.path.join(self.output_dir, f"source_stats_{self.mode}.json")

    @property
    def inits(self) -> list[TargetInit]:
        return target_inits(
            self.settings, source_workdir=self.source_workdir, stats_file=self.stats_file
        )

    @property
    def tasks(self) -> list[str]:
        return list(info_lib.load_dataset_info(self.fundus_dir)["tasks"])

    def target_config(self, workdir: str, *, seed: int, init: dict[str, Any], **kw: Any):
        """A target run's RunConfig (the thresholds fixed by the pilot run)."""
        return run_config(
            self.settings,
            dataset_dir=self.fundus_dir,
            num_tasks=len(self.tasks),
            workdir=workdir,
            seed=seed,
            train_steps=self.settings.target_steps,
            init=init,
            auc_thresholds=self.thresholds,
            **kw,
        )


def run_count(settings: DemoSettings) -> int:
    """Training runs of a demo: source, pilot, the target runs and `--full`'s extra runs."""
    per_seed = len(target_inits(settings, source_workdir="", stats_file=""))
    extra = (1 if settings.large_widths else 0) + (2 if settings.small_train_examples else 0)
    return 2 + (per_seed + extra) * len(settings.seeds)


def _make_datasets(demo: _Demo) -> None:
    s, root = demo.settings, os.path.join(demo.output_dir, "data")
    demo.source_dir = _dataset(
        "photo", root=root, num_examples=s.source_examples, image_size=s.image_size, seed=1
    )
    demo.fundus_dir = _dataset(
        "fundus",
        root=root,
        num_examples=s.fundus_examples,
        image_size=s.image_size,
        seed=2,
        style=s.fundus_style,
    )


def _pretrain_source(demo: _Demo) -> None:
    s = demo.settings
    cfg = run_config(
        s,
        dataset_dir=demo.source_dir,
        num_tasks=len(info_lib.load_dataset_info(demo.source_dir)["tasks"]),
        workdir=demo.source_workdir,
        seed=0,
        train_steps=s.source_steps,
        init={"name": "random"},
        auc_thresholds=(),
        weight_decay=s.source_weight_decay,
    )
    demo.source_results = demo.progress.train(cfg, label="source")
    stats = stats_lib.compute_stats(
        model_name=s.model, source_weights=demo.source_workdir, widths=s.widths
    )
    stats_lib.write_stats(stats, demo.stats_file)


def _pilot(demo: _Demo) -> None:
    workdir = os.path.join(demo.runs_dir, f"pilot_random_s{demo.settings.pilot_seed}")
    cfg = demo.target_config(workdir, seed=demo.settings.pilot_seed, init={"name": "random"})
    demo.progress.train(cfg, label="pilot random")
    level, demo.pilot_slope = plateau_and_slope(tables.load_run(workdir).history)
    if level is None:
        raise RuntimeError(f"{workdir}: the pilot run has no defined validation AUC")
    demo.pilot_plateau, demo.thresholds = level, thresholds_from_plateau(level)
    logging.info(
        "pilot plateau AUC %.3f: thresholds %s fixed before the target runs",
        level,
        ", ".join(f"{t:.3f}" for t in demo.thresholds),
    )


def _train_targets(demo: _Demo) -> None:
    # Seed-major order: an interrupted demo has complete seed pairs.
    for seed in demo.settings.seeds:
        for target in demo.inits:
            name = f"{target.label}_s{seed}"
            demo.workdirs[name] = os.path.join(demo.runs_dir, f"fundus_{name}")
            cfg = demo.target_config(
                demo.workdirs[name],
                seed=seed,
                init=target.fields,
                train_examples=demo.settings.train_examples,
            )
            demo.progress.train(cfg, label=name)


def _train_full_extras(demo: _Demo) -> None:
    """`--full`: a model of `large_widths` from random init, and random / transfer on
    `small_train_examples` images (workdirs outside the `fundus_*` groups of the report)."""
    s = demo.settings
    inits = {t.label: t.fields for t in demo.inits}
    for seed in s.seeds:
        jobs = [(f"large_random_s{seed}", inits["random"], {"widths": s.large_widths})]
        jobs += [
            (f"small_{label}_s{seed}", inits[label], {"train_examples": s.small_train_examples})
            for label in ("random", "transfer")
        ]
        for name, init, kw in jobs:
            demo.extra_workdirs[name] = os.path.join(demo.runs_dir, name)
            cfg = demo.target_config(demo.extra_workdirs[name], seed=seed, init=init, **kw)
            demo.progress.train(cfg, label=name)


def _evaluate(demo: _Demo) -> None:
    demo.progress.close()
    evaluated = {**demo.workdirs, **{k: v for k, v in demo.extra_workdirs.items() if "small_" in k}}
    for name, workdir in evaluated.items():
        # Into the workdir (transfusion-evaluate's default), where the report finds it.
        demo.test[name] = evaluation.evaluate(
            dataset_dir=demo.fundus_dir,
            split="test",
            output_dir=os.path.join(workdir, compare.EVALUATION_DIR),
            workdir=workdir,
            weights="best",
            bootstrap_samples=200,
        )


def _export(demo: _Demo) -> None:
    best = max(demo.workdirs, key=lambda n: demo.test[n]["auc_mean"] or -1.0)
    target = os.path.join(demo.export_dir, "demo", "1")
    if os.path.exists(target):
        logging.debug("replacing the earlier demo export %s", target)
        shutil.rmtree(target)
    path = saved_model.export_saved_model(
        workdir=demo.workdirs[best],
        export_dir=demo.export_dir,
        name="demo",
        version=1,
        weights="best",
    )
    serve = tf.saved_model.load(path).signatures["serving_default"]
    encoded = _test_image_bytes(demo.fundus_dir, count=8)
    probs = next(iter(serve(tf.constant(encoded)).values())).numpy()
    if probs.shape != (len(encoded), len(demo.tasks)) or not np.all(np.isfinite(probs)):
        raise RuntimeError(f"{path}: serving_default returned {probs.shape} / non-finite")
    demo.exported = {"path": path, "run": best, "probabilities_shape": list(probs.shape)}


def _analyse(demo: _Demo) -> None:
    s, out = demo.settings, demo.analysis_dir
    if os.path.exists(out):
        shutil.rmtree(out)  # an earlier demo's outputs; the report lists the dir
    spec = act.ActivationSpec(split="valid", num_examples=s.analysis_examples)
    seed0, runs = s.seeds[0], demo.workdirs
    pair_runs = [
        runs[f"{lbl}_s{seed}"]
        for lbl in ("random", "transfer")
        for seed in s.seeds[: s.analysis_seeds]
    ]
    if len(pair_runs) >= 2:
        demo.compare_payload = analyses.compare_runs(
            workdirs=pair_runs, output_dir=os.path.join(out, "compare"), spec=spec
        )
        demo.analysis_dirs.append(os.path.join(out, "compare"))
    calls = (
        ("init_vs_final", analyses.init_vs_final, ("random", "transfer"), {"spec": spec}),
        ("filters", analyses.filter_grids, ("random", "transfer", "gabor"), {}),
        ("weight_change", analyses.weight_change, [t.label for t in demo.inits], {}),
    )
    for name, fn, labels, kw in calls:
        fn(
            workdirs=[runs[f"{lbl}_s{seed0}"] for lbl in labels],
            output_dir=os.path.join(out, name),
            **kw,
        )
        demo.analysis_dirs.append(os.path.join(out, name))
    demo.filter_scores = conv1_filter_scores(
        source_workdir=demo.source_workdir, gabor_workdir=runs[f"gabor_s{seed0}"]
    )
    if s.large_widths:
        demo.weight_change = {
            _widths_label(widths): [relative_weight_change(w) for w in workdirs]
            for widths, workdirs in (
                (s.widths, [runs[f"random_s{seed}"] for seed in s.seeds]),
                (
                    s.large_widths,
                    [demo.extra_workdirs[f"large_random_s{seed}"] for seed in s.seeds],
                ),
            )
        }


def _widths_label(widths: Sequence[int]) -> str:
    return f"widths {widths[0]}–{widths[-1]}"


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


def _plateau_table(plateaus: dict[str, tuple[float | None, float | None]], labels, seeds):
    body = []
    for label in labels:
        levels = [plateaus[f"{label}_s{s}"][0] for s in seeds]
        slopes = [plateaus[f"{label}_s{s}"][1] for s in seeds]
        mean, sd, _ = tables.mean_sd(levels)
        finite = [abs(v) for v in slopes if v is not None]
        body.append(
            [
                label,
                tables.fmt_mean_sd(mean, sd),
                f"{np.mean([v for v in slopes if v is not None]):+.4f}" if finite else "–",
                f"{max(finite):.4f}" if finite else "–",
            ]
        )
    return tables.markdown_table(
        [
            "init",
            "plateau: validation AUC, last quarter (%)",
            "slope there (AUC / 100 steps), mean",
            "largest absolute slope",
        ],
        body,
    )


CANNOT_SHOW = (
    "Its data are synthetic or nearly so (fundus-like images drawn by "
    "`transfusion_tf.data.synthetic`, and crops of two photographs instead of ImageNet), so "
    "whether *real* ImageNet features help real retinal or chest images is outside it; its "
    "models are tiny CBRs trained for minutes on a CPU, far from the paper's ResNet50 / "
    "Inception-v3 at 224-587 px trained for 100k+ steps, so over-parametrisation effects "
    "(Fig. 3, model size) are only hinted at by {model_size} and need the paper grid "
    "(`flags/`); a run whose curve still rises at its end (see the slopes above) makes its "
    "final AUC a lower bound of its plateau; with {seeds} seeds per init a `no evidence` "
    "verdict is weak (it is not evidence of equality), and the representation CI, over "
    "{analysis_seeds} random and {analysis_seeds} transfer runs resampled, is wide."
)


def _claim_rows(demo: _Demo, groups, comparisons) -> list[claims_lib.ClaimRow]:
    """The claims table: the paper's six claims (model size from `--full`'s runs) and, with
    `--full`, the small-data claim."""
    s = demo.settings
    model_size = None
    if demo.weight_change:
        model_size = claims_lib.model_size_claim(
            demo.weight_change,
            smaller=_widths_label(s.widths),
            larger=_widths_label(s.large_widths or s.widths),
        )
    rows = claims_lib.claims_rows(
        groups=groups,
        comparisons=comparisons,
        threshold=metric_key(demo.thresholds[-1]),
        compare_payload=demo.compare_payload,
        lowest_transfusion=s.cut_points[0],
        model_size=model_size,
    )
    if s.small_train_examples:
        rows.append(
            small_data_claim(demo.test, seeds=s.seeds, train_examples=s.small_train_examples)
        )
    return rows


def _filters_markdown(demo: _Demo) -> tuple[str, str]:
    """The conv1 orientation table and the sentence on what the source's conv1 learned."""
    rows = demo.filter_scores
    table = tables.markdown_table(
        ["conv1", "orientation selectivity (mean ± sd over filters)", "distinct peak frequencies"],
        [
            [
                r["conv1"],
                f"{r['orientation_selectivity']:.2f} ± {r['orientation_selectivity_sd']:.2f}",
                f"{r['distinct_frequencies']} of {demo.settings.widths[0]}",
            ]
            for r in rows
        ],
    )
    osi = {r["conv1"]: r["orientation_selectivity"] for r in rows}
    learned = osi["source model after pretraining"] - osi["random init (the source's step 0)"]
    note = (
        f"The source's conv1 is {learned:+.2f} more orientation-selective than its random "
        "init (the Gabor bank: "
        f"{osi['gabor init']:.2f}): "
        + (
            "it learned oriented filters."
            if learned >= 0.1
            else "it did not learn clearly oriented (Gabor-like) filters, so transfer here "
            "carries what the source learned above conv1 and the scale of its weights, not "
            "ImageNet-like edge detectors."
        )
    )
    return table, note


def _intro_markdown(demo: _Demo, claims_md: str) -> str:
    s, st = demo.settings, demo.settings.fundus_style
    info = info_lib.load_dataset_info(demo.fundus_dir)
    valid, task = info["splits"]["valid"], info["tasks"][0]
    positives = int(valid["positives"][task])
    source = demo.source_results
    subset = f" ({s.train_examples} training images)" if s.train_examples else ""
    return "\n".join(
        [
            STAND_IN_NOTE,
            "",
            f"Target task: `{task}` on `synthetic_fundus` ({s.fundus_examples} images at "
            f"{s.image_size} px, lesions {st.lesion_scale:g}× their default radius at "
            f"{st.lesion_contrast:g}× opacity among {st.distractors:g}× the lesion-like "
            f"distractors{_visibility_note(st)}; validation split {valid['num_examples']} "
            f"images, {positives} "
            f"positive); model `{s.model}` with widths {list(s.widths)}; {s.target_steps} "
            f"{s.optimizer} steps per run{subset} (learning rate {s.learning_rate}, cosine "
            "schedule, the same for every init), validation AUC at step 0 and every "
            f"{s.eval_every_steps} steps; seeds {list(s.seeds)}, paired across inits. Source "
            f"model: {s.source_steps} steps on `photo_patches` "
            f"({len(photos.CLASSES)} classes, {source.get('loss_function', 'sigmoid')} loss, "
            f"weight decay {s.source_weight_decay:g}, final validation top-1 accuracy "
            f"{_num(source.get('final_top1_accuracy'))}, mean one-vs-rest AUC "
            f"{_num(source['final_auc_mean'])}). {source_quality(source)}",
            "",
            "## Claims of the paper, tested here",
            "",
            claims_md,
            "",
            "Differences are `init − random` paired by seed with a 95 % percentile bootstrap "
            "CI (test AUC: seeds and test images resampled); steps to the threshold are "
            "interpolated between evals, fewer is faster (`lower`). The verdict is the "
            "data's, whatever the paper says: `higher` / `lower` when the CI excludes 0 "
            "(50 % for the transfusion row), else `no evidence`.",
        ]
    )


def _visibility_note(style: synthetic.FundusStyle) -> str:
    if style.min_visibility >= 1:
        return ""
    return (
        f", each image's lesions drawn at a visibility from U({style.min_visibility:g}, 1), so "
        "some positives look negative and no model reaches AUC 1"
    )


def _design_markdown(demo: _Demo, filters_md: str, filters_note: str) -> str:
    s = demo.settings
    info = info_lib.load_dataset_info(demo.fundus_dir)
    valid, task = info["splits"]["valid"], info["tasks"][0]
    positives = int(valid["positives"][task])
    se = _auc_standard_error(
        demo.pilot_plateau, positives, int(valid["labelled"][task]) - positives
    )
    plateaus = {
        name: plateau_and_slope(tables.load_run(w).history)
        for name, w in {**demo.workdirs, **demo.extra_workdirs}.items()
    }
    labels = [t.label for t in demo.inits]
    parts = [
        f"Thresholds, fixed before the target runs from a pilot random-init run (seed "
        f"{s.pilot_seed}, not a target seed): its plateau (mean validation AUC over the last "
        f"quarter of its evals) is {demo.pilot_plateau:.3f} (slope there "
        f"{_signed(demo.pilot_slope)} AUC per 100 steps); thresholds at "
        + ", ".join(f"{100 * f:.0f} %" for f in THRESHOLD_FRACTIONS)
        + " of the way from chance to it: "
        + ", ".join(f"{t:.3f}" for t in demo.thresholds)
        + f" (the claims use {demo.thresholds[-1]:.3f}). Standard error of one validation "
        f"AUC at that level (Hanley & McNeil): {se:.3f}.",
        "",
        "Plateau of every run (the last quarter of its evals; a slope near 0 says the curve "
        "has flattened, so final AUC is the plateau's):",
        "",
        _plateau_table(plateaus, labels, s.seeds),
        "",
        "conv1 of the source against a random init and the Gabor bank (orientation "
        "selectivity: 1 = all spectral energy on one orientation; white-noise 5×5 filters "
        "score about 0.1; `transfusion_tf.analysis.orientation`):",
        "",
        filters_md,
        "",
        filters_note,
    ]
    if demo.extra_workdirs:
        parts += ["", _full_markdown(demo, plateaus)]
    return "\n".join(parts)


def _full_markdown(demo: _Demo, plateaus) -> str:
    """`--full`'s extra runs: relative weight change by model size and the small-data AUCs."""
    s = demo.settings
    change = [
        [label, str(len(values)), tables.fmt_mean_sd(*tables.mean_sd(values)[:2])]
        for label, values in demo.weight_change.items()
    ]
    small = []
    for prefix, images in (("", "whole train split"), ("small_", str(s.small_train_examples))):
        for label in ("random", "transfer"):
            values = [demo.test[f"{prefix}{label}_s{seed}"]["auc_mean"] for seed in s.seeds]
            small.append([label, images, tables.fmt_mean_sd(*tables.mean_sd(values)[:2])])
    large = [plateaus[f"large_random_s{seed}"][0] for seed in s.seeds]
    return "\n".join(
        [
            "Model size (random init, ‖W−W₀‖/‖W₀‖ over all layers but the head, mean ± sd "
            f"over seeds; the larger model's validation plateau "
            f"{tables.fmt_mean_sd(*tables.mean_sd(large)[:2])}):",
            "",
            tables.markdown_table(["model", "runs", "relative weight change"], change),
            "",
            "Small-data regime (test mean AUC of the best weights, mean ± sd over seeds):",
            "",
            tables.markdown_table(["init", "training images", "test mean AUC"], small),
        ]
    )


def _closing_sections(demo: _Demo) -> list[tuple[str, str]]:
    """The report's last sections: the SavedModel, TensorBoard, limits and stage timings."""
    s, exported = demo.settings, demo.exported
    model_size = (
        f"the `--full` mode's 2× wider model (widths {list(s.large_widths)}, 4× the weights)"
        if s.large_widths
        else "`--full` (a 2× wider model, 4× the weights)"
    )
    timings = [[k, f"{v:.1f}"] for k, v in demo.timer.seconds.items()]
    return [
        (
            "SavedModel",
            f"Best run by test mean AUC: `{exported['run']}`, exported to `{exported['path']}` "
            "and reloaded with `tf.saved_model.load`; `serving_default` maps a batch of "
            f"encoded images to probabilities of shape {exported['probabilities_shape']}.",
        ),
        ("TensorBoard", _tensorboard_markdown(demo.runs_dir)),
        (
            "What this demo cannot show",
            CANNOT_SHOW.format(
                seeds=len(s.seeds), model_size=model_size, analysis_seeds=s.analysis_seeds
            ),
        ),
        (
            "Timings (before this report)",
            tables.markdown_table(["stage", "seconds"], timings),
        ),
    ]


def _write_report(demo: _Demo) -> None:
    s = demo.settings
    runs, _ = tables.find_runs([os.path.join(demo.runs_dir, "fundus_*")])
    groups = tables.group_runs(runs)
    # The same comparisons (same bootstrap seed) as the report's table.
    comparisons = compare.comparison_rows(groups)
    claim_rows = _claim_rows(demo, groups, comparisons)
    claims_md = claims_lib.markdown(claim_rows)
    filters_md, filters_note = _filters_markdown(demo)
    test_md, test_rows = _test_table(demo.test, [t.label for t in demo.inits], s.seeds)
    report = build_report(
        workdirs=[os.path.join(demo.runs_dir, "fundus_*")],
        output_dir=demo.output_dir,
        title="Transfusion demo",
        analysis_dirs=demo.analysis_dirs,
        intro=_intro_markdown(demo, claims_md)
        + "\n\n## Design checks\n\n"
        + _design_markdown(demo, filters_md, filters_note),
        findings_section=False,
        extra_sections=[("Test split", test_md), *_closing_sections(demo)],
    )
    tensorboard_dir = write_tensorboard_summaries(
        runs_root=demo.runs_dir,
        runs=runs,
        report_markdown=[
            ("claims", claims_md),
            ("comparisons", compare.comparisons_markdown(comparisons)),
            ("test_split", test_md),
            ("conv1_filters", filters_md),
        ],
        figure_paths=report.figures,
    )
    demo.summary.update(
        {
            "mode": s.mode,
            "report": report.markdown_path,
            "saved_model": demo.exported["path"],
            "tensorboard_root": demo.runs_dir,
            "tensorboard_summaries": tensorboard_dir,
            "claims": [r.as_dict() for r in claim_rows],
            "claims_markdown": claims_md,
            "thresholds": list(demo.thresholds),
            "pilot_plateau": demo.pilot_plateau,
            "conv1_filters": demo.filter_scores,
            "comparisons": comparisons,
            "test": test_rows,
            "test_auc_by_run": {name: r["auc_mean"] for name, r in demo.test.items()},
            "weight_change_by_model": demo.weight_change,
            "source_final_auc_mean": demo.source_results["final_auc_mean"],
            "source_loss_function": demo.source_results.get("loss_function"),
            "source_final_top1_accuracy": demo.source_results.get("final_top1_accuracy"),
        }
    )


def _tensorboard_markdown(runs_dir: str) -> str:
    return (
        f"`tensorboard --logdir {runs_dir}`: each run's curves and conv1 filters under its "
        f"workdir; under `{TENSORBOARD_SUMMARY_DIR}/`, one run per training run named "
        "dataset / model / init / seed with its HParams (init, transfuse_upto, bn policy, "
        "source, seed; metrics best and final AUC, AUC curve area, steps to each threshold) "
        "and a `report` run with these tables as text and the figures as images."
    )


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of the demo: its console name, its function and the modes that run it."""

    name: str
    run: Callable[[_Demo], None]
    modes: tuple[str, ...] = MODES


STAGES: tuple[Stage, ...] = (
    Stage("datasets", _make_datasets),
    Stage("source pretraining on photo_patches", _pretrain_source),
    Stage("pilot random run: thresholds from its plateau", _pilot),
    Stage("target runs on synthetic_fundus", _train_targets),
    Stage("larger model and small-data runs", _train_full_extras, modes=("full",)),
    Stage("test-split evaluation", _evaluate),
    Stage("SavedModel export and reload", _export),
    Stage("representational analyses", _analyse),
    Stage("report", _write_report),
)


def run_demo(
    *,
    output_dir: str,
    export_dir: str,
    quick: bool = False,
    full: bool = False,
    seeds: Sequence[int] | None = None,
    settings: DemoSettings | None = None,
) -> dict[str, Any]:
    """Runs the whole demo (see module docstring); returns a summary dict (also demo.json).

    Args:
      output_dir: datasets, runs (TensorBoard root), analyses and report.md go here.
      export_dir: the SavedModel base directory; the best run goes to `<export_dir>/demo/1`
        (replacing an earlier demo export there).
      quick: the small sizes the tests use (about 3 minutes on 2 CPU cores).
      full: the default sizes plus a larger model and a small-data regime (about 45 minutes).
      seeds: seeds of the target runs (default: 2 in quick mode, 5 otherwise).
      settings: sizes of one's own (e.g. `--full`'s stages at `--quick`'s sizes), in place of
        `quick`, `full` and `seeds`.
    """
    if settings is None:
        settings = demo_settings(quick=quick, full=full, seeds=seeds)
    elif settings.mode not in MODES:
        raise ValueError(f"DemoSettings.mode must be one of {MODES}, got {settings.mode!r}")
    os.makedirs(output_dir, exist_ok=True)
    logging.info("transfusion demo (%s mode) in %s", settings.mode, output_dir)
    timer = _Timer()
    demo = _Demo(
        settings=settings,
        output_dir=output_dir,
        export_dir=export_dir,
        progress=_Progress(run_count(settings)),
        timer=timer,
    )
    stages = [stage for stage in STAGES if settings.mode in stage.modes]
    try:
        for number, stage in enumerate(stages, 1):
            timer.stage(f"{number}. {stage.name}", lambda stage=stage: stage.run(demo))
    finally:
        demo.progress.close()
    demo.summary["stage_seconds"] = timer.seconds
    demo.summary["total_seconds"] = timer.total()
    _write_json(os.path.join(output_dir, "demo.json"), demo.summary)
    logging.info("demo finished in %.1f s", demo.summary["total_seconds"])
    return demo.summary


def _write_json(path: str, payload: Any) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)


TENSORBOARD_SUMMARY_DIR = "summary"  # under the runs root: HParams table, claims, figures


def write_tensorboard_summaries(
    *,
    runs_root: str,
    runs: Sequence[tables.RunRecord],
    report_markdown: Sequence[tuple[str, str]],
    figure_paths: Sequence[str],
) -> str:
    """TensorBoard views of the report under `<runs_root>/summary`; returns that directory.

    - one run per training run named `<dataset>/<model>/<init>/seed_<n>` holding its HParams
      (init, transfuse_upto, bn policy, source, seed) and, as HParams metrics, best and final
      validation AUC, the AUC curve area and the interpolated steps to each threshold;
    - a `report` run with the report's tables as text and its figures as images.
    The training curves stay in each workdir's own TensorBoard folder.
    """
    from tensorboard.plugins.hparams import api as hp

    root = os.path.join(runs_root, TENSORBOARD_SUMMARY_DIR)
    if os.path.exists(root):
        shutil.rmtree(root)  # an earlier demo's summaries
    thresholds = tables.thresholds_of(runs)
    metric_tags = {
        "hparams/best_auc": "best validation AUC",
        "hparams/final_auc": "final validation AUC",
        "hparams/auc_curve_area": "AUC curve area",
        **{f"hparams/steps_to_{t}": f"steps to AUC {t}" for t in thresholds},
    }
    for run in runs:
        init = run.config.init
        source = init.source_weights or init.stats_file or "none"
        hparams = {
            "dataset": run.dataset,
            "model": run.model,
            "init": init.name,
            "transfuse_upto": init.transfuse_upto or "none",
            "bn_policy": init.bn_policy or "none",
            "source": os.path.basename(os.path.normpath(source)) if source != "none" else source,
            "seed": run.seed,
        }
        # One folder per field: the init label's own slashes (a source path) become "_".
        init_label = run.init.replace(" ", "").replace("/", "_")
        name = "/".join([run.dataset, run.model, init_label, f"seed_{run.seed}"])
        writer = tf.summary.create_file_writer(os.path.join(root, *name.split("/")))
        values = {
            "hparams/best_auc": run.results.get("best_auc_mean"),
            "hparams/final_auc": run.results.get("final_auc_mean"),
            "hparams/auc_curve_area": tables.curve_area(run),
        }
        for t in thresholds:
            found = tables.crossing(run, t)
            values[f"hparams/steps_to_{t}"] = None if found is None else found[0]
        with writer.as_default(step=0):
            hp.hparams_config(
                hparams=[hp.HParam(k) for k in hparams],
                metrics=[hp.Metric(tag, display_name=label) for tag, label in metric_tags.items()],
            )
            hp.hparams(hparams, trial_id=name)
            for tag, value in values.items():
                if value is not None:
                    tf.summary.scalar(tag, float(value), step=0)
        writer.close()
    writer = tf.summary.create_file_writer(os.path.join(root, "report"))
    with writer.as_default(step=0):
        for tag, text in report_markdown:
            tf.summary.text(f"report/{tag}", text, step=0)
        for path in figure_paths:
            image = tf.io.decode_png(tf.io.read_file(path), channels=3)
            tag = os.path.splitext(os.path.basename(path))[0]
            tf.summary.image(f"figures/{tag}", image[None], step=0)
    writer.close()
    return root


def _signed(value: float | None) -> str:
    return "undefined" if value is None else f"{value:+.4f}"


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
