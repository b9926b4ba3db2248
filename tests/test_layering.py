"""The layering holds: ``ielcore`` is pure science, ``workers`` sits below ``orchestrator``.

Each check imports every module of a package in a fresh interpreter and lists what got imported, so an
indirect import (a module importing a helper that imports Ray) fails the test too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_IMPORT_ALL = """
import importlib, json, pkgutil, sys
pkg = importlib.import_module({pkg!r})
for info in pkgutil.walk_packages(pkg.__path__, {pkg!r} + "."):
    if ".migrations" in info.name:
        continue
    importlib.import_module(info.name)
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}})))
"""


def _top_level_imports(pkg: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL.format(pkg=pkg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_ielcore_imports_no_orchestration_library() -> None:
    loaded = _top_level_imports("ielcore")
    assert "ielcore" in loaded and "torch" in loaded  # the check did import the package
    forbidden = {"ray", "mlflow", "optuna", "sqlalchemy", "alembic", "workers", "orchestrator"}
    assert not (loaded & forbidden), f"ielcore pulled in {sorted(loaded & forbidden)}"


def test_workers_never_import_the_orchestrator() -> None:
    loaded = _top_level_imports("workers")
    assert "workers" in loaded and "ray" in loaded
    assert "orchestrator" not in loaded
