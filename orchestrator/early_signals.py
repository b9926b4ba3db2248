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
    """Remember SIGINT from now on, where SIGINT still has Python's default handler (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _remember)


def pending() -> int | None:
    """The first signal remembered, or None."""
    return _received[0] if _received else None
