"""The ``seeds:`` and ``decide:`` sections of a study: fixed or adaptive replicates, and how arms are decided.

::

    seeds: 3                                     # seeds 0, 1, 2; or a list of distinct seeds
    seeds: {adaptive: {start: 3, max: 30, batch: 2}}
    decide:
      metric: dice          # its direction and range come from ielcore.metric_info
      score: last           # how a trial is scored: last | mean_last_k (with k: 5) | best
      margin: 0.01          # practical-equivalence margin, in metric units (>= 0)
      alpha: 0.05           # family-wise error over the study's comparisons, in (0, 0.5]
      method: t             # t (anytime-valid paired t) | bounded (metrics with a known range)
                            # | t_sprt (SPRT tuned to 0.5 SD; may end 'futile', see stats/sprt.py)

Adaptive seeds start every cell with seeds ``0 .. start-1``; an undecided comparison gets the next
``batch`` seeds (``start``, ``start+1``, ...) up to ``max`` seeds in all.  They need ``decide:`` and a
``baseline:`` and cannot be combined with ``search:`` (checked in :mod:`orchestrator.study`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ielcore.errors import SpecError
from ielcore.fields import check_choice, check_float, check_int, check_keys, check_mapping
from ielcore.metric_info import MetricInfo, known_metrics, metric_info
from orchestrator.stats.sequential import Method, Score  # one definition, shared with the statistics

MAX_SEEDS = 10_000


@dataclass(frozen=True)
class AdaptiveSeeds:
    """Every cell starts with seeds ``0 .. start-1``; an undecided comparison gets ``batch`` more, up to ``max``."""

    start: int
    max: int
    batch: int

    @property
    def initial_seeds(self) -> tuple[int, ...]:
        return tuple(range(self.start))

    def next_seeds(self, have: int) -> tuple[int, ...]:
        """The seeds to add to a comparison that has seeds ``0 .. have-1``: up to ``batch``, never past ``max``."""
        return tuple(range(have, min(have + self.batch, self.max)))


@dataclass(frozen=True)
class DecideSpec:
    """How the study decides each arm against its row's baseline (see the module docstring).

    ``k`` is the number of last epochs averaged by ``score: mean_last_k`` (5 unless given; unused otherwise).
    """

    metric: str
    score: Score = Score.LAST
    k: int = 5
    margin: float = 0.0
    alpha: float = 0.05
    method: Method = Method.T

    @property
    def info(self) -> MetricInfo:
        info = metric_info(self.metric)
        assert info is not None  # checked when parsed
        return info

    @property
    def direction(self) -> str:
        return self.info.direction


def parse_seeds(raw: Any) -> tuple[tuple[int, ...], AdaptiveSeeds | None]:
    """``(the seeds to plan now, the adaptive design or None)`` from a count, a list or ``{adaptive: ...}``."""
    if isinstance(raw, dict):
        adaptive = _parse_adaptive(raw)
        return adaptive.initial_seeds, adaptive
    if isinstance(raw, list):
        if not raw:
            raise SpecError(
                "the seed list is empty; list at least one seed, e.g. [0, 1, 2], or give a count",
                path="seeds",
            )
        if len(raw) > MAX_SEEDS:
            raise SpecError(f"{len(raw)} seeds is over the limit of {MAX_SEEDS}; list fewer", path="seeds")
        seeds = tuple(check_int(s, f"seeds[{i}]", 0, 2**31 - 1) for i, s in enumerate(raw))
        for i, s in enumerate(seeds):
            if s in seeds[:i]:
                raise SpecError(
                    f"seed {s} is listed twice; seeds are replicates and must be distinct", path=f"seeds[{i}]"
                )
        return seeds, None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise SpecError(
            f"expected a seed count (3 means seeds 0, 1, 2), a list of seeds or "
            f"{{adaptive: {{start: 3, max: 30, batch: 2}}}} but got {raw!r}",
            path="seeds",
        )
    if not 1 <= raw <= MAX_SEEDS:
        raise SpecError(f"the seed count must be in 1..{MAX_SEEDS} but got {raw}", path="seeds")
    return tuple(range(raw)), None


def _parse_adaptive(raw: dict[str, Any]) -> AdaptiveSeeds:
    check_keys(raw, "seeds", ("adaptive",), required=("adaptive",))
    m = check_mapping(raw["adaptive"], "seeds.adaptive", required=True)
    check_keys(m, "seeds.adaptive", ("start", "max", "batch"), required=("start", "max"))
    start = check_int(m["start"], "seeds.adaptive.start", 2, MAX_SEEDS)
    top = check_int(m["max"], "seeds.adaptive.max", 1, MAX_SEEDS)
    if top < start:
        raise SpecError(
            f"max ({top}) is below start ({start}): max is the most seeds a comparison may get; "
            f"set max >= {start} or lower start",
            path="seeds.adaptive.max",
        )
    batch = m.get("batch", 1)
    if isinstance(batch, int) and not isinstance(batch, bool) and batch < 1:
        raise SpecError(
            f"batch must be >= 1 but got {batch}: it is how many seeds an undecided comparison gets at a "
            "time; set batch: 1 or more",
            path="seeds.adaptive.batch",
        )
    return AdaptiveSeeds(start=start, max=top, batch=check_int(batch, "seeds.adaptive.batch", 1, MAX_SEEDS))


def parse_decide(raw: Any) -> DecideSpec:
    m = check_mapping(raw, "decide", required=True)
    check_keys(m, "decide", ("metric", "score", "k", "margin", "alpha", "method"), required=("metric",))
    name = m["metric"]
    info = metric_info(name) if isinstance(name, str) else None
    if info is None:
        raise SpecError(
            f"no trial records a metric {name!r}; decide on one of: {', '.join(known_metrics())}",
            path="decide.metric",
        )
    score = Score(check_choice(m.get("score", "last"), "decide.score", tuple(Score)))
    if "k" in m and score is not Score.MEAN_LAST_K:
        raise SpecError(
            f"k is the number of last epochs averaged by score: mean_last_k, but score is {score.value!r}; "
            "remove k or set score: mean_last_k",
            path="decide.k",
        )
    k = check_int(m.get("k", 5), "decide.k", 1, 100_000)
    margin = check_float(m.get("margin", 0.0), "decide.margin", hint="a margin in metric units, >= 0")
    if margin < 0:
        raise SpecError(
            f"the equivalence margin must be >= 0 but got {margin}; give it in metric units, e.g. 0.01",
            path="decide.margin",
        )
    alpha = check_float(m.get("alpha", 0.05), "decide.alpha", hint="an error rate in (0, 0.5]")
    if not 0 < alpha <= 0.5:
        raise SpecError(
            f"alpha must be in (0, 0.5] but got {alpha}; it is the family-wise error rate, e.g. 0.05",
            path="decide.alpha",
        )
    method = Method(check_choice(m.get("method", "t"), "decide.method", tuple(Method)))
    if method is Method.BOUNDED and not info.bounded:
        raise SpecError(
            f"method bounded needs a metric with a known range, but {info.name} ranges over "
            f"[{info.low:g}, {info.high:g}]; use method: t or a bounded metric such as dice",
            path="decide.method",
        )
    return DecideSpec(metric=info.name, score=score, k=k, margin=margin, alpha=alpha, method=method)


__all__ = ["MAX_SEEDS", "AdaptiveSeeds", "DecideSpec", "Method", "Score", "parse_decide", "parse_seeds"]
