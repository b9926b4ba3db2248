"""Optuna's trial cache for the one process that writes its studies: no database read per ask and tell.

Optuna wraps an RDB storage in a cache (``optuna.storages._CachedStorage``) that keeps finished trials but
reads every unfinished and new trial back from the database at each ``get_all_trials`` -- three times per
``ask`` with TPE -- and each unfinished ``get_trial``: about six queries per trial, most of Optuna's cost
in the driver.  The driver is the only writer of its cells' Optuna studies while it runs (the study's
driver lock), so :class:`SingleWriterCache` reads each study once and then applies every write made
through it to its cached copy as well: a trial's params, attributes and intermediate values as written,
and, when a trial ends, its state, values and completion time as written (the last extras staged with
the end go in the same transaction, ``BatchRDBStorage.end_trial``; an end written otherwise is read back
once).  A sampled param is written with the trial's next write.  What Optuna stores is unchanged (the same
rows as Optuna's own storage methods write), and so is what samplers and pruners see.  Not for a storage that other
processes write while this one runs: their writes would not be seen until the next start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optuna import distributions
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.trial import FrozenTrial, TrialState

from orchestrator.driver.storage import Param


class SingleWriterCache(_CachedStorage):
    """See the module docstring.  ``backend`` is the RDB storage (its writes are the database's)."""

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self._read_once: set[int] = set()
        self._staged: dict[int, tuple[dict[str, Any], dict[int, float]]] = {}
        self._params: dict[int, list[Param]] = {}  # sampled, written with the trial's next write

    # --------------------------------------------------------------------------------------- reads
    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        if study_id in self._read_once:
            return
        super()._read_trials_from_remote_storage(study_id)
        self._read_once.add(study_id)

    def _get_cached_trial(self, trial_id: int) -> FrozenTrial | None:  # called with the lock held
        return self._cached(trial_id)

    def _cached(self, trial_id: int) -> FrozenTrial | None:
        if trial_id not in self._trial_id_to_study_id_and_number:
            return None
        study_id, number = self._trial_id_to_study_id_and_number[trial_id]
        return self._studies[study_id].trials.get(number)

    # -------------------------------------------------------------------------------------- writes
    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: distributions.BaseDistribution,
    ) -> None:
        with self._lock:
            study_id, _ = self._trial_id_to_study_id_and_number[trial_id]
            known = self._studies[study_id].param_distribution.get(param_name)
            trial = self._cached(trial_id)
        if known is None or trial is None or trial.state.is_finished():
            # the first of its name here (checked against the database), or an error for a finished trial
            super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
        else:
            distributions.check_distribution_compatibility(known, distribution)  # as Optuna checks it
            self._params.setdefault(trial_id, []).append((param_name, param_value_internal, distribution))
        with self._lock:
            if trial is not None:
                trial.params[param_name] = distribution.to_external_repr(param_value_internal)
                trial.distributions[param_name] = distribution

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        staged = self._staged.get(trial_id)
        if staged is None or not state.is_finished():
            self._flush_params(trial_id)
            try:
                return super().set_trial_state_values(trial_id, state, values)
            finally:
                self._reload(trial_id)  # as stored (also when the write failed: a trial finished elsewhere)
        try:
            when = self._backend.end_trial(  # type: ignore[attr-defined]
                trial_id, *staged, state, values, self._params.get(trial_id, ())
            )
        except UpdateFinishedTrialError:  # ended by an earlier attempt of this write, or elsewhere
            self._written(trial_id)
            self._reload(trial_id)
            raise
        self._written(trial_id)
        if when is None:
            self._reload(trial_id)
            return False
        with self._lock:  # the trial as just written: no re-read
            trial = self._cached(trial_id)
            if trial is not None:
                trial.state, trial.values, trial.datetime_complete = state, values, when
        return True

    def stage_extras(
        self, trial_id: int, user_attrs: Mapping[str, Any], intermediate: Mapping[int, float]
    ) -> None:
        """Attributes and intermediate values (as :meth:`write_trial_extras`) for the cache now and for the
        database with the trial's end: the next finishing ``set_trial_state_values`` writes them in the same
        transaction (``BatchRDBStorage.end_trial``).  :meth:`unstage` takes back what was not written."""
        self._staged[trial_id] = (dict(user_attrs), dict(intermediate))
        self._apply_extras(trial_id, user_attrs, intermediate)

    def _written(self, trial_id: int) -> None:
        """Forget what was staged for the trial (written, or no longer writable)."""
        self._staged.pop(trial_id, None)
        self._params.pop(trial_id, None)

    def unstage(self, trial_id: int) -> tuple[dict[str, Any], dict[int, float]] | None:
        """The extras staged for ``trial_id`` and not written yet (None when none are left)."""
        return self._staged.pop(trial_id, None)

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        self._flush_params(trial_id)
        super().set_trial_intermediate_value(trial_id, step, intermediate_value)
        self._update(trial_id, intermediate={step: float(intermediate_value)})

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._flush_params(trial_id)
        super().set_trial_user_attr(trial_id, key, value)
        self._update(trial_id, user_attrs={key: value})

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._flush_params(trial_id)
        super().set_trial_system_attr(trial_id, key, value)
        self._update(trial_id, system_attrs={key: value})

    def write_trial_extras(
        self, trial_id: int, user_attrs: Mapping[str, Any], intermediate: Mapping[int, float]
    ) -> None:
        """The backend's batched write (``BatchRDBStorage.write_trial_extras``: a step already reported
        keeps its first value), applied to the cache too."""
        self._backend.write_trial_extras(  # type: ignore[attr-defined]
            trial_id, user_attrs, intermediate, self._params.get(trial_id, ())
        )
        self._params.pop(trial_id, None)
        self._apply_extras(trial_id, user_attrs, intermediate)

    def _flush_params(self, trial_id: int) -> None:
        """Write the trial's sampled params not written yet (before any other write of the trial)."""
        if self._params.get(trial_id):
            self.write_trial_extras(trial_id, {}, {})

    def _apply_extras(
        self, trial_id: int, user_attrs: Mapping[str, Any], intermediate: Mapping[int, float]
    ) -> None:
        with self._lock:
            trial = self._cached(trial_id)
            if trial is not None:
                trial.user_attrs.update(user_attrs)
                for step, value in intermediate.items():
                    trial.intermediate_values.setdefault(step, float(value))

    def _update(
        self,
        trial_id: int,
        user_attrs: Mapping[str, Any] | None = None,
        system_attrs: Mapping[str, Any] | None = None,
        intermediate: Mapping[int, float] | None = None,
    ) -> None:
        with self._lock:
            trial = self._cached(trial_id)
            if trial is None:
                return
            trial.user_attrs.update(user_attrs or {})
            trial.system_attrs.update(system_attrs or {})
            trial.intermediate_values.update(intermediate or {})

    def _reload(self, trial_id: int) -> None:
        fresh = self._backend.get_trial(trial_id)
        with self._lock:
            if trial_id in self._trial_id_to_study_id_and_number:
                study_id, number = self._trial_id_to_study_id_and_number[trial_id]
                self._studies[study_id].trials[number] = fresh
