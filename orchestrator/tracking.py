"""MLflow run lifecycle, owned by the driver.

Layout: one experiment per study; a parent run for the study (``iel.role=study``), a nested run per cell
(``iel.role=cell``), and a child run per trial attempt (``iel.role=trial``).  The driver creates every run,
logs params, tags and metrics (in batches), and sets the final status: FINISHED, FAILED (with the reason
in the ``iel.error`` tag and the run description) or KILLED (pruned, or interrupted).  Workers only upload
artifacts to the run they are handed.  :meth:`Tracker.close_stale` ends any run a crashed driver left
RUNNING, so the store never holds zombies.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ielcore.errors import IELError

# MLflow's limits: 100 params / 1000 metrics per log_batch, param values up to 6000 characters.
_PARAM_BATCH = 100
_METRIC_BATCH = 1000


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"iel": {"dt": 0.1}}`` -> ``{"iel.dt": "0.1"}`` (lists as JSON-ish text)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = str(value)[:6000]
    return out


class TrackingUnavailable(IELError):
    pass


SERVER_PROBE_TIMEOUT_S = 10.0


def _host_of(uri: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(uri).netloc.rsplit("@", 1)[-1] or uri


def probe_server(tracking_uri: str, timeout_s: float = SERVER_PROBE_TIMEOUT_S) -> None:
    """Raise :class:`TrackingUnavailable` at once when nothing answers at an ``http(s)://`` tracking URI.

    MLflow's client retries a refused connection with exponential backoff (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``
    = 7, backoff factor 2) and gives up only after about four minutes; one plain ``GET /health`` with a
    ``timeout_s`` connect timeout tells "no server there" in seconds.  Any HTTP answer, a slow answer and TLS
    errors (which MLflow's own TLS settings may resolve) leave the verdict to the real request that follows.
    Other URIs (files, SQLite, database URLs) are not probed.
    """
    if not tracking_uri.lower().startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(tracking_uri.rstrip("/") + "/health", timeout=timeout_s).close()
    except (requests.exceptions.SSLError, requests.exceptions.ReadTimeout):
        return
    except (requests.exceptions.ConnectionError, requests.exceptions.ConnectTimeout) as e:
        raise TrackingUnavailable(
            f"no MLflow server answers at {tracking_uri!r} ({type(e).__name__}); start it "
            "(`mlflow server --backend-store-uri ... --serve-artifacts`, or `docker compose up mlflow`) "
            "or fix --mlflow / $IEL_MLFLOW_URI"
        ) from e


class Tracker:
    """Thin adapter over :class:`mlflow.tracking.MlflowClient` for one study."""

    def __init__(self, tracking_uri: str, artifact_root: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        probe_server(tracking_uri)
        try:
            self.client = MlflowClient(tracking_uri)
            self.client.search_experiments(max_results=1)
        except Exception as e:  # translate at the boundary
            text = str(e)
            hint = "start the MLflow server or fix --mlflow / $IEL_MLFLOW_URI"
            if "Invalid Host header" in text:  # MLflow >= 3.5 answers 403 to host names it was not told about
                hint = (
                    "the server rejects this host name: start it with `mlflow server --allowed-hosts "
                    f"{_host_of(tracking_uri)},...` (or $MLFLOW_SERVER_ALLOWED_HOSTS)"
                )
            raise TrackingUnavailable(
                f"cannot reach the MLflow tracking store at {tracking_uri!r} ({type(e).__name__}: "
                f"{text.splitlines()[0][:300] if text else ''}); {hint}"
            ) from e

    # ------------------------------------------------------------------------------------ experiment
    def experiment(self, study_name: str, description: str = "") -> str:
        name = f"iel/{study_name}"
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return str(exp.experiment_id)
        location = None
        if self.artifact_root:
            location = (Path(self.artifact_root) / study_name).resolve().as_uri()
        exp_id = self.client.create_experiment(
            name, artifact_location=location, tags={"iel.study": study_name}
        )
        if description:
            self.client.set_experiment_tag(exp_id, "mlflow.note.content", description)
        return str(exp_id)

    def find_run(self, exp_id: str, tags: Mapping[str, str]) -> str | None:
        clauses = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([exp_id], filter_string=clauses, max_results=1)
        return runs[0].info.run_id if runs else None

    def ensure_run(
        self, exp_id: str, name: str, tags: Mapping[str, str], parent_run_id: str | None = None
    ) -> str:
        """Find the run with these identifying tags or create it; mark it RUNNING either way."""
        key = {k: v for k, v in tags.items() if k in ("iel.role", "iel.cell")}
        run_id = self.find_run(exp_id, key)
        if run_id is None:
            all_tags = dict(tags)
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id
            run_id = self.client.create_run(exp_id, tags=all_tags, run_name=name).info.run_id
        else:
            self.client.update_run(run_id, status="RUNNING")
        return run_id

    # ----------------------------------------------------------------------------------------- trials
    def start_trial(
        self,
        exp_id: str,
        parent_run_id: str,
        name: str,
        config: Mapping[str, Any],
        tags: Mapping[str, str],
    ) -> str:
        all_tags = {**tags, "iel.role": "trial", "mlflow.parentRunId": parent_run_id}
        run_id = str(self.client.create_run(exp_id, tags=all_tags, run_name=name).info.run_id)
        from mlflow.entities import Param

        params = [Param(k, v) for k, v in flatten(config).items()]
        for i in range(0, len(params), _PARAM_BATCH):
            self.client.log_batch(run_id, params=params[i : i + _PARAM_BATCH], synchronous=True)
        return run_id

    def log_metrics(self, run_id: str, rows: Sequence[tuple[int, str, float]]) -> None:
        """Log ``(step, name, value)`` rows in as few requests as MLflow allows."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(name, float(value), now, int(step)) for step, name, value in rows]
        for i in range(0, len(metrics), _METRIC_BATCH):
            self.client.log_batch(run_id, metrics=metrics[i : i + _METRIC_BATCH], synchronous=True)

    def finish(
        self,
        run_id: str,
        status: str,
        error: str | None = None,
        tags: Mapping[str, str] | None = None,
        metrics: Sequence[tuple[int, str, float]] = (),
    ) -> None:
        """End a run: status FINISHED, FAILED or KILLED; a failure's reason goes in tags and description.

        The last metrics (``(step, name, value)`` rows) and the tags go in as few ``log_batch`` requests as
        MLflow's limits allow (one for a usual trial), then the status: two writes per run end."""
        from mlflow.entities import Metric, RunTag

        all_tags = dict(tags or {})
        if error:
            all_tags["iel.error"] = error[:5000]
            all_tags["mlflow.note.content"] = f"**{status}**: {error[:5000]}"
        now = int(time.time() * 1000)
        entries: list[Metric | RunTag] = [RunTag(k, str(v)) for k, v in all_tags.items()]
        entries += [Metric(name, float(value), now, int(step)) for step, name, value in metrics]
        for i in range(0, len(entries), _METRIC_BATCH):
            chunk = entries[i : i + _METRIC_BATCH]
            self.client.log_batch(
                run_id,
                metrics=[e for e in chunk if isinstance(e, Metric)],
                tags=[e for e in chunk if isinstance(e, RunTag)],
                synchronous=True,
            )
        self.client.set_terminated(run_id, status=status)

    def log_text(self, run_id: str, text: str, path: str) -> None:
        self.client.log_text(run_id, text, path)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, local_path, artifact_path)

    def close_stale(self, exp_id: str, reason: str) -> int:
        """Set every RUNNING run of the experiment to KILLED with ``reason``; returns how many."""
        runs = self.client.search_runs(
            [exp_id], filter_string="attributes.status = 'RUNNING'", max_results=10000
        )
        for run in runs:
            self.finish(run.info.run_id, "KILLED", error=reason)
        return len(runs)

    def run_status(self, run_id: str) -> str:
        return str(self.client.get_run(run_id).info.status)
