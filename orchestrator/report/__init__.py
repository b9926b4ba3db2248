"""Study reports: per-cell statistics over seeds, paired comparisons with the baseline arm, figures.

``iel report STUDY`` calls :func:`build_report`; see :mod:`orchestrator.report.tables` for the statistics
and the row/arm vocabulary, :mod:`orchestrator.report.plots` for the figures.
"""

from orchestrator.report.build import Report, build_report, log_report
from orchestrator.report.tables import (
    CellData,
    CellStat,
    Comparison,
    StudyData,
    assign_rows,
    compare,
    load_study_data,
    summarise,
)

__all__ = [
    "CellData",
    "CellStat",
    "Comparison",
    "Report",
    "StudyData",
    "assign_rows",
    "build_report",
    "compare",
    "load_study_data",
    "log_report",
    "summarise",
]
