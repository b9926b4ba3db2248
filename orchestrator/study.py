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
    seeds: 3                            # 0, 1, 2; a list of distinct seeds; or {adaptive: {start: 3, max: 30, batch: 2}}
    decide: {metric: dice, score: last, margin: 0.01, alpha: 0.05, method: t}   # optional
    search: {n_trials: 8, sampler: tpe, pruner: median, objectives: [{metric: dice}],
             params: {optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}}}
    resources: {cpus: 1, gpus: 0.5, gpu_memory_fraction: 0.4}
    max_concurrent: 2                   # default 1
    retries: 1                          # default 1
    timeout_s: null                     # seconds per trial, or null
    fuse: off                           # auto | off (YAML's bare off/on read as false/true are accepted)

Named arms (``arms: {plain: {}, heat: {iel: {type: heat, dt: 0.1}}}``, ``baseline: plain``) are a factor
``arm`` whose levels are whole sections merged into ``base`` (:mod:`orchestrator.study_arms`).

:func:`parse_study` checks the document's structure and the base configuration; the configuration
schema (factor paths, component type names) and the value of every cell are checked when the plan is
built (:func:`orchestrator.plan.build_plan`).  Every error is a :class:`~ielcore.errors.SpecError`
naming the file, the field path (``factors.iel.steps``, ``search.params.iel.dt.low``) and the valid
choices or range.  ``search:`` is parsed in :mod:`orchestrator.study_search`, ``seeds:`` and ``decide:``
in :mod:`orchestrator.study_decide`, ``arms:`` in :mod:`orchestrator.study_arms`; ``--set`` overrides
are applied to the document by :mod:`orchestrator.study_overrides`, and :mod:`orchestrator.study_version`
compares a re-submitted study with the stored one.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ielcore.errors import SpecError
from ielcore.fields import check_int, check_keys, check_mapping, check_plain, join
from ielcore.fields import same_value as same_value
from ielcore.metric_info import METRIC_INFO
from ielcore.spec import TrialConfig
from ielcore.yamlio import load_yaml_file
from orchestrator.study_arms import ARM_FACTOR, Arms, check_arm_conflicts, parse_arms, parse_baseline_arm
from orchestrator.study_decide import AdaptiveSeeds, DecideSpec, Method, Score, parse_decide, parse_seeds
from orchestrator.study_exec import FUSE_MODES, Resources, parse_fuse, parse_resources, parse_timeout
from orchestrator.study_overrides import apply_overrides
from orchestrator.study_search import (
    DIRECTIONS,
    PARAM_TYPES,
    PRUNERS,
    SAMPLERS,
    Objective,
    SearchParam,
    SearchSpec,
    parse_search,
    seq,
    value_list,
)

METRICS: dict[str, str] = {name: info.direction for name, info in METRIC_INFO.items()}
"""Deprecated view of :data:`ielcore.metric_info.METRIC_INFO` (name -> direction); use ``metric_info``."""
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
_TOP_KEYS = (
    "version",
    "name",
    "description",
    "base",
    "arms",
    "factors",
    "zip",
    "exclude",
    "baseline",
    "seeds",
    "decide",
    "search",
    "resources",
    "max_concurrent",
    "retries",
    "timeout_s",
    "fuse",
)


@dataclass(frozen=True)
class StudySpec:
    """A validated study (see the module docstring). ``base`` and ``raw`` are plain, JSON-compatible dicts.

    ``seeds`` are the seeds planned up front: all of them, or with ``adaptive`` seeds the ``start`` first
    (``0 .. start-1``); ``adaptive.next_seeds`` gives the ones an undecided comparison gets next.
    """

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
    adaptive: AdaptiveSeeds | None = None
    decide: DecideSpec | None = None
    arms: Arms = ()
    overrides: tuple[str, ...] = ()

    @property
    def factor_paths(self) -> tuple[str, ...]:
        """Every varied path: ``arm`` (with named arms), the plain factors in order, then each zip group's."""
        return tuple(p for p, _ in self.all_factors())

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.arms)

    def arm_overrides(self, name: str) -> Mapping[str, Any]:
        """The dotted configuration paths arm ``name`` sets (``{"iel.type": "heat", "iel.dt": 0.1}``)."""
        return dict(self.arms)[name]

    def all_factors(self) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        """``(path, values)`` of the arms (``("arm", names)``), the plain factors, then every zip group."""
        arms = ((ARM_FACTOR, self.arm_names),) if self.arms else ()
        return arms + self.factors + tuple(pair for group in self.zip_groups for pair in group)

    def factor_origin(self, path: str) -> str:
        """Where ``path`` is set in the document: ``arms``, ``factors.<path>`` or ``zip[i].<path>``."""
        if self.arms and path == ARM_FACTOR:
            return "arms"
        if any(p == path for p, _ in self.factors):
            return f"factors.{path}"
        for i, group in enumerate(self.zip_groups):
            if any(p == path for p, _ in group):
                return f"zip[{i}].{path}"
        raise KeyError(path)


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> StudySpec:
    """Read and validate a study file, with ``--set KEY=VALUE`` overrides applied to its document.

    See :func:`ielcore.yamlio.load_yaml_file` for safe loading and :mod:`orchestrator.study_overrides`
    for the override syntax.
    """
    doc = load_yaml_file(path)
    try:
        doc = apply_overrides(doc, overrides)
    except SpecError as e:
        raise e.located(source=str(path)) from None
    return parse_study(doc, source=str(path), overrides=overrides)


def parse_study(doc: Any, source: str | None = None, overrides: Sequence[str] = ()) -> StudySpec:
    """Validate a study document (a mapping, as loaded from YAML). Raises :class:`SpecError`.

    ``overrides`` are the ``--set`` overrides already applied to ``doc``: they are recorded in the spec.
    """
    try:
        spec = _parse(doc, source)
    except SpecError as e:
        raise (e if e.source else e.located(source=source)) from None
    return dataclasses.replace(spec, overrides=tuple(o.strip() for o in overrides)) if overrides else spec


# -- the document -------------------------------------------------------------------------------------


def _parse(doc: Any, source: str | None) -> StudySpec:
    if not isinstance(doc, Mapping):
        raise SpecError(f"a study must be a mapping (key: value pairs), got {type(doc).__name__}")
    check_plain(doc)
    doc = copy.deepcopy(dict(doc))
    name, description = _parse_header(doc)
    base = _parse_base(doc.get("base"))
    arms = parse_arms(doc.get("arms"), base)
    factors, zip_groups, origins = _parse_factors(doc)
    values = {p: v for group in (factors, *zip_groups) for p, v in group}
    if arms:
        values = {ARM_FACTOR: tuple(name for name, _ in arms), **values}
    search = parse_search(doc["search"]) if doc.get("search") is not None else None
    check_arm_conflicts(arms, origins, tuple(p.path for p in search.params) if search else ())
    for param in search.params if search else ():
        if param.path in origins:
            raise SpecError(
                f"{param.path!r} is both searched and set in {origins[param.path]}; a path is either "
                "ablated (a factor) or searched, not both: remove one",
                path=f"search.params.{param.path}",
            )
    rules = seq(doc.get("exclude"), "exclude")
    exclude = tuple(_parse_match(rule, f"exclude[{i}]", values) for i, rule in enumerate(rules))
    raw_baseline = parse_baseline_arm(doc.get("baseline"), arms)
    baseline = _parse_match(raw_baseline, "baseline", values) if raw_baseline is not None else {}
    if raw_baseline is not None:
        doc["baseline"] = raw_baseline  # `baseline: plain` is kept as {arm: plain}: readers expect a mapping
    seeds, adaptive = parse_seeds(doc.get("seeds", 1))
    decide = parse_decide(doc["decide"]) if doc.get("decide") is not None else None
    if adaptive is not None:
        _check_adaptive(baseline, search, decide)
    if decide is not None:
        _check_decide(baseline, search)
    return StudySpec(
        name=name,
        description=description,
        base=base,
        factors=factors,
        zip_groups=zip_groups,
        exclude=exclude,
        baseline=baseline,
        seeds=seeds,
        search=search,
        resources=parse_resources(doc.get("resources")),
        max_concurrent=check_int(doc.get("max_concurrent", 1), "max_concurrent", 1, 100_000),
        retries=check_int(doc.get("retries", 1), "retries", 0, 1_000),
        timeout_s=parse_timeout(doc.get("timeout_s")),
        fuse=parse_fuse(doc.get("fuse", "off")),
        source=source,
        raw=doc,
        adaptive=adaptive,
        decide=decide,
        arms=arms,
    )


def _parse_header(doc: dict[str, Any]) -> tuple[str, str]:
    for key, example in (("version", "version: 1"), ("name", "name: my_study")):
        if key not in doc:
            raise SpecError(f"missing required key {key!r}; add '{example}' at the top of the file", path=key)
    check_keys(doc, "", _TOP_KEYS)
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
    return name, description


def _parse_base(raw: Any) -> dict[str, Any]:
    base = check_mapping(raw, "base")
    for key, section in base.items():
        if isinstance(section, Mapping):
            check_mapping(section, f"base.{key}")
    try:
        TrialConfig.from_dict(base)
    except SpecError as e:
        raise e.located(path_prefix="base") from None
    return base


Factors = tuple[tuple[str, tuple[Any, ...]], ...]


def _parse_factors(doc: Mapping[str, Any]) -> tuple[Factors, tuple[Factors, ...], dict[str, str]]:
    """``(factors, zip groups, {path: where it is set})``; a path may be set in one place only."""
    factors = tuple(
        (p, value_list(v, join("factors", p)))
        for p, v in check_mapping(doc.get("factors"), "factors").items()
    )
    zip_groups = tuple(_parse_zip_group(g, f"zip[{i}]") for i, g in enumerate(seq(doc.get("zip"), "zip")))
    origins: dict[str, str] = {}
    for where, pairs in [("factors", factors)] + [(f"zip[{i}]", g) for i, g in enumerate(zip_groups)]:
        for path, _ in pairs:
            if path in origins:
                raise SpecError(
                    f"{path!r} is set twice (in {origins[path]} and {where}); keep one of them",
                    path=join(where, path),
                )
            origins[path] = where
    return factors, zip_groups, origins


def _check_adaptive(
    baseline: Mapping[str, Any], search: SearchSpec | None, decide: DecideSpec | None
) -> None:
    if search is not None:
        raise SpecError(
            "adaptive seeds cannot be combined with search: a search proposes new configurations, so "
            "there is no fixed arm to add seeds to; use a fixed seed count (seeds: 3) with search, or "
            "remove search and list the values as factors",
            path="seeds.adaptive",
        )
    if not baseline:
        raise SpecError(
            "adaptive seeds add seeds to the comparisons of each arm with its baseline, but the study has no "
            "baseline; add one, e.g. 'baseline: {iel.type: none}', or give a fixed seed count",
            path="seeds.adaptive",
        )
    if decide is None:
        raise SpecError(
            "adaptive seeds need a decide: section saying when a comparison is decided; add e.g. "
            "'decide: {metric: dice, margin: 0.01, alpha: 0.05}', or give a fixed seed count",
            path="decide",
        )


def _check_decide(baseline: Mapping[str, Any], search: SearchSpec | None) -> None:
    if search is not None:
        raise SpecError(
            "decide: compares each arm with its baseline paired on seed, but a searched cell's trials are "
            "different configurations, not replicates of one arm; remove decide: from a searched study, or "
            "remove search: and list the values to compare as factors",
            path="decide",
        )
    if not baseline:
        raise SpecError(
            "decide: compares each arm with its baseline, but the study has no baseline; add one, e.g. "
            "'baseline: {iel.type: none}'",
            path="decide",
        )


def _parse_zip_group(raw: Any, where: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    group = check_mapping(raw, where, required=True)
    if not group:
        raise SpecError(
            "a zip group needs at least one factor, e.g. {iel.dt: [0.1, 0.2], iel.steps: [20, 10]}",
            path=where,
        )
    pairs = tuple((p, value_list(v, join(where, p), unique=False)) for p, v in group.items())
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
    rule = check_mapping(raw, where, required=True)
    if not rule:
        raise SpecError("give at least one factor: value pair, e.g. {iel.type: none}", path=where)
    for path, value in rule.items():
        if path not in values:
            valid = ", ".join(values) or "(none: the study has no factors)"
            raise SpecError(
                f"{path!r} is not a factor; keys here must be factors: {valid}", path=join(where, path)
            )
        if not any(same_value(value, v) for v in values[path]):
            raise SpecError(
                f"{value!r} is not a value of factor {path!r}; its values are {list(values[path])}",
                path=join(where, path),
            )
    return rule


__all__ = [
    "ARM_FACTOR",
    "DIRECTIONS",
    "AdaptiveSeeds",
    "DecideSpec",
    "Method",
    "Score",
    "FUSE_MODES",
    "apply_overrides",
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
