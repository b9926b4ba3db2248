"""The study specification: a frozen, strictly validated description of one ablation study.

A study file (YAML, ``version: 1``) names a base trial configuration, the factors to ablate (dotted
configuration paths, each with a list of values; their full factorial grid gives the ablation *cells*),
optional ``zip`` groups of factors that vary together, ``exclude`` rules, the ``baseline`` arm, the
``seeds`` (replicates), an optional Optuna ``search`` inside every cell, and execution settings::

    version: 1
    name: quickstart
    base: {data: {type: cells, num_images: 16, size: 32}, epochs: 2}
    factors: {noise.rate: [0.0, 0.3], iel.type: [none, heat]}
    zip: [{iel.dt: [0.1, 0.2], iel.steps: [20, 10]}]
    exclude: [{iel.type: none, noise.rate: 0.0}]
    baseline: {iel.type: none}          # optional; without it no cell is the baseline arm
    seeds: 3                            # 0, 1, 2; or a list of distinct seeds
    search: {n_trials: 8, sampler: tpe, pruner: median, objectives: [{metric: dice}],
             params: {optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}}}
    resources: {cpus: 1, gpus: 0.5, gpu_memory_fraction: 0.4}
    max_concurrent: 2                   # default 1
    retries: 1                          # default 1
    timeout_s: null                     # seconds per trial, or null
    fuse: off                           # auto | off (YAML's bare off/on read as false/true are accepted)

:func:`parse_study` checks the document's structure and the base configuration; the configuration
schema (factor paths, component type names) and the value of every cell are checked when the plan is
built (:func:`orchestrator.plan.build_plan`).  Every error is a :class:`~ielcore.errors.SpecError`
naming the file, the field path (``factors.iel.steps``, ``search.params.iel.dt.low``) and the valid
choices or range.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ielcore.errors import SpecError
from ielcore.spec import TrialConfig
from orchestrator.yamlio import load_yaml_file

METRICS: dict[str, str] = {
    "dice": "maximize",
    "miou": "maximize",
    "pixel_acc": "maximize",
    "val_loss": "minimize",
    "train_loss": "minimize",
    "solidity": "maximize",
    "nonconvex_share": "minimize",
    "multi_component_share": "minimize",
    "components": "minimize",
    "object_solidity": "maximize",
    "nonconvex_area_share": "minimize",
}
DIRECTIONS = ("maximize", "minimize")
SAMPLERS = ("tpe", "random", "grid", "cmaes", "nsga2")
PRUNERS = ("median", "hyperband", "none")
PARAM_TYPES = ("float", "int", "categorical")
FUSE_MODES = ("auto", "off")
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
MAX_SEEDS = 10_000
MAX_GRID_POINTS = 100_000
MAX_SEARCH_TRIALS = 1_000_000
_MAX_NODES = 100_000
_MAX_DEPTH = 64
_TOP_KEYS = (
    "version",
    "name",
    "description",
    "base",
    "factors",
    "zip",
    "exclude",
    "baseline",
    "seeds",
    "search",
    "resources",
    "max_concurrent",
    "retries",
    "timeout_s",
    "fuse",
)


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


@dataclass(frozen=True)
class Resources:
    """What one trial asks of a worker. Quantities above 1 must be whole numbers (Ray's rule)."""

    cpus: float = 1.0
    gpus: float = 0.0
    gpu_memory_fraction: float | None = None


@dataclass(frozen=True)
class StudySpec:
    """A validated study (see the module docstring). ``base`` and ``raw`` are plain, JSON-compatible dicts."""

    name: str
    description: str
    base: Mapping[str, Any]
    factors: tuple[tuple[str, tuple[Any, ...]], ...]
    zip_groups: tuple[tuple[tuple[str, tuple[Any, ...]], ...], ...]
    exclude: tuple[Mapping[str, Any], ...]
    baseline: Mapping[str, Any]
    seeds: tuple[int, ...]
    search: SearchSpec | None
    resources: Resources
    max_concurrent: int
    retries: int
    timeout_s: float | None
    fuse: str
    source: str | None
    raw: Mapping[str, Any]

    @property
    def factor_paths(self) -> tuple[str, ...]:
        """Every varied path: the plain factors in order, then each zip group's paths."""
        return tuple(p for p, _ in self.all_factors())

    def all_factors(self) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        """``(path, values)`` of the plain factors, then of every zip group."""
        return self.factors + tuple(pair for group in self.zip_groups for pair in group)

    def factor_origin(self, path: str) -> str:
        """Where ``path`` is set in the document: ``factors.<path>`` or ``zip[i].<path>``."""
        if any(p == path for p, _ in self.factors):
            return f"factors.{path}"
        for i, group in enumerate(self.zip_groups):
            if any(p == path for p, _ in group):
                return f"zip[{i}].{path}"
        raise KeyError(path)


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file (see :func:`orchestrator.yamlio.load_yaml_file` for safe loading)."""
    return parse_study(load_yaml_file(path), source=str(path))


def parse_study(doc: Any, source: str | None = None) -> StudySpec:
    """Validate a study document (a mapping, as loaded from YAML). Raises :class:`SpecError`."""
    try:
        return _parse(doc, source)
    except SpecError as e:
        raise (e if e.source else e.located(source=source)) from None


# -- small checkers: each raises SpecError(path=...) naming the bad value and what is valid -------------


def _join(prefix: str, key: object) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def check_plain(value: Any, path: str = "", *, _state: list[int] | None = None, _depth: int = 0) -> None:
    """Every key a string (or an integer, e.g. a mask-value mapping), every value JSON-compatible.

    Values are null, booleans, integers (``|n| <= 2**63``), finite floats, strings, lists and mappings.
    """
    state = [0] if _state is None else _state
    state[0] += 1
    if state[0] > _MAX_NODES or _depth > _MAX_DEPTH:
        raise SpecError(
            f"the document is too large or too deeply nested (over {_MAX_NODES} values or "
            f"{_MAX_DEPTH} levels); simplify it",
            path=path or None,
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str | int) or isinstance(key, bool):
                raise SpecError(f"keys must be strings but got {key!r}; quote it", path=_join(path, key))
            check_plain(item, _join(path, key), _state=state, _depth=_depth + 1)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_plain(item, f"{path}[{i}]", _state=state, _depth=_depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
        raise SpecError(f"integer {value} is too large (limit 2**63)", path=path or None)
    elif isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"non-finite number {value!r}; give a finite number", path=path or None)
    elif value is not None and not isinstance(value, bool | int | float | str):
        raise SpecError(
            f"unsupported value {value!r} of type {type(value).__name__}; use plain YAML values",
            path=path or None,
        )


def same_value(a: Any, b: Any) -> bool:
    """Equality that keeps booleans apart from numbers (``True != 1``) but lets ``0 == 0.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return bool(type(a) is type(b) or (_is_num(a) and _is_num(b))) and a == b


def _is_num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _mapping(value: Any, path: str, *, required: bool = False) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"expected a mapping (key: value pairs) but got {value!r}", path=path)
    for key in value:
        if not isinstance(key, str):
            raise SpecError(f"keys must be strings but got {key!r}; quote it", path=_join(path, key))
    return dict(value)


def _seq(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(f"expected a list but got {value!r}", path=path)
    return value


def _keys(m: Mapping[str, Any], path: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> None:
    for key in m:
        if key not in allowed:
            raise SpecError(
                f"unknown key {key!r}; valid keys are: {', '.join(allowed)}", path=_join(path, key)
            )
    for key in required:
        if key not in m:
            raise SpecError(f"missing required key {key!r}", path=_join(path, key))


def _int(value: Any, path: str, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"expected an integer but got {value!r}", path=path)
    if (low is not None and value < low) or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in {low}..{high}"
        raise SpecError(f"must be {rng} but got {value}", path=path)
    return value


def _number(
    value: Any, path: str, low: float | None = None, *, low_open: bool = False, hint: str = ""
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"expected a number{f' ({hint})' if hint else ''} but got {value!r}", path=path)
    if low is not None and (value <= low if low_open else value < low):
        raise SpecError(
            f"must be {'>' if low_open else '>='} {low} but got {value}{f' ({hint})' if hint else ''}",
            path=path,
        )
    return float(value)


def _choice(value: Any, path: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise SpecError(f"unknown value {value!r}; valid values are: {', '.join(choices)}", path=path)
    return value


def _value_list(value: Any, path: str, *, unique: bool = True) -> tuple[Any, ...]:
    if not isinstance(value, list) or not value:
        raise SpecError(f"expected a non-empty list of values (e.g. [0.0, 0.2]) but got {value!r}", path=path)
    if unique:
        for i, v in enumerate(value):
            if any(same_value(v, w) for w in value[:i]):
                raise SpecError(f"value {v!r} is listed twice; list each value once", path=path)
    return tuple(value)


# -- the document -------------------------------------------------------------------------------------


def _parse(doc: Any, source: str | None) -> StudySpec:
    if not isinstance(doc, Mapping):
        raise SpecError(f"a study must be a mapping (key: value pairs), got {type(doc).__name__}")
    check_plain(doc)
    doc = copy.deepcopy(dict(doc))
    for key, example in (("version", "version: 1"), ("name", "name: my_study")):
        if key not in doc:
            raise SpecError(f"missing required key {key!r}; add '{example}' at the top of the file", path=key)
    _keys(doc, "", _TOP_KEYS)
    if isinstance(doc["version"], bool) or doc["version"] != 1:
        raise SpecError(
            f"unsupported version {doc['version']!r}; the only version is 1 (write 'version: 1')",
            path="version",
        )
    name = doc["name"]
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or len(name) > 200:
        raise SpecError(f"invalid name {name!r}; use 1-200 characters from A-Z a-z 0-9 _ . -", path="name")
    description = doc.get("description") or ""
    if not isinstance(description, str):
        raise SpecError(f"expected a string but got {description!r}", path="description")

    base = _mapping(doc.get("base"), "base")
    for key, section in base.items():
        if isinstance(section, Mapping):
            _mapping(section, f"base.{key}")
    try:
        TrialConfig.from_dict(base)
    except SpecError as e:
        raise e.located(path_prefix="base") from None

    factors = tuple(
        (p, _value_list(v, _join("factors", p))) for p, v in _mapping(doc.get("factors"), "factors").items()
    )
    zip_groups = tuple(_parse_zip_group(g, f"zip[{i}]") for i, g in enumerate(_seq(doc.get("zip"), "zip")))
    origins: dict[str, str] = {}
    for where, pairs in [("factors", factors)] + [(f"zip[{i}]", g) for i, g in enumerate(zip_groups)]:
        for path, _ in pairs:
            if path in origins:
                raise SpecError(
                    f"{path!r} is set twice (in {origins[path]} and {where}); keep one of them",
                    path=_join(where, path),
                )
            origins[path] = where
    values = {p: v for group in (factors, *zip_groups) for p, v in group}

    search = _parse_search(doc["search"]) if doc.get("search") is not None else None
    for param in search.params if search else ():
        if param.path in origins:
            raise SpecError(
                f"{param.path!r} is both searched and set in {origins[param.path]}; a path is either "
                "ablated (a factor) or searched, not both: remove one",
                path=f"search.params.{param.path}",
            )

    rules = _seq(doc.get("exclude"), "exclude")
    exclude = tuple(_parse_match(rule, f"exclude[{i}]", values) for i, rule in enumerate(rules))
    baseline = _parse_match(doc["baseline"], "baseline", values) if doc.get("baseline") is not None else {}
    return StudySpec(
        name=name,
        description=description,
        base=base,
        factors=factors,
        zip_groups=zip_groups,
        exclude=exclude,
        baseline=baseline,
        seeds=_parse_seeds(doc.get("seeds", 1)),
        search=search,
        resources=_parse_resources(doc.get("resources")),
        max_concurrent=_int(doc.get("max_concurrent", 1), "max_concurrent", 1, 100_000),
        retries=_int(doc.get("retries", 1), "retries", 0, 1_000),
        timeout_s=_parse_timeout(doc.get("timeout_s")),
        fuse=_parse_fuse(doc.get("fuse", "off")),
        source=source,
        raw=doc,
    )


def _parse_zip_group(raw: Any, where: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    group = _mapping(raw, where, required=True)
    if not group:
        raise SpecError(
            "a zip group needs at least one factor, e.g. {iel.dt: [0.1, 0.2], iel.steps: [20, 10]}",
            path=where,
        )
    pairs = tuple((p, _value_list(v, _join(where, p), unique=False)) for p, v in group.items())
    lengths = {p: len(v) for p, v in pairs}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{p} has {n}" for p, n in lengths.items())
        raise SpecError(
            f"the lists of a zip group vary together and must have equal lengths, but {detail}; "
            "give every factor in the group the same number of values",
            path=where,
        )
    return pairs


def _parse_match(raw: Any, where: str, values: Mapping[str, tuple[Any, ...]]) -> dict[str, Any]:
    rule = _mapping(raw, where, required=True)
    if not rule:
        raise SpecError("give at least one factor: value pair, e.g. {iel.type: none}", path=where)
    for path, value in rule.items():
        if path not in values:
            valid = ", ".join(values) or "(none: the study has no factors)"
            raise SpecError(
                f"{path!r} is not a factor; keys here must be factors: {valid}", path=_join(where, path)
            )
        if not any(same_value(value, v) for v in values[path]):
            raise SpecError(
                f"{value!r} is not a value of factor {path!r}; its values are {list(values[path])}",
                path=_join(where, path),
            )
    return rule


def _parse_seeds(raw: Any) -> tuple[int, ...]:
    if isinstance(raw, list):
        if not raw:
            raise SpecError(
                "the seed list is empty; list at least one seed, e.g. [0, 1, 2], or give a count",
                path="seeds",
            )
        if len(raw) > MAX_SEEDS:
            raise SpecError(f"{len(raw)} seeds is over the limit of {MAX_SEEDS}; list fewer", path="seeds")
        seeds = tuple(_int(s, f"seeds[{i}]", 0, 2**31 - 1) for i, s in enumerate(raw))
        for i, s in enumerate(seeds):
            if s in seeds[:i]:
                raise SpecError(
                    f"seed {s} is listed twice; seeds are replicates and must be distinct", path=f"seeds[{i}]"
                )
        return seeds
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise SpecError(
            f"expected a seed count (3 means seeds 0, 1, 2) or a list of seeds but got {raw!r}", path="seeds"
        )
    if not 1 <= raw <= MAX_SEEDS:
        raise SpecError(f"the seed count must be in 1..{MAX_SEEDS} but got {raw}", path="seeds")
    return tuple(range(raw))


def _parse_resources(raw: Any) -> Resources:
    m = _mapping(raw, "resources")
    _keys(m, "resources", ("cpus", "gpus", "gpu_memory_fraction"))
    cpus = _number(m.get("cpus", 1), "resources.cpus", low=0.0, low_open=True)
    gpus = _number(
        m.get("gpus", 0), "resources.gpus", low=0.0, hint="0, a fraction such as 0.5, or a whole number"
    )
    for key, q in (("cpus", cpus), ("gpus", gpus)):
        if q > 1 and q != int(q):
            raise SpecError(
                f"a quantity above 1 must be a whole number (Ray's rule) but got {q}; use a fraction "
                "<= 1 or an integer",
                path=f"resources.{key}",
            )
    fraction = m.get("gpu_memory_fraction")
    if fraction is not None:
        fraction = _number(
            fraction, "resources.gpu_memory_fraction", low=0.0, low_open=True, hint="in (0, 1]"
        )
        if fraction > 1:
            raise SpecError(f"must be in (0, 1] but got {fraction}", path="resources.gpu_memory_fraction")
        if gpus == 0:
            raise SpecError(
                "a GPU memory fraction needs gpus > 0; set resources.gpus (e.g. 0.5) or remove it",
                path="resources.gpu_memory_fraction",
            )
    return Resources(cpus=cpus, gpus=gpus, gpu_memory_fraction=fraction)


def _parse_timeout(raw: Any) -> float | None:
    if raw is None:
        return None
    return _number(raw, "timeout_s", low=0.0, low_open=True, hint="seconds > 0, or null for no timeout")


def _parse_fuse(raw: Any) -> str:
    # YAML 1.1 reads a bare `off` as false and `on` as true.
    value = ("auto" if raw else "off") if isinstance(raw, bool) else raw
    return _choice(value, "fuse", FUSE_MODES)


# -- search -------------------------------------------------------------------------------------------


def _parse_search(raw: Any) -> SearchSpec:
    m = _mapping(raw, "search", required=True)
    _keys(
        m, "search", ("n_trials", "sampler", "pruner", "seed", "objectives", "params"), required=("params",)
    )
    sampler = _choice(m.get("sampler", "tpe"), "search.sampler", SAMPLERS)
    objectives = _parse_objectives(m.get("objectives", [{"metric": "dice"}]))
    multi = len(objectives) > 1
    pruner = _choice(m.get("pruner", "none" if multi else "median"), "search.pruner", PRUNERS)
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
    seed = _int(m.get("seed", 0), "search.seed", 0, 2**32 - 1)
    params_raw = _mapping(m["params"], "search.params", required=True)
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
        n_trials = _int(m.get("n_trials"), "search.n_trials", 1, MAX_SEARCH_TRIALS)
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
    items = _seq(raw, "search.objectives")
    if not items:
        raise SpecError("list at least one objective, e.g. [{metric: dice}]", path="search.objectives")
    out: list[Objective] = []
    for i, item in enumerate(items):
        where = f"search.objectives[{i}]"
        obj = {"metric": item} if isinstance(item, str) else _mapping(item, where, required=True)
        _keys(obj, where, ("metric", "direction"), required=("metric",))
        metric = _choice(obj["metric"], f"{where}.metric", tuple(METRICS))
        if any(o.metric == metric for o in out):
            raise SpecError(
                f"metric {metric!r} is listed twice; list each objective once", path=f"{where}.metric"
            )
        direction = _choice(obj.get("direction", METRICS[metric]), f"{where}.direction", DIRECTIONS)
        out.append(Objective(metric=metric, direction=direction))
    return tuple(out)


def _parse_param(path: str, raw: Any, where: str) -> SearchParam:
    m = _mapping(raw, where, required=True)
    kind = _choice(m.get("type"), f"{where}.type", PARAM_TYPES)
    if kind == "categorical":
        _keys(m, where, ("type", "choices"), required=("choices",))
        choices = m["choices"]
        if not isinstance(choices, list) or not choices:
            raise SpecError(
                f"expected a non-empty list of choices (e.g. [adam, sgd]) but got {choices!r}",
                path=f"{where}.choices",
            )
        for c in choices:
            if c is not None and not isinstance(c, bool | int | float | str):
                raise SpecError(
                    f"choices must be null, booleans, numbers or strings but got {c!r}",
                    path=f"{where}.choices",
                )
        return SearchParam(path=path, type=kind, choices=_value_list(choices, f"{where}.choices"))
    _keys(m, where, ("type", "low", "high", "log", "step"), required=("low", "high"))
    if kind == "int":
        hint = "; use type: float for real values"
        for key in ("low", "high"):
            if isinstance(m[key], bool) or not isinstance(m[key], int):
                raise SpecError(
                    f"an int distribution needs integer bounds but got {m[key]!r}{hint}",
                    path=f"{where}.{key}",
                )
        low, high = m["low"], m["high"]
        step: float | int | None = _int(m.get("step", 1), f"{where}.step", 1)
    else:
        low = _number(m["low"], f"{where}.low")
        high = _number(m["high"], f"{where}.high")
        step = None if m.get("step") is None else _number(m["step"], f"{where}.step", 0.0, low_open=True)
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
    "FUSE_MODES",
    "METRICS",
    "PARAM_TYPES",
    "PRUNERS",
    "SAMPLERS",
    "Objective",
    "Resources",
    "SearchParam",
    "SearchSpec",
    "StudySpec",
    "check_plain",
    "load_study",
    "parse_study",
    "same_value",
]
