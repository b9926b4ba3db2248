"""Code version recorded beside (not in) a trial's identity."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path


@functools.cache
def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.cache
def package_versions() -> str:
    import importlib.metadata as md

    parts = []
    for name in ("torch", "ray", "optuna", "mlflow", "sqlalchemy"):
        try:
            parts.append(f"{name}={md.version(name)}")
        except md.PackageNotFoundError:
            continue
    return " ".join(parts)


def code_version() -> str:
    import ielcore

    return f"{ielcore.__version__}+{git_commit()}"
