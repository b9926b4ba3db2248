"""``iel optuna-dashboard STUDY``: optuna-dashboard over the Optuna studies of one study's cells.

Every cell of a study has its own Optuna study named ``"<study>::<cell key>"`` in the results database
(Optuna's RDB storage shares the database with our tables).  The dashboard is given a storage that lists
only those cell studies and refuses to delete or create studies (the driver owns them).  It is served by
a threaded ``wsgiref`` server bound to 127.0.0.1 unless asked otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from optuna.storages import RDBStorage

from ielcore.errors import IELError
from orchestrator.search import optuna_study_name
from orchestrator.settings import Settings, sqlite_file

if TYPE_CHECKING:
    from optuna.study._frozen import FrozenStudy  # returned by every storage's get_all_studies


class ReadOnlyStudiesError(IELError):
    pass


class CellStudiesStorage(RDBStorage):
    """Optuna's RDB storage showing only the cell studies of one study (names ``"<study>::..."``);
    studies cannot be created or deleted through it."""

    def __init__(self, url: str, study: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.prefix = optuna_study_name(study, "")

    def get_all_studies(self) -> list[FrozenStudy]:
        return [s for s in super().get_all_studies() if s.study_name.startswith(self.prefix)]

    def delete_study(self, study_id: int) -> None:
        raise ReadOnlyStudiesError(
            "the cell studies belong to the study's driver; they cannot be deleted here"
        )

    def create_new_study(self, directions: Any, study_name: str | None = None) -> int:
        raise ReadOnlyStudiesError("studies are created by `iel submit`, not by the dashboard")


def cell_storage(settings: Settings, study: str) -> CellStudiesStorage:
    """The filtered storage of ``study``; raises :class:`IELError` naming the studies when it has no cell."""
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if settings.db_url.startswith("sqlite") else {}
    path = sqlite_file(settings.db_url)
    if path is not None and not path.exists():
        raise IELError(
            f"no results database at {path}; run `iel submit STUDY.yaml` first, or point --db / "
            "$IEL_DB_URL (or --home / $IEL_HOME) at an existing one"
        )
    storage = CellStudiesStorage(settings.db_url, study, engine_kwargs=kwargs)
    if not storage.get_all_studies():
        names = sorted({s.study_name.split("::", 1)[0] for s in RDBStorage.get_all_studies(storage)})
        raise IELError(
            f"study {study!r} has no Optuna cell studies in the results database; studies with cells: "
            f"{names or 'none'} (run `iel submit` first)"
        )
    return storage


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def make_dashboard_server(
    settings: Settings, study: str, host: str = "127.0.0.1", port: int = 8080, quiet: bool = True
) -> WSGIServer:
    """A bound (not yet serving) optuna-dashboard server; ``port=0`` lets the OS choose the port."""
    try:
        from optuna_dashboard import wsgi
    except ImportError as e:
        raise IELError(
            "optuna-dashboard is not installed; `pip install optuna-dashboard` into this environment"
        ) from e
    app = wsgi(cell_storage(settings, study))
    handler = _QuietHandler if quiet else WSGIRequestHandler
    return make_server(host, port, app, server_class=_ThreadingServer, handler_class=handler)


def serve_optuna_dashboard(
    settings: Settings,
    study: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    announce: Callable[[str], None] = lambda s: print(s, flush=True),
) -> int:
    """Serve the dashboard until Ctrl-C; announces ``http://HOST:PORT`` once the socket is bound."""
    server = make_dashboard_server(settings, study, host, port)
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    announce(f"optuna-dashboard for study {study} at http://{bound_host}:{bound_port} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
