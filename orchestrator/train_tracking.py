"""``iel train CONFIG --mlflow URI``: one training run tracked in MLflow as a study's trial is.

The run (tag ``iel.role=train``) gets the flattened resolved configuration as params, each epoch's metrics
as they come (step = epoch), the final values that do not just repeat the last epoch, the artifacts the run
wrote (``result.json``, checkpoint, prediction grid) and its end: FINISHED, FAILED (diverged or an error,
the reason in ``iel.error``) or KILLED (Ctrl-C).  Only :mod:`orchestrator.tracking`'s public API is used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from ielcore.result import TrialResult
from ielcore.spec import TrialConfig
from ielcore.states import RunStatus
from orchestrator.tracking import Tracker, final_rows

DEFAULT_EXPERIMENT = "iel/train"


class TrackedTrain:
    """A context around one ``train_trial`` call; :meth:`report` per epoch, :meth:`done` with the result.

    Leaving the context without :meth:`done` ends the run KILLED (interrupted) or FAILED (an exception)."""

    def __init__(
        self, tracking_uri: str, cfg: TrialConfig, config_path: str, experiment: str | None = None
    ) -> None:
        self.tracker = Tracker(tracking_uri)  # a clear error now when the store is unreachable
        self.cfg = cfg
        name = experiment or DEFAULT_EXPERIMENT
        client = self.tracker.client
        exp = client.get_experiment_by_name(name)
        if exp is not None and exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        self.experiment_id = str(exp.experiment_id if exp is not None else client.create_experiment(name))
        self.experiment_name = name
        tags = {
            "iel.role": "train",
            "iel.config_file": str(config_path),
            "iel.trial_hash": cfg.identity,
            "iel.seed": str(cfg.seed),
        }
        self.run_id = self.tracker.create_run(
            self.experiment_id, f"{Path(config_path).stem} seed {cfg.seed}", tags
        )
        self.tracker.log_params(self.run_id, cfg.to_dict())
        self.epochs: dict[int, dict[str, float]] = {}
        self._ended = False

    def report(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Log one epoch's metrics now (the MLflow charts follow the run live)."""
        values = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        self.epochs[int(epoch)] = values
        self.tracker.log_metrics(self.run_id, [(int(epoch), k, v) for k, v in values.items()])

    def done(self, result: TrialResult) -> None:
        """Log the final values and artifacts, and end the run by the result's status."""
        for name, path in sorted(result.artifacts.items()):
            if os.path.isfile(path):
                self.tracker.log_artifact(self.run_id, path)
            elif os.path.isdir(path):
                for f in sorted(Path(path).rglob("*")):
                    if f.is_file():
                        rel = f.relative_to(path).parent
                        self.tracker.log_artifact(self.run_id, str(f), str(Path(name) / rel))
        final = {k: v for k, v in result.final_metrics.items() if v is not None}
        tags = {"iel.device": result.device, "iel.status": str(result.status)}
        if result.status == RunStatus.DIVERGED:
            error = result.error or "the loss became non-finite"
            self._end("FAILED", f"[diverged] {error}", tags, final)
        else:
            self._end("FINISHED", None, tags, final)

    def _end(self, status: str, error: str | None, tags: dict[str, str], final: Mapping[str, float]) -> None:
        self.tracker.finish(
            self.run_id, status, error=error, tags=tags, metrics=final_rows(self.epochs, final)
        )
        self._ended = True

    def __enter__(self) -> TrackedTrain:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._ended or exc_type is None:
            return
        if issubclass(exc_type, KeyboardInterrupt):
            self._end("KILLED", "interrupted (Ctrl-C)", {}, {})
        else:
            self._end("FAILED", f"[error] {exc_type.__name__}: {exc}", {}, {})

    def describe(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment_name,
            "experiment_id": self.experiment_id,
            "run_id": self.run_id,
        }
