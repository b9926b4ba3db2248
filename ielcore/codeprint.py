"""The code part of a trial's identity: a fingerprint of the code and data files that train and score it.

A trial's result is a function of its resolved configuration, its data *and the code that runs it*.  The
configuration and a ``folder`` dataset's files are hashed by the plan (:func:`ielcore.spec.config_hash`,
``data.fingerprint``); :func:`code_fingerprint` covers the rest:

- every file of the installed :mod:`ielcore` package (its Python sources and the data it ships, such as
  the vendored DSB2018 nuclei sample), by relative path and SHA-256 of the bytes; ``__pycache__`` and
  compiled files are left out.  Bytes, not a parsed form: the same sources give the same fingerprint on
  every Python version, and any edit, a comment included, is a new code version (the safe side: a
  finished trial is never reused by code that may train it differently);
- the PyTorch version (kernels and defaults change between releases).

:func:`trial_identity` is what the platform stores as a trial's ``trial_hash``: the configuration's hash
and the code fingerprint, hashed together.  So a study resubmitted after the code changed plans trials
with new identities; the driver then refuses to mix them with the recorded ones (see
:mod:`orchestrator.study_version`), and a worker whose code differs from the driver's refuses a task.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


def _files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and not (_SKIP_DIRS & set(p.relative_to(root).parts))
        and p.suffix not in _SKIP_SUFFIXES
    )


def fingerprint_tree(root: Path, extra: str = "") -> str:
    """SHA-256 over the relative paths and contents of the files below ``root`` (sorted), then ``extra``."""
    h = hashlib.sha256()
    for path in _files(root):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    h.update(extra.encode())
    return h.hexdigest()


@functools.cache
def code_fingerprint() -> str:
    """The fingerprint of the code that trains trials in this process (computed once per process)."""
    import torch

    import ielcore

    return fingerprint_tree(Path(ielcore.__file__).resolve().parent, f"torch={torch.__version__}")


def trial_identity(config: Mapping[str, Any], code: str | None = None) -> str:
    """A trial's ``trial_hash``: its configuration's hash and the code fingerprint (this process's unless
    ``code`` is given), hashed together."""
    from ielcore.spec import config_hash

    fp = code if code is not None else code_fingerprint()
    return hashlib.sha256(f"{config_hash(config)}:{fp}".encode()).hexdigest()


__all__ = ["code_fingerprint", "fingerprint_tree", "trial_identity"]
