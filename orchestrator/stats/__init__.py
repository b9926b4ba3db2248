"""Statistics across seeds: fixed-n summaries (:mod:`.basic`), anytime-valid decisions (:mod:`.sequential`)
and the one path every output reads its numbers from (:mod:`.study`)."""

from orchestrator.stats.basic import Paired, Summary, bootstrap_interval, describe, holm, paired, t_interval
from orchestrator.stats.cells import (
    CellDecision,
    CellInput,
    CellStat,
    Comparison,
    compare_cells,
    decide_cells,
    summarise_cells,
)
from orchestrator.stats.sequential import (
    Decision,
    Method,
    Outcome,
    Score,
    bounded_cs,
    confidence_sequence,
    decide,
    t_boundary,
    t_cs,
    trial_score,
)

__all__ = [
    "CellDecision",
    "CellInput",
    "CellStat",
    "Comparison",
    "compare_cells",
    "decide_cells",
    "summarise_cells",
    "Decision",
    "Method",
    "Outcome",
    "Paired",
    "Score",
    "Summary",
    "bootstrap_interval",
    "bounded_cs",
    "confidence_sequence",
    "decide",
    "describe",
    "holm",
    "paired",
    "t_boundary",
    "t_cs",
    "t_interval",
    "trial_score",
]
