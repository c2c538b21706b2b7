"""transfusion_tf.report: tables, figures and the Markdown report over many workdirs (SPEC X3)."""

from transfusion_tf.report.report import Report, build_report
from transfusion_tf.report.tables import ReportError

__all__ = ["Report", "ReportError", "build_report"]
