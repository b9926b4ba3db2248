"""Optuna storage access with the results database's retry policy."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
from sqlalchemy import exc as sa_exc

from orchestrator.db.engine import (
    DEFAULT_RETRY_ATTEMPTS,
    DEFAULT_RETRY_BACKOFF_S,
    MAX_RETRY_DELAY_S,
    is_transient,
)

T = TypeVar("T")
_db_logger = logging.getLogger("orchestrator.db")  # retries of Optuna's storage are logged with ours


def optuna_storage(db_url: str) -> optuna.storages.RDBStorage:
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if db_url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 60}}
    return optuna.storages.RDBStorage(db_url, engine_kwargs=kwargs)


def storage_call(fn: Callable[..., T], *args: Any) -> T:
    """Call into Optuna's storage, retrying on a lost database connection like the results database does
    (Optuna wraps the driver's error in a StorageInternalError): backoff 0.5 s, 1 s, 2 s, ..."""
    for k in range(1, DEFAULT_RETRY_ATTEMPTS + 1):
        try:
            return fn(*args)
        except (optuna.exceptions.StorageInternalError, sa_exc.DBAPIError) as e:
            cause = e if isinstance(e, sa_exc.DBAPIError) else e.__cause__
            if k == DEFAULT_RETRY_ATTEMPTS or cause is None or not is_transient(cause):
                raise
            delay = min(DEFAULT_RETRY_BACKOFF_S * 2 ** (k - 1), MAX_RETRY_DELAY_S)
            _db_logger.warning(
                "Optuna storage operation failed (%s); retry %d/%d in %.2f s",
                str(getattr(cause, "orig", None) or cause).splitlines()[0][:200],
                k,
                DEFAULT_RETRY_ATTEMPTS - 1,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")
