"""The plan of a study: its ablation cells and, for grid studies, every trial (cell x seed).

Cells are the full factorial product of the factors and the zip groups, minus the ``exclude`` matches.
A factor that does not apply to a cell's component type (``iel.steps`` when ``iel.type`` is ``none``,
see :func:`ielcore.spec.section_accepts`) is dropped from that cell, and cells whose resolved
configurations are identical collapse into the first of them.  Building a plan only resolves
configurations (no model or dataset is built); it is where every cell's values are validated:

- factor and search paths exist in the configuration schema, component type names are registered;
- every cell's configuration passes :meth:`TrialConfig.from_dict` (errors name the factor path);
- a ``folder`` dataset's ``root`` holds ``images/`` and ``masks/``;
- the baseline matches at least one cell; search bounds are valid in every cell.

A trial's identity is ``config_hash`` of its resolved configuration (seed included).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ielcore._params import signature_params
from ielcore.errors import SpecError
from ielcore.spec import TrialConfig, apply_overrides, config_hash, section_accepts
from orchestrator.study import SearchParam, SearchSpec, StudySpec, same_value

MAX_CELLS = 10_000
MAX_TRIALS = 100_000
COMPONENT_KINDS = {
    "data": "dataset",
    "noise": "noise model",
    "model": "model",
    "iel": "IEL type",
    "loss": "loss",
}


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

    def describe(self) -> str:
        """The ``--dry-run`` text: the study, its factors and counts, and a table of the cells."""
        s = self.study
        lines = [f"study {s.name}" + (f": {s.description}" if s.description else "")]
        lines.append(
            "factors:" if s.all_factors() else "factors: none (a single cell: the base configuration)"
        )
        for path, values in s.factors:
            lines.append(f"  {path}: {_fmt_list(values)}")
        for i, group in enumerate(s.zip_groups):
            lines.append(f"  zip[{i}]: " + " | ".join(f"{p}: {_fmt_list(v)}" for p, v in group))
        for rule in s.exclude:
            lines.append(f"exclude: {cell_key(rule)}")
        lines.append(f"baseline: {cell_key(s.baseline) if s.baseline else 'none'}")
        collapsed = self.n_combinations - self.n_excluded - len(self.cells)
        lines.append(
            f"cells: {len(self.cells)} ({self.n_combinations} combinations, {self.n_excluded} excluded, "
            f"{collapsed} collapsed)"
        )
        lines.append(
            f"seeds: {len(s.seeds)} ({', '.join(map(str, s.seeds[:10]))}{', ...' if len(s.seeds) > 10 else ''})"
        )
        if s.search is None:
            lines.append("search: none")
        else:
            q = s.search
            goals = ", ".join(f"{o.direction} {o.metric}" for o in q.objectives)
            lines.append(
                f"search: {q.n_trials} trials per cell, sampler {q.sampler}, pruner {q.pruner}, {goals}; "
                f"params {', '.join(p.path for p in q.params)}"
            )
        lines.append(f"total trials: {self.n_trials()}")
        r = s.resources
        lines.append(
            f"resources per trial: {r.cpus:g} CPU, {r.gpus:g} GPU"
            + (f" ({r.gpu_memory_fraction:g} of its memory)" if r.gpu_memory_fraction else "")
            + f"; max_concurrent {s.max_concurrent}, retries {s.retries}, "
            f"timeout {f'{s.timeout_s:g} s' if s.timeout_s else 'none'}, fuse {s.fuse}"
        )
        header = ["#", "baseline", *s.factor_paths, "key"]
        rows = [
            [
                str(i + 1),
                "*" if c.is_baseline else "",
                *(_fmt(c.factors[p]) if p in c.factors else "-" for p in s.factor_paths),
                c.key,
            ]
            for i, c in enumerate(self.cells)
        ]
        widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]
        lines.append("")
        lines.extend(
            "  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header, *rows]
        )
        return "\n".join(lines)


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


def _registries() -> dict[str, Mapping[str, Any]]:
    from ielcore.data import DATASET_TYPES
    from ielcore.iel import IEL_TYPES
    from ielcore.losses import LOSS_TYPES
    from ielcore.models import MODEL_TYPES
    from ielcore.noise import NOISE_TYPES

    return {
        "data": DATASET_TYPES,
        "noise": NOISE_TYPES,
        "model": MODEL_TYPES,
        "iel": IEL_TYPES,
        "loss": LOSS_TYPES,
    }


@functools.cache
def _default_config() -> dict[str, Any]:
    return TrialConfig.from_dict({}).to_dict()


def _type_keys(section: str, type_name: str) -> set[str]:
    candidates = {"type", *_default_config()[section], *signature_params(_registries()[section][type_name])}
    return {k for k in candidates if section_accepts(section, type_name, k)}


def _check_type_values(path: str, values: tuple[Any, ...], where: str) -> None:
    section, _, key = path.partition(".")
    if key != "type" or section not in COMPONENT_KINDS:
        return
    registry, kind = _registries()[section], COMPONENT_KINDS[section]
    for value in values:
        if not isinstance(value, str) or value not in registry:
            raise SpecError(
                f"unknown {kind} {value!r}; valid {kind}s are: {', '.join(sorted(registry))}", path=where
            )


def _check_path(path: str, where: str, types: Mapping[str, set[str]]) -> None:
    defaults = _default_config()
    sections = [k for k, v in defaults.items() if isinstance(v, dict)]
    scalars = [k for k, v in defaults.items() if not isinstance(v, dict)]
    parts = path.split(".")
    if path == "seed":
        raise SpecError(
            "the seed is varied by 'seeds:' (replicates), not by a factor; list the seeds there", path=where
        )
    if len(parts) == 1 and path in scalars:
        return
    if len(parts) == 1 and path in sections:
        raise SpecError(
            f"{path!r} is a section: name one of its keys (e.g. {path}.type), or vary several keys "
            "together with a zip group",
            path=where,
        )
    if len(parts) != 2 or parts[0] not in sections:
        raise SpecError(
            f"unknown configuration path {path!r}; a path is one of {', '.join(scalars)} or "
            f"'section.key' with a section among {', '.join(sections)}",
            path=where,
        )
    section, key = parts
    if section not in COMPONENT_KINDS:
        if key not in defaults[section]:
            raise SpecError(
                f"unknown key {key!r} in {section!r}; valid keys are: {', '.join(defaults[section])}",
                path=where,
            )
        return
    if key == "type" or any(section_accepts(section, t, key) for t in types[section]):
        return
    valid = sorted(set().union(*(_type_keys(section, t) for t in types[section])))
    names = ", ".join(sorted(types[section]))
    raise SpecError(
        f"{key!r} is not a parameter of {COMPONENT_KINDS[section]} {names}; valid keys are: "
        f"{', '.join(valid)}",
        path=where,
    )


def _check_schema(study: StudySpec, base: Mapping[str, Any]) -> None:
    searched = study.search.params if study.search else ()
    places = [(p, v, study.factor_origin(p)) for p, v in study.all_factors()]
    places += [(q.path, q.choices or (), f"search.params.{q.path}") for q in searched]
    for path, values, where in places:
        _check_type_values(path, values, where + (".choices" if where.startswith("search") else ""))
    types = {s: {str(base[s]["type"])} for s in COMPONENT_KINDS}
    for path, values, _ in places:
        section, _, key = path.partition(".")
        if key == "type" and section in types:
            types[section].update(str(v) for v in values)
    for path, _, where in places:
        _check_path(path, where, types)


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
    return f"base.{path}" if path else "base"


def check_components(config: TrialConfig) -> None:
    """Construct the configuration's IEL and noise model (cheap: no tensors) to check their values.

    Config resolution checks only parameter names; ranges (``steps >= 1``, ``dt > 0``, an IEL's
    worst-case gain) are checked by the constructors.  Models and datasets are never built here.
    Raises :class:`SpecError` with the path ``iel.<param>`` / ``noise.<param>``.
    """
    if config.kind != "train":
        return
    from ielcore.iel import build_iel
    from ielcore.noise import build_noise

    iel = {k: v for k, v in config.iel.items() if k != "type"}
    noise = {k: v for k, v in config.noise.items() if k not in ("type", "rate")}
    checks = (
        ("iel", lambda: build_iel(config.iel["type"], **iel)),
        # num_classes is the dataset's; a large value checks everything that does not depend on it.
        ("noise", lambda: build_noise(config.noise["type"], config.noise["rate"], 1000, 0, **noise)),
    )
    for section, build in checks:
        try:
            build()
        except SpecError as e:
            raise e.located(path_prefix=section) from None
        except (TypeError, ValueError) as e:
            raise SpecError(f"invalid {section} parameters: {e}", path=section) from e


def _check_folder(study: StudySpec, factors: Mapping[str, Any], config: TrialConfig) -> None:
    if config.kind != "train" or config.data.get("type") != "folder":
        return
    root = Path(str(config.data.get("root"))).expanduser()
    where = study.factor_origin("data.root") if "data.root" in factors else "base.data.root"
    for d in (
        root,
        root / str(config.data.get("images", "images")),
        root / str(config.data.get("masks", "masks")),
    ):
        if not d.is_dir():
            raise SpecError(
                f"folder {str(d)!r} (resolved: {d.resolve()}) does not exist; a folder dataset needs "
                "root/images/ and root/masks/ with matching file names: fix the path",
                path=where,
            )


def build_plan(study: StudySpec) -> Plan:
    """Validate every cell of ``study`` against the configuration schema and list its cells and trials."""
    try:
        return _build(study)
    except SpecError as e:
        raise (e if e.source else e.located(source=study.source)) from None


def _build(study: StudySpec) -> Plan:
    base_config = TrialConfig.from_dict(study.base)
    try:
        check_components(base_config)
    except SpecError as e:
        raise e.located(path_prefix="base") from None
    base = base_config.to_dict()
    _check_schema(study, base)
    axes = [[{p: v} for v in values] for p, values in study.factors]
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
    found: dict[str, tuple[dict[str, Any], TrialConfig, list[dict[str, Any]]]] = {}
    n_excluded = 0
    for combo in itertools.product(*axes):
        assignment = {p: v for part in combo for p, v in part.items()}
        if any(_matches(rule, assignment) for rule in study.exclude):
            n_excluded += 1
            continue
        factors = _applicable(assignment, base)
        try:
            config = TrialConfig.from_dict(apply_overrides(study.base, factors))
            check_components(config)
        except SpecError as e:
            raise SpecError(
                f"in cell {cell_key(factors)!r}: {e.message}", path=_blame(study, factors, e.path)
            ) from None
        _check_folder(study, factors, config)
        h = config_hash(config.to_dict())
        if h not in found:
            found[h] = (factors, config, [])
        found[h][2].append(assignment)
    if not found:
        raise SpecError(
            f"the exclude rules remove all {n_combinations} combinations; leave at least one cell",
            path="exclude",
        )

    cells: list[Cell] = []
    configs: list[TrialConfig] = []
    used: set[str] = set()
    for factors, config, assignments in found.values():
        key = cell_key(factors)
        while key in used:  # only values of different types that print alike, e.g. 1 and "1"
            key += "'"
        used.add(key)
        is_baseline = bool(study.baseline) and any(_matches(study.baseline, a) for a in assignments)
        cells.append(Cell(key=key, factors=factors, is_baseline=is_baseline, config=config.to_dict()))
        configs.append(config)
    if study.baseline and not any(c.is_baseline for c in cells):
        raise SpecError(
            f"the baseline {cell_key(study.baseline)} matches no cell (the exclude rules remove it); "
            f"name a combination among: {', '.join(c.key for c in cells[:10])}",
            path="baseline",
        )

    trials: list[PlannedTrial] = []
    if study.search is None:
        if len(cells) * len(study.seeds) > MAX_TRIALS:
            raise SpecError(
                f"{len(cells)} cells x {len(study.seeds)} seeds is over the limit of {MAX_TRIALS} "
                "trials; use fewer seeds or cells",
                path="seeds",
            )
        for cell, config in zip(cells, configs):
            for seed in study.seeds:
                # The seed is not part of resolution: the cell's resolved config with the seed set is the
                # trial's (== TrialConfig.from_dict(...) with the seed, without re-resolving).
                trial = dataclasses.replace(config, seed=seed)
                trials.append(PlannedTrial(cell.key, seed, trial, config_hash({**cell.config, "seed": seed})))
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
]
