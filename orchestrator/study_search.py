"""The ``search:`` section of a study: an Optuna search run inside every cell.

::

    search: {n_trials: 8, sampler: tpe, pruner: median, objectives: [{metric: dice}],
             params: {optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}}}

Objectives name metrics of :mod:`ielcore.metric_info` (their direction is the metric's unless given).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ielcore.errors import SpecError
from ielcore.fields import check_choice, check_float, check_int, check_keys, check_mapping
from ielcore.fields import same_value as same_value
from ielcore.metric_info import known_metrics, metric_info

DIRECTIONS = ("maximize", "minimize")
SAMPLERS = ("tpe", "random", "grid", "cmaes", "nsga2")
PRUNERS = ("median", "hyperband", "none")
PARAM_TYPES = ("float", "int", "categorical")
MAX_GRID_POINTS = 100_000
MAX_SEARCH_TRIALS = 1_000_000


def value_list(value: Any, path: str, *, unique: bool = True) -> tuple[Any, ...]:
    """A non-empty list of factor values (each listed once unless ``unique`` is false)."""
    if not isinstance(value, list) or not value:
        raise SpecError(f"expected a non-empty list of values (e.g. [0.0, 0.2]) but got {value!r}", path=path)
    if unique:
        for i, v in enumerate(value):
            if any(same_value(v, w) for w in value[:i]):
                raise SpecError(f"value {v!r} is listed twice; list each value once", path=path)
    return tuple(value)


def seq(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(f"expected a list but got {value!r}", path=path)
    return value


@dataclass(frozen=True)
class SearchParam:
    """One searched configuration path: ``float``/``int`` in ``[low, high]`` (``log``, ``step``) or ``categorical``."""

    path: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] | None = None

    def grid_values(self) -> list[Any]:
        """The finite set of values (categorical, int, or float with a step); ValueError otherwise."""
        if self.choices is not None:
            return list(self.choices)
        if self.step is None or self.low is None or self.high is None:
            raise ValueError(f"{self.path}: a continuous float distribution has no grid")
        n = round((self.high - self.low) / self.step)
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step)))
        return [float(f"{self.low + i * self.step:.12g}") for i in range(n + 1)]

    def grid_size(self) -> int:
        if self.choices is not None:
            return len(self.choices)
        assert self.step is not None and self.low is not None and self.high is not None
        return round((self.high - self.low) / self.step) + 1


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str


@dataclass(frozen=True)
class SearchSpec:
    """An Optuna search run inside every cell (``n_trials`` per cell)."""

    params: tuple[SearchParam, ...]
    n_trials: int
    sampler: str
    pruner: str
    seed: int
    objectives: tuple[Objective, ...]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(o.direction for o in self.objectives)

    def param(self, path: str) -> SearchParam:
        for p in self.params:
            if p.path == path:
                return p
        raise KeyError(f"{path!r} is not a search parameter; parameters: {[p.path for p in self.params]}")

    def grid_space(self) -> dict[str, list[Any]]:
        """The search space of Optuna's ``GridSampler`` (``{path: [values]}``); needs finite params."""
        return {p.path: p.grid_values() for p in self.params}


def parse_search(raw: Any) -> SearchSpec:
    m = check_mapping(raw, "search", required=True)
    check_keys(
        m, "search", ("n_trials", "sampler", "pruner", "seed", "objectives", "params"), required=("params",)
    )
    sampler = check_choice(m.get("sampler", "tpe"), "search.sampler", SAMPLERS)
    objectives = _parse_objectives(m.get("objectives", [{"metric": "dice"}]))
    multi = len(objectives) > 1
    pruner = check_choice(m.get("pruner", "none" if multi else "median"), "search.pruner", PRUNERS)
    if multi and pruner != "none":
        raise SpecError(
            f"Optuna cannot prune a multi-objective study ({len(objectives)} objectives) but got "
            f"pruner {pruner!r}; set 'pruner: none' or keep one objective",
            path="search.pruner",
        )
    if multi and sampler == "cmaes":
        raise SpecError(
            "the cmaes sampler optimises one objective only; use nsga2, tpe or random for several",
            path="search.sampler",
        )
    seed = check_int(m.get("seed", 0), "search.seed", 0, 2**32 - 1)
    params_raw = check_mapping(m["params"], "search.params", required=True)
    if not params_raw:
        raise SpecError(
            "list at least one parameter to search, e.g. {iel.dt: {type: float, low: 0.01, high: 0.3}}",
            path="search.params",
        )
    params = tuple(_parse_param(p, v, f"search.params.{p}") for p, v in params_raw.items())
    grid_size = None
    if sampler == "grid":
        grid_size = 1
        for p in params:
            if p.choices is None and p.step is None:
                raise SpecError(
                    "the grid sampler needs a finite set of values: give this float a 'step', or use "
                    "type: int or type: categorical",
                    path=f"search.params.{p.path}",
                )
            grid_size *= p.grid_size()
            if grid_size > MAX_GRID_POINTS:
                raise SpecError(
                    f"the grid has over {MAX_GRID_POINTS} points; use coarser steps or fewer values",
                    path="search.params",
                )
    if "n_trials" not in m and grid_size is not None:
        n_trials = grid_size
    else:
        n_trials = check_int(m.get("n_trials"), "search.n_trials", 1, MAX_SEARCH_TRIALS)
    if grid_size is not None and n_trials > grid_size:
        raise SpecError(
            f"the grid has only {grid_size} points but n_trials is {n_trials}; set n_trials <= "
            f"{grid_size} or leave it out (then every grid point is run once)",
            path="search.n_trials",
        )
    return SearchSpec(
        params=params, n_trials=n_trials, sampler=sampler, pruner=pruner, seed=seed, objectives=objectives
    )


def _parse_objectives(raw: Any) -> tuple[Objective, ...]:
    items = seq(raw, "search.objectives")
    if not items:
        raise SpecError("list at least one objective, e.g. [{metric: dice}]", path="search.objectives")
    out: list[Objective] = []
    for i, item in enumerate(items):
        where = f"search.objectives[{i}]"
        obj = {"metric": item} if isinstance(item, str) else check_mapping(item, where, required=True)
        check_keys(obj, where, ("metric", "direction"), required=("metric",))
        info = metric_info(obj["metric"]) if isinstance(obj["metric"], str) else None
        if info is None:
            raise SpecError(
                f"unknown metric {obj['metric']!r}; trials record: {', '.join(known_metrics())}",
                path=f"{where}.metric",
            )
        metric = info.name
        if any(o.metric == metric for o in out):
            raise SpecError(
                f"metric {metric!r} is listed twice; list each objective once", path=f"{where}.metric"
            )
        direction = check_choice(obj.get("direction", info.direction), f"{where}.direction", DIRECTIONS)
        out.append(Objective(metric=metric, direction=direction))
    return tuple(out)


def _parse_categorical(path: str, m: dict[str, Any], where: str) -> SearchParam:
    check_keys(m, where, ("type", "choices"), required=("choices",))
    choices = m["choices"]
    if not isinstance(choices, list) or not choices:
        raise SpecError(
            f"expected a non-empty list of choices (e.g. [adam, sgd]) but got {choices!r}",
            path=f"{where}.choices",
        )
    for c in choices:
        if c is not None and not isinstance(c, bool | int | float | str):
            raise SpecError(
                f"choices must be null, booleans, numbers or strings but got {c!r}", path=f"{where}.choices"
            )
    return SearchParam(path=path, type="categorical", choices=value_list(choices, f"{where}.choices"))


def _parse_param(path: str, raw: Any, where: str) -> SearchParam:
    m = check_mapping(raw, where, required=True)
    kind = check_choice(m.get("type"), f"{where}.type", PARAM_TYPES)
    if kind == "categorical":
        return _parse_categorical(path, m, where)
    check_keys(m, where, ("type", "low", "high", "log", "step"), required=("low", "high"))
    if kind == "int":
        hint = "; use type: float for real values"
        for key in ("low", "high"):
            if isinstance(m[key], bool) or not isinstance(m[key], int):
                raise SpecError(
                    f"an int distribution needs integer bounds but got {m[key]!r}{hint}",
                    path=f"{where}.{key}",
                )
        low, high = m["low"], m["high"]
        step: float | int | None = check_int(m.get("step", 1), f"{where}.step", 1)
    else:
        low = check_float(m["low"], f"{where}.low")
        high = check_float(m["high"], f"{where}.high")
        step = None if m.get("step") is None else check_float(m["step"], f"{where}.step", 0.0, low_open=True)
    if low > high:
        raise SpecError(f"low ({low}) must be <= high ({high}); swap them", path=f"{where}.low")
    log = m.get("log", False)
    if not isinstance(log, bool):
        raise SpecError(f"expected true or false but got {log!r}", path=f"{where}.log")
    if log and low <= 0:
        raise SpecError(
            f"a log-scaled distribution needs low > 0 but got low={low}; raise low (e.g. 1e-4) or "
            "set log: false",
            path=f"{where}.low",
        )
    if log and step is not None and (kind == "float" or step != 1):
        raise SpecError(
            "a step cannot be combined with log: true (Optuna); remove one of them", path=f"{where}.step"
        )
    if step is not None:
        n = (high - low) / step
        if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
            raise SpecError(
                f"high - low ({high} - {low}) must be a multiple of step {step}; adjust high",
                path=f"{where}.high",
            )
    return SearchParam(path=path, type=kind, low=low, high=high, log=log, step=step)


__all__ = [
    "DIRECTIONS",
    "PARAM_TYPES",
    "PRUNERS",
    "SAMPLERS",
    "Objective",
    "SearchParam",
    "SearchSpec",
    "parse_search",
    "seq",
    "value_list",
]
