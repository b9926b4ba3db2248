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
_TAG_BATCH = 100


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


def tracked_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a trial configuration that apply to it: the ``noop`` section only on no-op trials."""
    if config.get("kind", "train") == "noop":
        return dict(config)
    return {k: v for k, v in config.items() if k != "noop"}


class TrackingUnavailable(IELError):
    pass


def standard_tags() -> dict[str, str]:
    """MLflow's own tags for a run started by this driver: user, source (the ``iel`` entry point) and commit."""
    import getpass
    import sys

    from orchestrator.version import git_commit

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        user = "unknown"
    tags = {
        "mlflow.user": user,
        "mlflow.source.name": Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "iel",
        "mlflow.source.type": "LOCAL",
    }
    commit = git_commit()
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit
    return tags


def final_rows(
    epochs: Mapping[int, Mapping[str, float]], final: Mapping[str, float | None]
) -> list[tuple[int, str, float]]:
    """Each final value under its own name at the last epoch's step, unless it only repeats that epoch's
    value: a run's latest ``dice`` is its final Dice, with no ``final_dice`` copy."""
    last = max(epochs) if epochs else 0
    at_last = epochs.get(last, {})
    return [
        (last, k, float(v))
        for k, v in final.items()
        if v is not None and (k not in at_last or float(at_last[k]) != float(v))
    ]


def trial_metric_rows(
    epochs: Mapping[int, Mapping[str, float]], final: Mapping[str, float | None]
) -> list[tuple[int, str, float]]:
    """A trial's MLflow metrics: every epoch's values, then :func:`final_rows`."""
    rows = [(int(e), k, float(v)) for e, m in sorted(epochs.items()) for k, v in m.items()]
    return rows + final_rows(epochs, final)


def relocate_store(mlflow_uri: str, artifact_root: str | None) -> int:
    """Point a home's SQLite MLflow store at the home's artifact folder; returns how many experiments moved.

    MLflow records absolute artifact locations (``file:///old/home/mlartifacts/<study>``) in the store, so a
    copied or moved home would read, and write, the artifacts of the original.  On open, every experiment
    whose local location is not in ``artifact_root`` is moved to ``artifact_root/<its folder name>``, with
    its runs' artifact URIs (one transaction, parameters bound, never pasted into SQL).  Other stores (a
    server, PostgreSQL) keep their locations.
    """
    import sqlite3
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    from orchestrator.settings import sqlite_file

    path = sqlite_file(mlflow_uri)
    if artifact_root is None or path is None or not path.exists():
        return 0
    root = Path(artifact_root).resolve()
    conn = sqlite3.connect(path, timeout=60)
    moved = 0
    try:
        with conn:
            rows = conn.execute("SELECT experiment_id, artifact_location FROM experiments").fetchall()
            for exp_id, location in rows:
                if not location or not str(location).startswith("file:"):
                    continue
                folder = Path(url2pathname(urlsplit(str(location)).path))
                if folder.parent == root:
                    continue
                new = (root / folder.name).as_uri()
                conn.execute(
                    "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?", (new, exp_id)
                )
                conn.execute(
                    "UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) "
                    "WHERE experiment_id = ? AND substr(artifact_uri, 1, ?) = ?",
                    (new, len(location) + 1, exp_id, len(location), location),
                )
                moved += 1
    except sqlite3.Error as e:  # e.g. a read-only home: reading still works, so only warn
        import logging

        logging.getLogger("orchestrator.tracking").warning(
            "cannot point the MLflow store %s at the home's artifacts %s (%s); runs keep their recorded "
            "artifact locations until the home is writable",
            path,
            root,
            e,
        )
    finally:
        conn.close()
    return moved


def relocate_artifacts(settings: Any) -> int:
    """:func:`relocate_store` for a :class:`~orchestrator.settings.Settings`."""
    return relocate_store(settings.mlflow_uri, settings.artifact_root)


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
        relocate_store(tracking_uri, artifact_root)
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

    def store_engine(self) -> Any:
        """The SQLAlchemy engine of a database tracking store (SQLite, PostgreSQL...), else None."""
        store = getattr(getattr(self.client, "_tracking_client", None), "store", None)
        return getattr(store, "engine", None)

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

    def find_runs(self, exp_id: str, tags: Mapping[str, str]) -> list[str]:
        """The ids of the experiment's runs carrying all ``tags``, newest first (the tags are compared here,
        never pasted into a filter string: a factor value may hold any character, ``'`` included)."""
        from mlflow.entities import ViewType

        found: list[str] = []
        token: str | None = None
        while True:
            page = self.client.search_runs(
                [exp_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token
            )
            found += [r.info.run_id for r in page if all(r.data.tags.get(k) == v for k, v in tags.items())]
            token = page.token
            if not token:
                return found

    def find_run(self, exp_id: str, tags: Mapping[str, str]) -> str | None:
        """The newest run carrying all ``tags`` (see :meth:`find_runs`)."""
        runs = self.find_runs(exp_id, tags)
        return runs[0] if runs else None

    def create_run(
        self, exp_id: str, name: str, tags: Mapping[str, str], parent_run_id: str | None = None
    ) -> str:
        """A new RUNNING run (nested under ``parent_run_id`` when given) with the standard MLflow tags."""
        all_tags = {**standard_tags(), **tags}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        return str(self.client.create_run(exp_id, tags=all_tags, run_name=name).info.run_id)

    def ensure_run(
        self, exp_id: str, name: str, tags: Mapping[str, str], parent_run_id: str | None = None
    ) -> str:
        """Find the run with these identifying tags (``iel.role``, ``iel.cell``, ``iel.submit``) or create it.

        A found run keeps its status: reopening a finished run would stretch its duration over the time
        between two submits."""
        key = {k: v for k, v in tags.items() if k in ("iel.role", "iel.cell", "iel.submit")}
        run_id = self.find_run(exp_id, key)
        return run_id if run_id is not None else self.create_run(exp_id, name, tags, parent_run_id)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        entries = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
        for i in range(0, len(entries), _METRIC_BATCH):
            self.client.log_batch(run_id, tags=entries[i : i + _METRIC_BATCH], synchronous=True)

    # ----------------------------------------------------------------------------------------- trials
    def start_trial(
        self,
        exp_id: str,
        parent_run_id: str,
        name: str,
        config: Mapping[str, Any],
        tags: Mapping[str, str],
    ) -> str:
        run_id = self.create_trial(exp_id, parent_run_id, name, tags)
        self.log_params(run_id, config)
        return run_id

    def create_trial(self, exp_id: str, parent_run_id: str, name: str, tags: Mapping[str, str]) -> str:
        """Create a trial's run (``iel.role=trial``, nested under ``parent_run_id``); no params yet."""
        return self.create_run(exp_id, name, {**tags, "iel.role": "trial"}, parent_run_id)

    def log_params(self, run_id: str, config: Mapping[str, Any]) -> None:
        """Log a configuration as flattened params, in batches MLflow accepts."""
        params = _params(config)
        for i in range(0, len(params), _PARAM_BATCH):
            self.client.log_batch(run_id, params=params[i : i + _PARAM_BATCH], synchronous=True)
        self.log_dataset(run_id, config)

    def log_dataset(self, run_id: str, config: Mapping[str, Any]) -> None:
        """Log a trial's dataset as the run's input (MLflow's Datasets): named by its type, its digest the
        folder's file fingerprint (``data.fingerprint``) or a hash of the data section, its source the folder
        (``data.root``) or the generator in :mod:`ielcore.data`.  No-op trials read no data: nothing."""
        import hashlib
        import json

        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        data = config.get("data")
        if not isinstance(data, Mapping) or config.get("kind", "train") == "noop":
            return
        kind = str(data.get("type", "data"))
        digest = (
            str(data.get("fingerprint") or "")
            or hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
        )
        if data.get("root"):
            from mlflow.data.dataset_source_registry import resolve_dataset_source

            source: Any = resolve_dataset_source(Path(str(data["root"])).resolve().as_uri())
        else:
            source = CodeDatasetSource({"generator": f"ielcore.data.{kind}", **flatten(data)})
        dataset = MetaDataset(source, name=kind, digest=digest[:36])  # type: ignore[abstract]
        tags = [InputTag("mlflow.data.context", "train")]
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags)])

    def log_metrics(
        self,
        run_id: str,
        rows: Sequence[tuple[int, str, float]],
        tags: Mapping[str, str] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        """Log ``(step, name, value)`` rows (and ``tags``, and ``config`` as :meth:`log_params` does) in as
        few requests as MLflow allows: one for a usual trial."""
        from mlflow.entities import Metric, Param, RunTag

        params: list[Param] = []
        if config is not None:
            params = _params(config)
            if len(params) > _PARAM_BATCH or len(tags or {}) > _TAG_BATCH:  # over one request's limits
                self.log_params(run_id, config)
                params = []
            else:
                self.log_dataset(run_id, config)
        now = int(time.time() * 1000)
        entries: list[Metric | RunTag] = [RunTag(k, str(v)[:5000]) for k, v in (tags or {}).items()]
        entries += [Metric(name, float(value), now, int(step)) for step, name, value in rows]
        for i in range(0, max(len(entries), 1 if params else 0), _METRIC_BATCH - len(params)):
            chunk = entries[i : i + _METRIC_BATCH - len(params)]
            self.client.log_batch(
                run_id,
                metrics=[e for e in chunk if isinstance(e, Metric)],
                params=params,
                tags=[e for e in chunk if isinstance(e, RunTag)],
                synchronous=True,
            )
            params = []

    def finish(
        self,
        run_id: str,
        status: str,
        error: str | None = None,
        tags: Mapping[str, str] | None = None,
        metrics: Sequence[tuple[int, str, float]] = (),
        config: Mapping[str, Any] | None = None,
    ) -> None:
        """End a run: status FINISHED, FAILED or KILLED; a failure's reason goes in tags and description.

        The last metrics (``(step, name, value)`` rows), the tags (and the params of ``config``, when not
        logged yet) go in as few ``log_batch`` requests as MLflow's limits allow (one for a usual trial),
        then the status: two writes per run end."""
        all_tags = dict(tags or {})
        if error:
            all_tags["iel.error"] = error[:5000]
            all_tags["mlflow.note.content"] = f"**{status}**: {error[:4900]}"
        self.log_metrics(run_id, metrics, all_tags, config)
        self.client.set_terminated(run_id, status=status)

    def log_text(self, run_id: str, text: str, path: str) -> None:
        self.client.log_text(run_id, text, path)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, local_path, artifact_path)

    def close_stale(self, exp_id: str, reason: str) -> int:
        """Set every RUNNING run of the experiment to KILLED with ``reason``; returns how many."""
        runs = self.running_runs(exp_id)
        for run_id in runs:
            self.finish(run_id, "KILLED", error=reason)
        return len(runs)

    def running_runs(self, exp_id: str) -> list[str]:
        """The ids of the experiment's RUNNING runs."""
        runs = self.client.search_runs(
            [exp_id], filter_string="attributes.status = 'RUNNING'", max_results=10000
        )
        return [run.info.run_id for run in runs]

    def run_status(self, run_id: str) -> str:
        return str(self.client.get_run(run_id).info.status)


def _params(config: Mapping[str, Any]) -> list[Any]:
    """A configuration as MLflow params (flattened, as :meth:`Tracker.log_params` logs them)."""
    from mlflow.entities import Param

    return [Param(k, v) for k, v in flatten(tracked_params(config)).items()]
