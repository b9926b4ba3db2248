"""What each recorded metric means: its direction (higher or lower is better) and its range.

The one place every other part reads this from: the study spec (objectives, ``decide.metric``), the
statistics (which arm is best, whether an interval may be clipped to the metric's range, whether the
nonparametric ``bounded`` method applies) and the reports.  Per-class Dice is recorded as ``dice_c1``,
``dice_c2``, ... (foreground class ``k``), so a collapse of one class is visible.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

Direction = Literal["maximize", "minimize"]


@dataclass(frozen=True)
class MetricInfo:
    """A metric's direction and its range ``[low, high]`` (``high`` may be ``inf``)."""

    name: str
    direction: Direction
    low: float = 0.0
    high: float = 1.0

    @property
    def bounded(self) -> bool:
        """True when both ends of the range are finite (the ``bounded`` decision method applies)."""
        return math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def sign(self) -> float:
        """+1 when higher is better, -1 when lower is better."""
        return 1.0 if self.direction == "maximize" else -1.0

    def clip(self, value: float | None) -> float | None:
        """``value`` clipped to the metric's range (``None`` stays ``None``)."""
        if value is None or not math.isfinite(value):
            return value
        return min(max(value, self.low), self.high)


_INF = math.inf
METRIC_INFO: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("dice", "maximize"),
        MetricInfo("miou", "maximize"),
        MetricInfo("pixel_acc", "maximize"),
        MetricInfo("val_loss", "minimize", 0.0, _INF),
        MetricInfo("train_loss", "minimize", 0.0, _INF),
        MetricInfo("solidity", "maximize"),
        MetricInfo("nonconvex_share", "minimize"),
        MetricInfo("multi_component_share", "minimize"),
        MetricInfo("components", "minimize", 0.0, _INF),
        MetricInfo("object_solidity", "maximize"),
        MetricInfo("nonconvex_area_share", "minimize"),
    )
}
"""Every metric a trial records, by name (per-class Dice ``dice_c<k>`` is matched by pattern)."""

_PER_CLASS = re.compile(r"dice_c([1-9][0-9]*)")


def metric_info(name: str) -> MetricInfo | None:
    """The definition of ``name``, or ``None`` for a metric no trial records."""
    if name in METRIC_INFO:
        return METRIC_INFO[name]
    if _PER_CLASS.fullmatch(name):
        return MetricInfo(name, "maximize")
    return None


def known_metrics() -> tuple[str, ...]:
    """Names to list in an error message about an unknown metric."""
    return (*METRIC_INFO, "dice_c1", "dice_c2", "...")
