"""Alembic environment of the results database.

Run programmatically by :meth:`orchestrator.db.ResultsDB.upgrade`, which passes an open connection in
``config.attributes["connection"]``.  Only ``iel_*`` objects are ours: Optuna's tables in the same
database are never touched, and our version table is ``iel_alembic_version`` (Optuna uses
``alembic_version``).
"""

from __future__ import annotations

from typing import Any

from alembic import context

from orchestrator.db.engine import make_engine
from orchestrator.db.models import TABLE_PREFIX, VERSION_TABLE, Base

config = context.config


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    if type_ == "table":
        return bool(name and name.startswith(TABLE_PREFIX))
    return True


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        include_object=include_object,
        render_as_batch=True,
        **kwargs,
    )


def run_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.begin() as conn:
            _configure(connection=conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
