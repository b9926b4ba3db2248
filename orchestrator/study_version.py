"""Edited studies never mix: compare a re-submitted study with the one already recorded under its name.

A study's results belong to one spec.  When a study is submitted again under a name the results
database already holds, :func:`check_resubmit` compares the stored spec with the new one:

- **identical**: the submit resumes the study;
- **compatible**: only settings that cannot change any result differ (``description``,
  ``max_concurrent``, ``retries``, ``timeout_s``, ``resources``, ``base.artifacts``, the ``--set``
  overrides as written), or the study grows without touching what ran: a fixed seed list whose new
  seeds include all the old ones (``seeds: 3`` -> ``seeds: 5``; not with ``search:``, whose trials cycle
  through the seeds), adaptive seeds with a larger ``max`` ("re-submitting with a larger max continues
  where it stopped"; a smaller one only while no comparison has more seeds), a search with more
  ``n_trials``.  The submit resumes the study under the new spec;
- **incompatible**: anything else (the base configuration, arms, factors and their order, zip groups,
  exclude rules, the baseline, decide, fuse, the search space, objectives or sampler, fewer seeds).
  :class:`StudyChanged` is raised with a readable diff and the way out.

Specs are compared in their canonical form (:func:`canonical_spec`): JSON-compatible, with defaults
filled in (``seeds: 3`` is ``[0, 1, 2]``; the base is the resolved configuration) and the factor order
kept in ``factor_order`` (JSON objects are stored with sorted keys).  It keeps the document's top-level
keys with normalised values (``baseline`` is always a ``{factor: value}`` mapping, ``search.objectives``
a list of ``{metric, direction}``), so it is what ``iel_studies.spec_json`` stores.  A stored spec
from before this form (the raw document) is parsed again and then compared.

The canonical form also records ``code``: the fingerprint of the code that trains the study's trials
(:func:`ielcore.codeprint.code_fingerprint`: the ``ielcore`` package's files and the PyTorch version).
It is part of every trial's identity, so a study whose code changed since its results were recorded is
an incompatible edit like any other: its new trials would not be the recorded ones, and results of two
code versions would mix.  A spec stored before ``code`` was recorded has ``code: null`` (unknown code).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ielcore.codeprint import code_fingerprint, trial_identity
from ielcore.errors import IELError, SpecError
from ielcore.schema import IDENTITY_EXCLUDED
from ielcore.spec import TrialConfig
from orchestrator.plan import Plan
from orchestrator.study import NAME_PATTERN, StudySpec, parse_study

CANONICAL_FORMAT = 1
"""``canonical_format`` of the canonical form; a stored spec without it is a raw study document."""
MAX_DIFF_LINES = 10
_COMPATIBLE: tuple[str, ...] = (
    "description",
    "max_concurrent",
    "retries",
    "timeout_s",
    "resources",
    "overrides",
    *(f"base.{s}" for s in IDENTITY_EXCLUDED),
)
_ABSENT = object()
CODE_CHANGED = (
    "the code that trains the trials changed since these results were recorded: a file of the ielcore "
    "package or the PyTorch version differs, or the results predate code fingerprints (null); trials "
    "of the new code are new trials"
)


class ChangeKind(StrEnum):
    IDENTICAL = "identical"
    COMPATIBLE = "compatible"


@dataclass(frozen=True)
class FieldChange:
    """One difference between two canonical specs: the dotted ``path`` and its old and new values."""

    path: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.path}: {_show(self.old)} -> {_show(self.new)}"


@dataclass(frozen=True)
class SpecChange:
    """The result of :func:`check_resubmit` when the new spec may resume the study."""

    kind: ChangeKind
    changes: tuple[FieldChange, ...] = ()

    def describe(self) -> str:
        """One line for the submit's output (empty when identical)."""
        if self.kind is ChangeKind.IDENTICAL:
            return ""
        return "the study's spec changed in ways that cannot change its results: " + "; ".join(
            map(str, self.changes)
        )


class StudyChanged(IELError):
    """A study was submitted again under its name with a spec whose changes can change its results."""

    def __init__(self, study: str, changes: tuple[FieldChange, ...], why: str = "") -> None:
        self.study, self.changes = study, changes
        shown = [f"  {c}" for c in changes[:MAX_DIFF_LINES]]
        if len(changes) > MAX_DIFF_LINES:
            shown.append(f"  ... and {len(changes) - MAX_DIFF_LINES} more")
        reason = f" ({why})" if why else ""
        paths = {c.path for c in changes}
        what = "a different spec"
        if paths == {"code"}:
            what = "other code"
        elif paths and all(p.startswith("trial ") for p in paths):
            what = "other data or code"
        super().__init__(
            f"study {study!r} was already submitted with {what}, and these changes can change its "
            f"results, so they would mix with the results it already has{reason}:\n"
            + "\n".join(shown)
            + "\nGive the edited study a new 'name:' (finished identical trials are reused by hash, nothing "
            "is trained twice) or pass --as NEW_NAME to 'iel submit', or undo the change (the study file, or the "
            "code it ran with)."
        )


# -- the canonical form -------------------------------------------------------------------------------


def canonical_spec(spec: StudySpec) -> dict[str, Any]:
    """The spec as a stable, JSON-compatible dict: what ``iel_studies.spec_json`` stores (module docstring)."""
    search = spec.search
    return {
        "canonical_format": CANONICAL_FORMAT,
        "version": 1,
        "name": spec.name,
        "description": spec.description,
        "base": TrialConfig.from_dict(spec.base).to_dict(),
        "arms": {name: dict(flat) for name, flat in spec.arms},
        "factors": {p: list(v) for p, v in spec.factors},
        "zip": [{p: list(v) for p, v in group} for group in spec.zip_groups],
        "factor_order": list(spec.factor_paths),
        "exclude": [dict(rule) for rule in spec.exclude],
        "baseline": dict(spec.baseline),
        "seeds": (
            {"adaptive": dataclasses.asdict(spec.adaptive)} if spec.adaptive is not None else list(spec.seeds)
        ),
        "decide": _decide_doc(spec),
        "search": None
        if search is None
        else {
            "n_trials": search.n_trials,
            "sampler": search.sampler,
            "pruner": search.pruner,
            "seed": search.seed,
            "objectives": [dataclasses.asdict(o) for o in search.objectives],
            "params": {p.path: _param(p) for p in search.params},
            "param_order": [p.path for p in search.params],
        },
        "resources": dataclasses.asdict(spec.resources),
        "max_concurrent": spec.max_concurrent,
        "retries": spec.retries,
        "timeout_s": spec.timeout_s,
        "fuse": spec.fuse,
        "overrides": list(spec.overrides),
        "code": code_fingerprint(),
    }


def _param(p: Any) -> dict[str, Any]:
    out = {k: v for k, v in dataclasses.asdict(p).items() if k != "path"}
    if out.get("choices") is not None:
        out["choices"] = list(out["choices"])
    return out


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def normalize(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored spec in canonical form: as is when it is canonical, else parsed as a study document.

    Raises :class:`SpecError` when a raw document no longer parses.
    """
    if stored.get("canonical_format") == CANONICAL_FORMAT:
        return _jsonable({"code": None, **stored})
    return _jsonable({**canonical_spec(parse_study(dict(stored))), "code": None})


def check_against_recorded(db: Any, spec: StudySpec, plan: Plan | None = None) -> SpecChange | None:
    """:func:`check_resubmit` of ``spec`` against the spec recorded under its name in the results database
    ``db`` (None when the study is new), then, given the ``plan``, :func:`check_identities`; raises
    :class:`StudyChanged` when results could mix."""
    record = db.study(spec.name)
    if record is None or not record.spec:
        return None
    trials = db.trials(spec.name)
    done = max((t.seed + 1 for t in trials), default=0)
    change = check_resubmit(record.spec, canonical_spec(spec), seeds_done=done)
    if plan is not None:
        check_identities(spec.name, plan, trials)
    return change


def check_identities(study: str, plan: Plan, trials: Iterable[Any]) -> None:
    """Every recorded trial of a planned cell must be the trial the plan gives that cell and seed.

    The spec can be unchanged while a trial's identity is not: a ``folder`` dataset's files changed
    (``data.fingerprint``), or the code did (caught first by ``code`` in the spec).  A grid trial is
    compared with the planned identity of its cell and seed; a search trial (its configuration was
    sampled) by its recorded configuration under this code and with the cell's planned data.
    Raises :class:`StudyChanged` naming the first trials that differ.
    """
    cells = {c.key: c for c in plan.cells}
    bad: list[FieldChange] = []
    for t in trials:
        cell = cells.get(t.cell_key)
        if cell is None:
            continue
        if t.search_index is None:
            now = trial_identity({**cell.config, "seed": t.seed})
        else:
            now = trial_identity({**t.config, "data": cell.config.get("data")})
        if now != t.trial_hash:
            bad.append(FieldChange(f"trial {t.cell_key} seed {t.seed}", t.trial_hash[:12], now[:12]))
    if bad:
        raise StudyChanged(
            study,
            tuple(bad),
            f"{len(bad)} recorded trials have another identity than this plan gives them, with the same "
            "spec: their data (a folder dataset's files, data.fingerprint) or the code that trains them "
            "changed since they ran",
        )


def _decide_doc(spec: StudySpec) -> dict[str, Any] | None:
    """``decide:`` as a document the study parser accepts again (``k`` only with ``score: mean_last_k``)."""
    if spec.decide is None:
        return None
    doc = _jsonable(dataclasses.asdict(spec.decide))
    if doc.get("score") != "mean_last_k":
        doc.pop("k", None)
    return doc


def rename(spec: StudySpec, new_name: str) -> StudySpec:
    """``spec`` under another name (``iel submit --as NEW_NAME``); raises :class:`SpecError` for a bad name."""
    if not isinstance(new_name, str) or not NAME_PATTERN.fullmatch(new_name) or len(new_name) > 200:
        raise SpecError(
            f"invalid name {new_name!r}; use 1-200 characters from A-Z a-z 0-9 _ . -", path="--as"
        )
    return dataclasses.replace(spec, name=new_name, raw={**spec.raw, "name": new_name})


# -- comparing ----------------------------------------------------------------------------------------


def diff(old: Any, new: Any, path: str = "") -> list[FieldChange]:
    """Every difference between two JSON-like values, as dotted paths (lists are compared whole)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[FieldChange] = []
        for key in [*old, *(k for k in new if k not in old)]:
            sub = f"{path}.{key}" if path else str(key)
            out.extend(diff(old.get(key, _ABSENT), new.get(key, _ABSENT), sub))
        return out
    if _same(old, new):
        return []
    return [FieldChange(path, old, new)]


def _same(a: Any, b: Any) -> bool:
    if a is _ABSENT or b is _ABSENT:
        return a is b
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    text = json.dumps(value, sort_keys=True, separators=(", ", ": "))
    return text if len(text) <= 60 else text[:57] + "..."


def _compatible(c: FieldChange) -> bool:
    if any(c.path == p or c.path.startswith(p + ".") for p in _COMPATIBLE):
        return True
    # A key that one side's base does not have at all comes from a different code version's defaults.
    return c.path.startswith("base.") and (c.old is _ABSENT or c.new is _ABSENT)


def _seeds_change(old: Any, new: Any, searched: bool, seeds_done: int | None) -> tuple[bool, str]:
    """``(compatible, why not)`` of a change of ``seeds``."""
    if isinstance(old, list) and isinstance(new, list):
        if searched:
            return (
                False,
                "a search's trials cycle through the seeds, so changing them changes which seed a trial gets",
            )
        lost = [s for s in old if s not in new]
        return (
            not lost,
            f"seeds {lost} would be dropped, but the study may have results for them" if lost else "",
        )
    if isinstance(old, dict) and isinstance(new, dict):
        a, b = old["adaptive"], new["adaptive"]
        if (a["start"], a["batch"]) != (b["start"], b["batch"]):
            return False, "adaptive start and batch fix which seeds each comparison gets"
        if b["max"] >= a["max"] or (seeds_done is not None and seeds_done <= b["max"]):
            return True, ""
        done = (
            f"comparisons already have {seeds_done} seeds"
            if seeds_done
            else "comparisons may have more seeds"
        )
        return False, f"adaptive max lowered from {a['max']} to {b['max']}, but {done}"
    return False, "fixed and adaptive seeds are different designs"


def check_resubmit(
    old: Mapping[str, Any], new: Mapping[str, Any], *, seeds_done: int | None = None
) -> SpecChange:
    """Classify the change from the stored spec ``old`` to ``new`` (canonical, or raw documents).

    ``seeds_done``, when known, is the most seeds any comparison of the study has run (it lets adaptive
    ``max`` be lowered while no comparison is past it).  Returns a :class:`SpecChange` (identical or
    compatible) or raises :class:`StudyChanged` listing the changes that can change results.
    """
    name = str(new.get("name") or old.get("name") or "?")
    try:
        before = normalize(old)
    except SpecError as e:
        raise StudyChanged(
            name, (), f"the recorded spec can no longer be read by this version of the platform: {e}"
        ) from None
    after = normalize(new)
    changes = diff(before, after)
    if not changes:
        return SpecChange(ChangeKind.IDENTICAL)
    bad: list[FieldChange] = []
    why: list[str] = []
    searched = before.get("search") is not None
    for c in changes:
        if _compatible(c):
            continue
        if c.path == "seeds" or c.path.startswith("seeds."):
            ok, reason = _seeds_change(before["seeds"], after["seeds"], searched, seeds_done)
            if ok:
                continue
            why.append(reason)
        elif c.path == "code":
            why.append(CODE_CHANGED)
        elif c.path == "search.n_trials" and isinstance(c.old, int) and isinstance(c.new, int):
            if c.new >= c.old:
                continue
            why.append(f"search.n_trials lowered from {c.old} to {c.new}, below trials that may have run")
        bad.append(c)
    if bad:
        raise StudyChanged(name, tuple(bad), "; ".join(dict.fromkeys(why)))
    return SpecChange(ChangeKind.COMPATIBLE, tuple(changes))


__all__ = [
    "CANONICAL_FORMAT",
    "ChangeKind",
    "FieldChange",
    "SpecChange",
    "StudyChanged",
    "canonical_spec",
    "check_resubmit",
    "diff",
    "normalize",
    "rename",
]
