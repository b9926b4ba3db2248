"""Optuna inside each ablation cell: one Optuna study per cell, ask/tell from the driver.

Grid studies (no ``search``) still get an Optuna study per cell: each replicate is one asked trial with
no distributions, told COMPLETE/PRUNED/FAIL like any other, so Optuna's view of a study always matches the
results database.  Samplers are seeded (``search.seed`` plus a per-cell offset).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from orchestrator.plan import Cell, cell_search_params
from orchestrator.study import SearchParam, SearchSpec, StudySpec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def distributions(params: Sequence[SearchParam]) -> dict[str, BaseDistribution]:
    out: dict[str, BaseDistribution] = {}
    for p in params:
        if p.type == "float":
            out[p.path] = FloatDistribution(float(p.low), float(p.high), log=p.log, step=p.step)  # type: ignore[arg-type]
        elif p.type == "int":
            out[p.path] = IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))  # type: ignore[arg-type]
        else:
            out[p.path] = CategoricalDistribution(list(p.choices or ()))
    return out


def _cell_seed(base: int, cell_key: str) -> int:
    return (base + int(hashlib.sha256(cell_key.encode()).hexdigest()[:8], 16)) % (2**31)


def make_sampler(search: SearchSpec | None, cell_key: str, resume: int = 0) -> optuna.samplers.BaseSampler:
    """The cell's seeded sampler; ``resume`` (the trials the cell already has) moves the seed on, so a resumed
    search continues instead of proposing its first points again."""
    if search is None:
        return optuna.samplers.RandomSampler(seed=0)
    seed = (_cell_seed(search.seed, cell_key) + 1_000_003 * resume) % (2**31)
    name = search.sampler
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(search.grid_space(), seed=seed)
    raise ValueError(f"unknown sampler {name!r}")


def make_pruner(search: SearchSpec | None) -> optuna.pruners.BasePruner:
    if search is None or search.pruner == "none":
        return optuna.pruners.NopPruner()
    if search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    return optuna.pruners.HyperbandPruner(min_resource=1)


def optuna_study_name(study_name: str, cell_key: str) -> str:
    return f"{study_name}::{cell_key}"


class CellSearch:
    """The Optuna study of one cell, driven by ask/tell."""

    def __init__(self, storage: optuna.storages.BaseStorage, study: StudySpec, cell: Cell) -> None:
        cell_key = cell.key
        self.spec = study.search
        self.name = optuna_study_name(study.name, cell_key)
        objectives = self.spec.objectives if self.spec else ()
        directions: list[Any] = [o.direction for o in objectives] or ["maximize"]
        self.metrics = [o.metric for o in objectives] or ["dice"]
        self.study = optuna.create_study(
            storage=storage,
            study_name=self.name,
            sampler=make_sampler(self.spec, cell_key),
            pruner=make_pruner(self.spec),
            directions=directions,
            load_if_exists=True,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study.set_metric_names(list(self.metrics))
        existing = len(self.study.get_trials(deepcopy=False))
        if existing:  # a resumed search: reseed, so it goes on instead of repeating its first proposals
            self.study.sampler = make_sampler(self.spec, cell_key, resume=existing)
        # Only the parameters that apply to this cell's component types are sampled.
        self._dists = distributions(cell_search_params(cell, self.spec)) if self.spec else {}

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1

    def fail_stale(self) -> int:
        """Tell FAIL to trials a dead driver left RUNNING; returns how many."""
        n = 0
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            self.study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            n += 1
        return n

    def finished_count(self) -> int:
        states = (TrialState.COMPLETE, TrialState.PRUNED)
        return len(self.study.get_trials(deepcopy=False, states=states))

    def ask(self) -> tuple[optuna.trial.Trial, dict[str, Any]]:
        trial = self.study.ask(self._dists)
        return trial, dict(trial.params)

    def describe(self, cell: Cell, mlflow_experiment_id: str) -> None:
        """Study user attributes: the study's name, the cell's key and factors, and its MLflow experiment."""
        self.study.set_user_attr("iel_study", self.name.split("::", 1)[0])
        self.study.set_user_attr("cell", cell.key)
        self.study.set_user_attr("factors", dict(cell.factors))
        self.study.set_user_attr("mlflow_experiment_id", mlflow_experiment_id)

    def report_value(self, trial: optuna.trial.Trial, epoch: int, metrics: Mapping[str, float]) -> bool:
        """Record an epoch's objective value as an intermediate value (single objective only; a step
        already recorded, by an earlier attempt, is kept); True when something was reported."""
        value = metrics.get(self.metrics[0])
        if self.multi_objective or value is None:
            return False
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # "the reported value is ignored because this step is already reported"
            trial.report(float(value), step=epoch)
        return True

    def report(self, trial: optuna.trial.Trial, epoch: int, metrics: Mapping[str, float]) -> bool:
        """Record an epoch (:meth:`report_value`) and ask the pruner; True when the trial should be pruned."""
        reported = self.report_value(trial, epoch, metrics)
        if not reported or self.spec is None or self.spec.pruner == "none":
            return False
        return bool(trial.should_prune())

    def tell_complete(self, trial: optuna.trial.Trial | int, metrics: Mapping[str, float | None]) -> None:
        values = [float(v) if (v := metrics.get(m)) is not None else float("nan") for m in self.metrics]
        if any(v != v for v in values):
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        else:
            self.study.tell(trial, values if self.multi_objective else values[0], skip_if_finished=True)

    def tell_pruned(self, trial: optuna.trial.Trial | int) -> None:
        self.study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)

    def tell_failed(self, trial: optuna.trial.Trial | int) -> None:
        self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)

    def add_reused(
        self, params: Mapping[str, Any], metrics: Mapping[str, float], attrs: Mapping[str, Any]
    ) -> int:
        """Record a reused result as a finished trial (no training) and return its number."""
        trial = self.study.ask({k: v for k, v in self._dists.items() if k in params} if params else None)
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        self.tell_complete(trial, metrics)
        return int(trial.number)
