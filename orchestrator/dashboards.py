"""``iel optuna-dashboard STUDY``: optuna-dashboard over the Optuna studies of one study's cells.

Every cell of a study has its own Optuna study named ``"<study>::<cell key>"`` in the results database
(Optuna's RDB storage shares the database with our tables).  The dashboard is given a storage that lists
only those cell studies and refuses to delete or create studies (the driver owns them); its pages hide
those actions (:func:`read_only_pages`).  A busy port is an :class:`IELError` (exit 2).  It is served by
a threaded ``wsgiref`` server bound to 127.0.0.1 unless asked otherwise.
"""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Callable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from optuna.storages import RDBStorage

from ielcore.errors import IELError
from orchestrator.search import optuna_study_name
from orchestrator.settings import Settings, sqlite_file
from orchestrator.ui import busy_port_error

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


# optuna-dashboard (0.21) has no read-only mode: its pages are given a style that hides the actions this
# storage refuses (create, rename and delete a study), so the dashboard offers no button that fails.
HIDE_ACTIONS = (
    b"<style>button:has(svg[data-testid=AddBoxIcon]),button[aria-label='delete study'],"
    b"button[aria-label='rename study']{display:none!important}</style>"
)


_IMPORTANCES = re.compile(r"/api/studies/(\d+)/param_importances")


def read_only_pages(app: Callable[..., Any], storage: RDBStorage | None = None) -> Callable[..., Any]:
    """WSGI middleware adding :data:`HIDE_ACTIONS` to every HTML page of ``app``.  With ``storage``, the
    parameter importances of a study without searched parameters (a grid study's cells) are empty instead of
    optuna-dashboard's "internal server error" (it divides by the number of parameters)."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.update(status=status, headers=headers, exc_info=exc_info)
            return lambda data: None

        body = b"".join(app(environ, capture))
        headers = captured["headers"]
        found = _IMPORTANCES.fullmatch(environ.get("PATH_INFO", ""))
        if storage is not None and found and captured["status"].startswith("500"):
            n = len(storage.get_study_directions(int(found.group(1))))
            body = json.dumps({"param_importances": [[] for _ in range(n)]}).encode()
            captured["status"] = "200 OK"
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
        if any(k.lower() == "content-type" and v.startswith("text/html") for k, v in headers):
            body = body.replace(b"</head>", HIDE_ACTIONS + b"</head>", 1)
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
        start_response(captured["status"], headers, captured["exc_info"])
        return [body]

    return wrapped


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
    storage = cell_storage(settings, study)
    app = read_only_pages(wsgi(storage), storage)
    handler = _QuietHandler if quiet else WSGIRequestHandler
    try:
        return make_server(host, port, app, server_class=_ThreadingServer, handler_class=handler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise busy_port_error(host, port, "optuna-dashboard") from None
        raise IELError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --host/--port"
        ) from e


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
