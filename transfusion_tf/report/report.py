"""`build_report`: the Markdown + PNG + CSV report over a glob of workdirs (SPEC X3).

Sections: computed findings (each init against the random baseline of the same dataset and
model: final AUC difference relative to the seed spread, and steps to each AUC threshold), the
AUC table (mean ± sd over seeds, per task and macro mean), the steps-to-threshold table,
convergence curves with spread bands, and the figures of `transfusion-analyze` output
directories when given (similarity, filter grids, weight change).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Sequence
from typing import Any

from absl import logging

from transfusion_tf.report import figures, tables

BASELINE_INIT = "random"


@dataclasses.dataclass(frozen=True)
class Report:
    """What `build_report` wrote: the Markdown path, CSV paths, figure paths, findings."""

    markdown_path: str
    auc_csv: str
    steps_csv: str
    figures: tuple[str, ...]
    findings: tuple[str, ...]
    auc_rows: tuple[dict[str, Any], ...]
    steps_rows: tuple[dict[str, Any], ...]
    skipped: tuple[str, ...]


def _fmt(value: float | None, sd: float | None) -> str:
    return tables.fmt_mean_sd(value, sd, scale=1.0, digits=3)


def compare_auc(base: dict[str, Any], other: dict[str, Any]) -> str:
    """One sentence comparing the final mean AUC of `other` with `base` (auc_rows rows)."""
    if base["auc_mean"] is None or other["auc_mean"] is None:
        return f"{other['init']}: final mean AUC undefined for one of the two inits."
    delta = other["auc_mean"] - base["auc_mean"]
    spread = (base["auc_mean_sd"] or 0.0) + (other["auc_mean_sd"] or 0.0)
    where = "more than" if abs(delta) > spread else "within"
    verdict = f"{where} the seed spread (sum of sds {spread:.3f})"
    if abs(delta) < 5e-4:
        difference = "the same to 3 decimals"
    else:
        difference = f"{'higher' if delta > 0 else 'lower'} by {abs(delta):.3f}, {verdict}"
    return (
        f"{other['init']}: final mean AUC {_fmt(other['auc_mean'], other['auc_mean_sd'])} vs "
        f"{base['init']} {_fmt(base['auc_mean'], base['auc_mean_sd'])}: {difference}."
    )


def compare_steps(base: dict[str, Any], other: dict[str, Any], threshold: str) -> str:
    """One sentence comparing steps to `threshold` of `other` with `base` (steps_rows rows)."""

    def describe(row: dict[str, Any]) -> str:
        n, seeds = row[f"reached@{threshold}"], row["seeds"]
        if n == 0:
            return f"never within {row['train_steps']} steps (0/{seeds} seeds)"
        m, s = row[f"steps@{threshold}"], row[f"steps@{threshold}_sd"]
        return f"in {m:.0f} ± {s:.0f} steps ({n}/{seeds} seeds)"

    nb, no = base[f"reached@{threshold}"], other[f"reached@{threshold}"]
    fb, fo = nb / base["seeds"], no / other["seeds"]
    if no == 0 and nb == 0:
        verdict = "neither reaches it"
    elif fo != fb:
        verdict = f"{other['init'] if fo > fb else base['init']} reaches it in more seeds"
    else:
        mb, mo = base[f"steps@{threshold}"], other[f"steps@{threshold}"]
        if mo < mb:
            verdict = f"{mb - mo:.0f} steps sooner ({(mb - mo) / mb:.0%} fewer)"
        elif mo > mb:
            verdict = f"{mo - mb:.0f} steps later ({(mo - mb) / mb:.0%} more)"
        else:
            verdict = "at the same step"
    return (
        f"{other['init']} reaches mean AUC {threshold} {describe(other)}; "
        f"{base['init']} {describe(base)}: {verdict}."
    )


def findings(
    auc_rows: Sequence[dict[str, Any]],
    steps_rows: Sequence[dict[str, Any]],
    thresholds: Sequence[str],
    *,
    baseline: str = BASELINE_INIT,
) -> list[str]:
    """Sentences computed from the numbers: every init vs `baseline` within (dataset, model).

    Pairs without a baseline group get one sentence saying so. Returns Markdown list items.
    """
    out: list[str] = []
    pairs = list(dict.fromkeys((r["dataset"], r["model"]) for r in auc_rows))
    for dataset, model in pairs:
        auc_by_init = {
            r["init"]: r for r in auc_rows if (r["dataset"], r["model"]) == (dataset, model)
        }
        steps_by_init = {
            r["init"]: r for r in steps_rows if (r["dataset"], r["model"]) == (dataset, model)
        }
        if baseline not in auc_by_init:
            out.append(f"**{model} on {dataset}**: no `{baseline}` runs to compare against.")
            continue
        for init, row in auc_by_init.items():
            if init == baseline:
                continue
            parts = [compare_auc(auc_by_init[baseline], row)]
            parts += [
                compare_steps(steps_by_init[baseline], steps_by_init[init], t) for t in thresholds
            ]
            out.append(f"**{model} on {dataset}** — " + " ".join(parts))
    return out


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


def build_report(
    *,
    workdirs: Sequence[str],
    output_dir: str,
    title: str = "Transfusion report",
    analysis_dirs: Sequence[str] = (),
    intro: str = "",
    extra_sections: Sequence[tuple[str, str]] = (),
) -> Report:
    """Writes `report.md`, `auc.csv`, `steps.csv` and `figures/*.png` under `output_dir`.

    Args:
      workdirs: glob patterns of workdirs (or of directories holding workdirs).
      output_dir: where the report goes (created).
      title: the Markdown title.
      analysis_dirs: `transfusion-analyze` output directories whose PNGs and tables to include.
      intro: Markdown placed under the title.
      extra_sections: (heading, Markdown body) pairs appended after the tables.
    Raises:
      ReportError / FileNotFoundError naming the pattern or file that could not be read.
    """
    runs, skipped = tables.find_runs(workdirs)
    groups = tables.group_runs(runs)
    auc = tables.auc_rows(groups)
    steps = tables.steps_rows(groups)
    thresholds = tables.thresholds_of(runs)
    os.makedirs(os.path.join(output_dir, "figures"), exist_ok=True)
    auc_csv = os.path.join(output_dir, "auc.csv")
    steps_csv = os.path.join(output_dir, "steps.csv")
    tables.write_csv(auc_csv, auc)
    tables.write_csv(steps_csv, steps)

    found = findings(auc, steps, thresholds)
    md = [f"# {title}", ""]
    if intro:
        md += [intro, ""]
    md += [
        f"{len(runs)} runs in {len(groups)} groups (dataset × model × init); "
        "AUC in percent on the validation split, mean ± sample sd over seeds.",
        "",
    ]
    md += ["## Findings", ""] + [f"- {f}" for f in found] + [""]
    md += ["## Final AUC", "", tables.auc_markdown(auc), ""]
    if thresholds:
        md += ["## Steps to AUC threshold", "", tables.steps_markdown(steps, thresholds), ""]
    for heading, body in extra_sections:
        md += [f"## {heading}", "", body, ""]

    written: list[str] = []
    pairs = list(dict.fromkeys((r["dataset"], r["model"]) for r in auc))
    fig_lines: list[str] = []
    for dataset, model in pairs:
        stem = figures.slug(f"{dataset}_{model}")
        path = figures.convergence_figure(
            groups,
            dataset=dataset,
            model=model,
            path=os.path.join(output_dir, "figures", f"convergence_{stem}.png"),
            thresholds=[float(t) for t in thresholds],
        )
        if path:
            written.append(path)
            fig_lines.append(
                f"![convergence {model} on {dataset}](figures/{os.path.basename(path)})"
            )
        for t in thresholds:
            path = figures.steps_figure(
                steps,
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
    if fig_lines:
        md += ["## Convergence", ""] + [f"{line}\n" for line in fig_lines]
    if analysis_dirs:
        section, copied = _analysis_section(analysis_dirs, output_dir)
        written += copied
        md += ["## Representational analyses", "", section]
    md += ["## Runs", ""]
    md += [f"- `{r.workdir}`: {r.dataset} / {r.model} / {r.init}, seed {r.seed}" for r in runs]
    if skipped:
        md += ["", "Skipped:", ""] + [f"- {s}" for s in skipped]
    md_path = os.path.join(output_dir, "report.md")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")
    logging.info("Wrote %s (%d runs, %d figures)", md_path, len(runs), len(written))
    return Report(
        markdown_path=md_path,
        auc_csv=auc_csv,
        steps_csv=steps_csv,
        figures=tuple(written),
        findings=tuple(found),
        auc_rows=tuple(auc),
        steps_rows=tuple(steps),
        skipped=tuple(skipped),
    )
