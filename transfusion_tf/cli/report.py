"""`transfusion-report`: Markdown + PNG + CSV report over a glob of training workdirs (SPEC X3).

Example:
  transfusion-report --workdirs='runs/retina_*' --output_dir=reports/retina
  transfusion-report --workdirs='runs/*/seed*' --baseline_init=imagenet --output_dir=reports/vs
"""

from __future__ import annotations

from absl import app, flags

from transfusion_tf.report import ReportError, build_report, stats
from transfusion_tf.report.report import BASELINE_INIT

FLAGS = flags.FLAGS

flags.DEFINE_list(
    "workdirs",
    None,
    "Comma-separated glob patterns of transfusion-train workdirs (or of directories holding "
    "workdirs). Runs that differ only in --seed are aggregated as mean ± sd.",
)
flags.DEFINE_string(
    "output_dir",
    None,
    "Directory for report.md, auc.csv, steps.csv, comparisons.csv and figures/.",
)
flags.DEFINE_string(
    "baseline_init",
    BASELINE_INIT,
    "Init label (as the tables show it, e.g. random, imagenet, 'meanvar (bn=identity)') every "
    "other init of the same dataset and model is compared with, paired by seed.",
)
flags.DEFINE_integer(
    "bootstrap_samples", stats.DEFAULT_RESAMPLES, "Bootstrap resamples of each comparison's CI."
)
flags.DEFINE_integer("bootstrap_seed", 0, "Seed of the comparisons' bootstrap resampling.")
flags.DEFINE_string("title", "Transfusion report", "Title of report.md.")
flags.DEFINE_list(
    "analysis_dirs",
    [],
    "Optional transfusion-analyze output directories whose figures and tables to include.",
)
flags.mark_flags_as_required(["workdirs", "output_dir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        report = build_report(
            workdirs=FLAGS.workdirs,
            output_dir=FLAGS.output_dir,
            title=FLAGS.title,
            analysis_dirs=FLAGS.analysis_dirs,
            baseline_init=FLAGS.baseline_init,
            require_baseline=FLAGS["baseline_init"].present,
            bootstrap_samples=FLAGS.bootstrap_samples,
            bootstrap_seed=FLAGS.bootstrap_seed,
        )
    except (ReportError, FileNotFoundError) as e:
        raise app.UsageError(str(e)) from e
    print(f"report: {report.markdown_path}")
    print(
        f"tables: {report.auc_csv}, {report.steps_csv}, {report.comparisons_csv}; "
        f"{len(report.figures)} figures"
    )
    for finding in report.findings:
        print(f"- {finding}")
    for skipped in report.skipped:
        print(f"skipped {skipped}")


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
