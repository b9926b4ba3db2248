"""Optuna's trial cache for the one process that writes its studies: no database read per ask and tell.

Optuna wraps an RDB storage in a cache (``optuna.storages._CachedStorage``) that keeps finished trials but
reads every unfinished and new trial back from the database at each ``get_all_trials`` -- three times per
``ask`` with TPE -- and each unfinished ``get_trial``: about six queries per trial, most of Optuna's cost
in the driver.  The driver is the only writer of its cells' Optuna studies while it runs (the study's
driver lock), so :class:`SingleWriterCache` reads each study once and then applies every write made
through it to its cached copy as well: a trial's params, attributes and intermediate values as written,
and, when a trial ends, the trial as the database then holds it (one read per trial, so its state, values
and times are the stored ones).  What Optuna stores is unchanged (every write still goes to the database,
through the same storage methods), and so is what samplers and pruners see.  Not for a storage that other
processes write while this one runs: their writes would not be seen until the next start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optuna import distributions
from optuna.storages import RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.trial import FrozenTrial, TrialState


class SingleWriterCache(_CachedStorage):
    """See the module docstring.  ``backend`` is the RDB storage (its writes are the database's)."""

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self._read_once: set[int] = set()

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
        super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
        with self._lock:
            trial = self._cached(trial_id)
            if trial is not None:
                trial.params[param_name] = distribution.to_external_repr(param_value_internal)
                trial.distributions[param_name] = distribution

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        try:
            return super().set_trial_state_values(trial_id, state, values)
        finally:
            self._reload(trial_id)  # as stored (also when the write failed: a trial finished elsewhere)

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        super().set_trial_intermediate_value(trial_id, step, intermediate_value)
        self._update(trial_id, intermediate={step: float(intermediate_value)})

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        super().set_trial_user_attr(trial_id, key, value)
        self._update(trial_id, user_attrs={key: value})

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        super().set_trial_system_attr(trial_id, key, value)
        self._update(trial_id, system_attrs={key: value})

    def write_trial_extras(
        self, trial_id: int, user_attrs: Mapping[str, Any], intermediate: Mapping[int, float]
    ) -> None:
        """The backend's batched write (``BatchRDBStorage.write_trial_extras``: a step already reported
        keeps its first value), applied to the cache too."""
        self._backend.write_trial_extras(trial_id, user_attrs, intermediate)  # type: ignore[attr-defined]
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
