"""The plan of a study: its ablation cells and, for grid studies, every trial (cell x seed).

Cells are the full factorial product of the factors and the zip groups, minus the ``exclude`` matches.
A factor that does not apply to a cell's component type (``iel.steps`` when ``iel.type`` is ``none``,
see :func:`ielcore.spec.section_accepts`) is dropped from that cell, and cells whose resolved
configurations are identical collapse into the first of them.  Building a plan resolves
configurations and builds no full model or dataset (only a one-image probe dataset and a model on the
``meta`` device); it is where every cell's values are validated:

- factor and search paths exist in the configuration schema (:mod:`ielcore.schema`), component type
  names are registered;
- every cell's configuration passes :meth:`TrialConfig.from_dict` and the checks of
  :mod:`orchestrator.plan_checks` (component ranges, a ``folder`` dataset's files, the dataset's and
  model's own checks with memory limits); errors name the factor path;
- the baseline matches at least one cell; search bounds are valid in every cell.

A trial's identity is :func:`ielcore.codeprint.trial_identity` of its resolved configuration (seed
included; a ``folder`` dataset's fingerprint included) and of the code that trains it.  With adaptive seeds only the ``start`` seeds are planned;
:func:`trials_for_seeds` (or :meth:`Plan.trials_for_seeds`) gives a cell's trials for further seeds.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ielcore.codeprint import trial_identity
from ielcore.errors import SpecError
from ielcore.fields import same_value
from ielcore.schema import COMPONENT_KINDS, check_path, check_type_values, section_accepts
from ielcore.spec import TrialConfig, apply_overrides, config_hash
from orchestrator.plan_checks import Checker, check_components
from orchestrator.study import ARM_FACTOR, SearchParam, SearchSpec, StudySpec

MAX_CELLS = 10_000
MAX_TRIALS = 100_000


@dataclass(frozen=True)
class Cell:
    """One ablation arm: the factor values that apply to it and its resolved configuration (seed not applied)."""

    key: str
    factors: Mapping[str, Any]
    is_baseline: bool
    config: Mapping[str, Any]


@dataclass(frozen=True)
class PlannedTrial:
    cell_key: str
    seed: int
    config: TrialConfig
    trial_hash: str


@dataclass(frozen=True)
class Plan:
    """Cells and, for a grid study, its trials (cells x seeds); a searched study's trials are asked at run time."""

    study: StudySpec
    cells: tuple[Cell, ...]
    trials: tuple[PlannedTrial, ...]
    n_combinations: int = 1
    n_excluded: int = 0

    def n_trials(self) -> int:
        if self.study.search is None:
            return len(self.trials)
        return len(self.cells) * self.study.search.n_trials

    def cell(self, key: str) -> Cell:
        for c in self.cells:
            if c.key == key:
                return c
        raise KeyError(f"no cell {key!r}; cells: {[c.key for c in self.cells]}")

    def trials_of(self, key: str) -> tuple[PlannedTrial, ...]:
        return tuple(t for t in self.trials if t.cell_key == key)

    @property
    def baseline_cells(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.is_baseline)

    def trials_for_seeds(self, key: str, seeds: Iterable[int]) -> tuple[PlannedTrial, ...]:
        """Trials of cell ``key`` with ``seeds`` (see :func:`trials_for_seeds`); ``KeyError`` for no such cell."""
        return trials_for_seeds(self.cell(key), seeds)

    def describe(self) -> str:
        """The ``--dry-run`` text: the study, its factors and counts, the seed design and a table of the cells."""
        from orchestrator.plan_text import describe_plan

        return describe_plan(self)


def _fmt(value: Any) -> str:
    """A value as written in a cell key: strings bare unless they would read as another type."""
    if isinstance(value, str):
        try:
            bare = not isinstance(json.loads(value), str)
        except ValueError:
            bare = False
        return json.dumps(value) if bare or any(c in value for c in ',="') or not value else value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _fmt_list(values: tuple[Any, ...]) -> str:
    return "[" + ", ".join(_fmt(v) for v in values) + "]"


def cell_key(factors: Mapping[str, Any]) -> str:
    """``"iel.type=heat,noise.rate=0.2"`` in factor order; ``"base"`` when there are no factors."""
    return ",".join(f"{p}={_fmt(v)}" for p, v in factors.items()) or "base"


# -- the configuration schema --------------------------------------------------------------------------


def _check_schema(study: StudySpec, base: Mapping[str, Any]) -> None:
    searched = study.search.params if study.search else ()
    places = [(p, v, study.factor_origin(p)) for p, v in study.all_factors()]
    places += [(q.path, q.choices or (), f"search.params.{q.path}") for q in searched]
    places = [x for x in places if x[2] != "arms"]  # the arms' sections are checked when parsed
    for path, values, where in places:
        check_type_values(path, values, where + (".choices" if where.startswith("search") else ""))
    types = {s: {str(base[s]["type"])} for s in COMPONENT_KINDS}
    for _, flat in study.arms:
        for s in COMPONENT_KINDS:
            if f"{s}.type" in flat:
                types[s].add(str(flat[f"{s}.type"]))
    for path, values, _ in places:
        section, _, key = path.partition(".")
        if key == "type" and section in types:
            types[section].update(str(v) for v in values)
    for path, _, where in places:
        check_path(path, where, types)


# -- cells and trials ---------------------------------------------------------------------------------


def _applicable(assignment: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the paths that do not apply to the component types this assignment gives each section."""
    types = {s: assignment.get(f"{s}.type", config[s]["type"]) for s in COMPONENT_KINDS}
    out = {}
    for path, value in assignment.items():
        section, _, key = path.partition(".")
        if section in COMPONENT_KINDS and key and not section_accepts(section, str(types[section]), key):
            continue
        out[path] = value
    return out


def _matches(rule: Mapping[str, Any], assignment: Mapping[str, Any]) -> bool:
    return all(p in assignment and same_value(assignment[p], v) for p, v in rule.items())


def _blame(study: StudySpec, factors: Mapping[str, Any], path: str | None) -> str:
    """The document path to report for an error at config ``path`` in a cell with these factors."""
    if path is not None and path in factors:
        return study.factor_origin(path)
    section = (path or "").partition(".")[0]
    for p in factors:
        if p.partition(".")[0] == section:
            return study.factor_origin(p)
    if ARM_FACTOR in factors and study.arms:
        arm = str(factors[ARM_FACTOR])
        flat = study.arm_overrides(arm)
        if path in flat or any(p.partition(".")[0] == section for p in flat):
            return f"arms.{arm}.{path if path in flat else section}"
    return f"base.{path}" if path else "base"


def build_plan(study: StudySpec) -> Plan:
    """Validate every cell of ``study`` against the configuration schema and list its cells and trials."""
    try:
        return _build(study)
    except SpecError as e:
        raise (e if e.source else e.located(source=study.source)) from None


def _axes(study: StudySpec) -> list[list[dict[str, Any]]]:
    plain = ((ARM_FACTOR, study.arm_names),) if study.arms else ()
    axes = [[{p: v} for v in values] for p, values in plain + study.factors]
    axes += [
        [{p: vals[i] for p, vals in group} for i in range(len(group[0][1]))] for group in study.zip_groups
    ]
    n_combinations = math.prod(len(a) for a in axes)
    if n_combinations > MAX_CELLS:
        raise SpecError(
            f"the factors give {n_combinations} combinations, over the limit of {MAX_CELLS}; use fewer "
            "values, zip groups or several studies",
            path="factors",
        )
    return axes


_Found = dict[str, tuple[dict[str, Any], TrialConfig, list[dict[str, Any]]]]


def _distinct_configs(
    study: StudySpec, base: Mapping[str, Any], axes: list[list[dict[str, Any]]]
) -> tuple[_Found, int]:
    """``({hash: (factors, config, assignments)}, n_excluded)``: the distinct cells, first assignment first."""
    check = Checker()
    found: _Found = {}
    n_excluded = 0
    arm_bases = {name: apply_overrides(base, flat) for name, flat in study.arms}
    for combo in itertools.product(*axes):
        assignment = {p: v for part in combo for p, v in part.items()}
        if any(_matches(rule, assignment) for rule in study.exclude):
            n_excluded += 1
            continue
        arm = assignment.get(ARM_FACTOR) if study.arms else None
        arm_set = dict(study.arm_overrides(arm)) if arm is not None else {}
        factors = _applicable(assignment, arm_bases[arm] if arm is not None else base)
        settings = {**arm_set, **{p: v for p, v in factors.items() if arm is None or p != ARM_FACTOR}}
        try:
            config = TrialConfig.from_dict(apply_overrides(study.base, settings))
            config = check(config)
        except SpecError as e:
            raise SpecError(
                f"in cell {cell_key(factors)!r}: {e.message}", path=_blame(study, factors, e.path)
            ) from None
        found.setdefault(config_hash(config.to_dict()), (factors, config, []))[2].append(assignment)
    return found, n_excluded


def _cells(study: StudySpec, found: _Found) -> list[Cell]:
    cells: list[Cell] = []
    used: set[str] = set()
    for factors, config, assignments in found.values():
        key = cell_key(factors)
        while key in used:  # only values of different types that print alike, e.g. 1 and "1"
            key += "'"
        used.add(key)
        is_baseline = bool(study.baseline) and any(_matches(study.baseline, a) for a in assignments)
        cells.append(Cell(key=key, factors=factors, is_baseline=is_baseline, config=config.to_dict()))
    if study.baseline and not any(c.is_baseline for c in cells):
        raise SpecError(
            f"the baseline {cell_key(study.baseline)} matches no cell (the exclude rules remove it); "
            f"name a combination among: {', '.join(c.key for c in cells[:10])}",
            path="baseline",
        )
    return cells


def trials_for_seeds(cell: Cell, seeds: Iterable[int]) -> tuple[PlannedTrial, ...]:
    """The trials of ``cell`` with these ``seeds`` (adaptive seeds add them to a planned cell later).

    The seed is not part of resolution: the cell's resolved configuration with the seed set is the
    trial's, so a trial added later has the hash it would have had in the first plan.
    """
    base = TrialConfig.from_dict(cell.config)
    out = []
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**31 - 1:
            raise ValueError(f"a seed is an integer in 0..2**31-1, got {seed!r}")
        out.append(
            PlannedTrial(
                cell.key,
                seed,
                dataclasses.replace(base, seed=seed),
                trial_identity({**cell.config, "seed": seed}),
            )
        )
    return tuple(out)


def _build(study: StudySpec) -> Plan:
    base_config = TrialConfig.from_dict(study.base)
    try:
        check_components(base_config)
    except SpecError as e:
        raise e.located(path_prefix="base") from None
    base = base_config.to_dict()
    _check_schema(study, base)
    axes = _axes(study)
    n_combinations = math.prod(len(a) for a in axes)
    found, n_excluded = _distinct_configs(study, base, axes)
    if not found:
        raise SpecError(
            f"the exclude rules remove all {n_combinations} combinations; leave at least one cell",
            path="exclude",
        )
    cells = _cells(study, found)
    trials: list[PlannedTrial] = []
    if study.search is None:
        most = study.adaptive.max if study.adaptive else len(study.seeds)
        if len(cells) * most > MAX_TRIALS:
            raise SpecError(
                f"{len(cells)} cells x {most} seeds is over the limit of {MAX_TRIALS} trials; use fewer "
                "seeds or cells",
                path="seeds.adaptive.max" if study.adaptive else "seeds",
            )
        for cell in cells:
            trials.extend(trials_for_seeds(cell, study.seeds))
    else:
        for cell in cells:
            _check_search_bounds(study.search, cell, study.seeds[0])
    return Plan(
        study=study,
        cells=tuple(cells),
        trials=tuple(trials),
        n_combinations=n_combinations,
        n_excluded=n_excluded,
    )


def cell_search_params(cell: Cell, search: SearchSpec) -> tuple[SearchParam, ...]:
    """The search parameters that apply to ``cell``'s component types (``iel.dt`` not for ``iel.type: none``).

    A categorical ``<section>.type`` parameter makes its section's parameters apply when any choice takes them.
    """
    out = []
    for p in search.params:
        section, _, key = p.path.partition(".")
        if section in COMPONENT_KINDS and key != "type":
            types = {cell.config[section]["type"]}
            if any(q.path == f"{section}.type" for q in search.params):
                types = {str(c) for c in search.param(f"{section}.type").choices or ()}
            if not any(section_accepts(section, str(t), key) for t in types):
                continue
        out.append(p)
    return tuple(out)


def _check_search_bounds(search: SearchSpec, cell: Cell, seed: int) -> None:
    for p in cell_search_params(cell, search):
        where = f"search.params.{p.path}"
        probes = (
            [("choices", c) for c in p.choices]
            if p.choices is not None
            else [("low", p.low), ("high", p.high)]
        )
        for field, value in probes:
            try:
                search_trial_config(cell, {p.path: value}, seed)
            except SpecError as e:
                raise SpecError(
                    f"{e.message} (bounds are checked one at a time, with the cell's other values)",
                    path=f"{where}.{field}",
                ) from None


def search_trial_config(cell: Cell, params: Mapping[str, Any], seed: int) -> TrialConfig:
    """The cell's configuration with sampled ``params`` (those that apply to its types) and ``seed``, validated.

    Raises :class:`SpecError` (path ``search.params.<path>``) when the combination is invalid, e.g. an
    IEL gain over its limit: the scheduler records such a trial as failed with that reason.
    """
    applicable = _applicable(params, cell.config)
    try:
        config = TrialConfig.from_dict(apply_overrides(cell.config, {**applicable, "seed": seed}))
        check_components(config)
        return config
    except SpecError as e:
        raise SpecError(
            f"in cell {cell.key!r} with {cell_key(applicable)}: {e.message}",
            path=f"search.params.{e.path}" if e.path in params else e.path,
        ) from None


__all__ = [
    "Cell",
    "Plan",
    "PlannedTrial",
    "build_plan",
    "cell_key",
    "cell_search_params",
    "check_components",
    "search_trial_config",
    "trials_for_seeds",
]
