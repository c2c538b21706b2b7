"""`build_report`: the Markdown + PNG + CSV report over a glob of workdirs (SPEC X3).

Sections: findings and the comparison table (every init against the baseline init of the same
dataset and model, paired by seed: mean difference, 95 % bootstrap CI, n and a verdict word, by
`compare`; also `comparisons.csv`), the AUC table (mean ± sd over seeds, per task and macro
mean), the steps-to-threshold table (median over seeds with the censored count, and the AUC
curve area), convergence curves with spread bands, and the figures of `transfusion-analyze`
output directories when given (similarity, filter grids, weight change).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Sequence
from typing import Any

from absl import logging

from transfusion_tf.report import compare, figures, stats, tables

BASELINE_INIT = compare.BASELINE_INIT


@dataclasses.dataclass(frozen=True)
class Report:
    """What `build_report` wrote: the Markdown path, CSV paths, figure paths, findings."""

    markdown_path: str
    auc_csv: str
    steps_csv: str
    comparisons_csv: str
    figures: tuple[str, ...]
    findings: tuple[str, ...]
    auc_rows: tuple[dict[str, Any], ...]
    steps_rows: tuple[dict[str, Any], ...]
    comparison_rows: tuple[dict[str, Any], ...]
    skipped: tuple[str, ...]


def _analysis_section(analysis_dirs: Sequence[str], output_dir: str) -> tuple[str, list[str]]:
    """Copies each analysis directory's PNGs under figures/analysis/ and lists its tables."""
    lines: list[str] = []
    copied: list[str] = []
    for adir in analysis_dirs:
        if not os.path.isdir(adir):
            raise FileNotFoundError(f"analysis directory {adir} does not exist")
        name = figures.slug(os.path.basename(os.path.normpath(adir)))
        lines.append(f"### {os.path.basename(os.path.normpath(adir))}\n")
        images, tables_found = [], []
        for root, dirs, files in os.walk(adir):
            dirs.sort()
            if "tensorboard" in dirs:
                dirs.remove("tensorboard")
            for fname in sorted(files):
                src = os.path.join(root, fname)
                rel = os.path.relpath(src, adir)
                if fname.endswith(".png"):
                    dst = os.path.join(output_dir, "figures", "analysis", name, rel)
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    shutil.copyfile(src, dst)
                    copied.append(dst)
                    images.append(f"![{rel}]({os.path.relpath(dst, output_dir)})\n")
                elif fname.endswith((".csv", ".json")):
                    tables_found.append(f"`{rel}`")
        lines += images
        if tables_found:
            lines.append(f"Tables in `{adir}`: {', '.join(tables_found)}.\n")
        if not images and not tables_found:
            lines.append("(no figures or tables found)\n")
    return "\n".join(lines), copied


COMPARISON_NOTE = (
    "Each init minus the baseline `{baseline}` of the same dataset and model: the mean "
    "difference with a 95 % percentile bootstrap CI ({resamples} resamples, seeded) over seed "
    "pairs (runs of the same seed; unpaired runs: difference of means, each side resampled); "
    "for the AUCs the evaluation images are resampled too when the runs saved their "
    "predictions. Verdict: `higher` / `lower` when the CI excludes 0, else `no evidence` (which "
    "is not evidence of equality); with fewer than 2 pairs there is no CI, and with few seeds "
    "the interval is optimistic (with 2 pairs it spans the two differences). Steps to a threshold "
    "are interpolated between evals; a run that never reaches it counts as its train steps "
    "(censored), which bounds its pair's difference; fewer steps (`lower`) is faster."
)
STEPS_NOTE = (
    "Median over seeds of the steps at which the validation AUC reaches each threshold "
    "(interpolated between the evals around the crossing; the rule and the AUC's tasks are in "
    "the second column); a run that never reaches it counts as its train steps (censored), and "
    "`>=` marks a median that is itself censored. The AUC curve area is the validation AUC "
    "averaged over steps 0..train steps (mean ± sd over seeds, percent): a threshold-free speed."
)


def baseline_inits(groups: dict[tuple[str, str, str], list[tables.RunRecord]]) -> list[str]:
    """The init labels present in `groups`, in report order (the values --baseline_init takes)."""
    return list(dict.fromkeys(init for _, _, init in groups))


def build_report(
    *,
    workdirs: Sequence[str],
    output_dir: str,
    title: str = "Transfusion report",
    analysis_dirs: Sequence[str] = (),
    intro: str = "",
    extra_sections: Sequence[tuple[str, str]] = (),
    baseline_init: str = BASELINE_INIT,
    require_baseline: bool = False,
    bootstrap_samples: int = stats.DEFAULT_RESAMPLES,
    bootstrap_seed: int = 0,
    findings_section: bool = True,
) -> Report:
    """Writes `report.md`, `auc.csv`, `steps.csv`, `comparisons.csv` and `figures/*.png`.

    Args:
      workdirs: glob patterns of workdirs (or of directories holding workdirs).
      output_dir: where the report goes (created).
      title: the Markdown title.
      analysis_dirs: `transfusion-analyze` output directories whose PNGs and tables to include.
      intro: Markdown placed under the title.
      extra_sections: (heading, Markdown body) pairs appended after the tables.
      baseline_init: the init label every other init is compared with (as the tables show it,
        e.g. `random`, `imagenet`, `meanvar (bn=identity)`).
      require_baseline: raise ReportError when no run has `baseline_init` (else the findings
        say so).
      bootstrap_samples: bootstrap resamples of each comparison's CI.
      bootstrap_seed: seed of the resampling.
      findings_section: write the findings sentences (the comparison table in words); off
        when the caller leads with its own summary of the same comparisons (the demo's claims).
    Raises:
      ReportError / FileNotFoundError naming the pattern, file or flag that is wrong.
    """
    if not baseline_init:
        raise tables.ReportError("--baseline_init must name an init, e.g. random")
    if bootstrap_samples < 1:
        raise tables.ReportError(f"--bootstrap_samples must be >= 1; got {bootstrap_samples}")
    data = _collect(
        workdirs,
        baseline_init=baseline_init,
        require_baseline=require_baseline,
        bootstrap_samples=bootstrap_samples,
        bootstrap_seed=bootstrap_seed,
    )
    csvs = _write_tables(output_dir, data)
    md = [f"# {title}", ""] + ([intro, ""] if intro else [])
    md += _results_markdown(
        data,
        baseline_init=baseline_init,
        bootstrap_samples=bootstrap_samples,
        findings_section=findings_section,
    )
    for heading, body in extra_sections:
        md += [f"## {heading}", "", body, ""]
    written, fig_lines = _convergence_figures(data, output_dir)
    if fig_lines:
        md += ["## Convergence", ""] + [f"{line}\n" for line in fig_lines]
    if analysis_dirs:
        section, copied = _analysis_section(analysis_dirs, output_dir)
        written += copied
        md += ["## Representational analyses", "", section]
    md += _runs_markdown(data.runs, data.skipped)
    md_path = os.path.join(output_dir, "report.md")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")
    logging.info("Wrote %s (%d runs, %d figures)", md_path, len(data.runs), len(written))
    return Report(
        markdown_path=md_path,
        auc_csv=csvs[0],
        steps_csv=csvs[1],
        comparisons_csv=csvs[2],
        figures=tuple(written),
        findings=tuple(data.findings),
        auc_rows=tuple(data.auc),
        steps_rows=tuple(data.steps),
        comparison_rows=tuple(data.comparisons),
        skipped=tuple(data.skipped),
    )


@dataclasses.dataclass(frozen=True)
class _Tables:
    """The runs a report covers and the rows of its tables."""

    runs: list[tables.RunRecord]
    skipped: list[str]
    groups: dict[tuple[str, str, str], list[tables.RunRecord]]
    auc: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    thresholds: list[str]
    comparisons: list[dict[str, Any]]
    findings: list[str]


def _collect(
    workdirs: Sequence[str],
    *,
    baseline_init: str,
    require_baseline: bool,
    bootstrap_samples: int,
    bootstrap_seed: int,
) -> _Tables:
    """Finds the runs, groups them (dataset x model x init) and computes every table."""
    runs, skipped = tables.find_runs(workdirs)
    groups = tables.group_runs(runs)
    inits = baseline_inits(groups)
    if require_baseline and baseline_init not in inits:
        raise tables.ReportError(
            f"--baseline_init={baseline_init!r} matches no run; the inits found are: "
            + ", ".join(inits)
        )
    comparisons = compare.comparison_rows(
        groups, baseline=baseline_init, num_resamples=bootstrap_samples, seed=bootstrap_seed
    )
    return _Tables(
        runs=runs,
        skipped=skipped,
        groups=groups,
        auc=tables.auc_rows(groups),
        steps=tables.steps_rows(groups),
        thresholds=tables.thresholds_of(runs),
        comparisons=comparisons,
        findings=compare.findings(groups, comparisons, baseline=baseline_init),
    )


def _write_tables(output_dir: str, data: _Tables) -> tuple[str, str, str]:
    """Writes auc.csv, steps.csv and comparisons.csv (and creates figures/); returns the paths."""
    os.makedirs(os.path.join(output_dir, "figures"), exist_ok=True)
    auc_csv = os.path.join(output_dir, "auc.csv")
    steps_csv = os.path.join(output_dir, "steps.csv")
    comparisons_csv = os.path.join(output_dir, "comparisons.csv")
    tables.write_csv(auc_csv, data.auc)
    tables.write_csv(steps_csv, data.steps)
    compare.write_comparisons_csv(comparisons_csv, data.comparisons)
    return auc_csv, steps_csv, comparisons_csv


def _results_markdown(
    data: _Tables, *, baseline_init: str, bootstrap_samples: int, findings_section: bool
) -> list[str]:
    """The report's lines from the run count to the steps table (findings, comparisons, AUC)."""
    runs = data.runs
    md = [
        f"{len(runs)} runs in {len(data.groups)} groups (dataset × model × init); "
        "AUC in percent on the validation split, mean ± sample sd over seeds.",
        "",
    ]
    warned = [r for r in runs if r.results.get("warnings")]
    if warned:
        codes = sorted({w["code"] for r in warned for w in r.results["warnings"]})
        md += [
            f"**{len(warned)} of {len(runs)} runs finished with warnings** "
            f"({', '.join(codes)}): their numbers are in the tables below, marked in "
            "the list of runs; read them with care.",
            "",
        ]
    if findings_section:
        md += ["## Findings", ""] + [f"- {f}" for f in data.findings] + [""]
    if data.comparisons:
        md += [
            f"## Comparisons with `{baseline_init}`",
            "",
            COMPARISON_NOTE.format(baseline=baseline_init, resamples=bootstrap_samples),
            "",
            compare.comparisons_markdown(data.comparisons),
            "",
        ]
    md += ["## Final AUC", "", tables.auc_markdown(data.auc), ""]
    if data.thresholds:
        md += [
            "## Steps to AUC threshold",
            "",
            STEPS_NOTE,
            "",
            tables.steps_markdown(data.steps, data.thresholds),
            "",
        ]
    return md


def _convergence_figures(data: _Tables, output_dir: str) -> tuple[list[str], list[str]]:
    """Per (dataset, model): the convergence curves and one steps figure per threshold.

    Returns the PNG paths written and their Markdown image lines.
    """
    written: list[str] = []
    fig_lines: list[str] = []
    for dataset, model in dict.fromkeys((r["dataset"], r["model"]) for r in data.auc):
        stem = figures.slug(f"{dataset}_{model}")
        path = figures.convergence_figure(
            data.groups,
            dataset=dataset,
            model=model,
            path=os.path.join(output_dir, "figures", f"convergence_{stem}.png"),
            thresholds=[float(t) for t in data.thresholds],
        )
        if path:
            written.append(path)
            fig_lines.append(
                f"![convergence {model} on {dataset}](figures/{os.path.basename(path)})"
            )
        for t in data.thresholds:
            path = figures.steps_figure(
                data.steps,
                dataset=dataset,
                model=model,
                threshold=t,
                path=os.path.join(output_dir, "figures", f"steps_{figures.slug(t)}_{stem}.png"),
            )
            if path:
                written.append(path)
                fig_lines.append(
                    f"![steps to {t}, {model} on {dataset}](figures/{os.path.basename(path)})"
                )
    return written, fig_lines


def _runs_markdown(runs: Sequence[tables.RunRecord], skipped: Sequence[str]) -> list[str]:
    """The closing list of runs (with their warnings) and of the paths skipped."""
    md = ["## Runs", ""]
    md += [
        f"- `{r.workdir}`: {r.dataset} / {r.model} / {r.init}, seed {r.seed}"
        + "".join(f" — **warning**: {w['message']}" for w in r.results.get("warnings") or ())
        for r in runs
    ]
    if skipped:
        md += ["", "Skipped:", ""] + [f"- {s}" for s in skipped]
    return md
