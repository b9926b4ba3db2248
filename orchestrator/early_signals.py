"""Ctrl-C before the driver's :class:`~orchestrator.driver.cluster.InterruptGuard` is installed.

Between the start of ``iel`` and the guard, SIGINT raises :class:`KeyboardInterrupt` as Python's default
handler does, and is also remembered here.  Importing torch, Ray, MLflow and Optuna takes seconds, and code
that catches every exception around an optional import can swallow that ``KeyboardInterrupt``; the CLI and
the guard then find the remembered signal (:func:`pending`) and stop as for any Ctrl-C (exit 130).
Only the main thread can set handlers; elsewhere (a library importing this package) nothing is installed.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

_received: list[int] = []


def _remember(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def install() -> None:
    """Remember SIGINT from now on, where SIGINT has Python's default handler or is ignored (main thread
    only).  An ignored SIGINT is inherited from the parent (a background job of a non-interactive shell, a
    test runner); the driver's guard takes SIGINT over anyway once installed, so ``iel`` answers Ctrl-C the
    same way from its first import on.  A handler some other code set is left alone."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) in (signal.default_int_handler, signal.SIG_IGN):
        signal.signal(signal.SIGINT, _remember)


def pending() -> int | None:
    """The first signal remembered, or None."""
    return _received[0] if _received else None
