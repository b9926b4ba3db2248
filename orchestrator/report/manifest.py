"""What ``iel report`` wrote into an output folder, so it never deletes or overwrites anything else.

The report is built in a hidden folder inside the output folder; :func:`publish` then moves each file into
place and records it in ``.iel-report-manifest.json``.  Only files listed there (by an earlier report) are
replaced or removed; a file the report would write where a file the platform did not write stands (or a
folder, or a file where a folder must go) makes :func:`publish` refuse before anything moves.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

from ielcore.errors import IELError

MANIFEST = ".iel-report-manifest.json"


class OutputInTheWay(IELError):
    """The output folder holds files the report did not write where the report would write its own."""


def _safe(rel: str) -> bool:
    p = PurePosixPath(rel)
    return bool(rel) and not p.is_absolute() and ".." not in p.parts and p.name != MANIFEST


def manifest_files(out: Path) -> list[str]:
    """The files (relative POSIX paths) the last report wrote into ``out``; [] without a manifest."""
    try:
        doc = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, list):
        return []
    return [f for f in files if isinstance(f, str) and _safe(f) and (out / f).is_file()]


def _blocked(out: Path, rel: str, ours: set[str]) -> bool:
    """True when writing ``rel`` would replace something that is not ours (a file, a folder, or a file
    standing where one of ``rel``'s folders must be)."""
    target = out / rel
    if target.exists() or target.is_symlink():
        return rel not in ours or not target.is_file() or target.is_symlink()
    parent = target.parent
    while parent != out:
        if parent.exists() and not parent.is_dir():
            return True
        parent = parent.parent
    return False


def publish(stage: Path, out: Path) -> list[str]:
    """Move every file under ``stage`` to the same place under ``out``; remove the files of the previous
    report that this one does not write again; record the new list.  Returns the relative paths written.

    Raises :class:`OutputInTheWay` (and moves nothing) when a destination holds something ``iel report``
    did not write."""
    ours = set(manifest_files(out))
    new = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file())
    blocked = [rel for rel in new if _blocked(out, rel, ours)]
    if blocked:
        shown = ", ".join(str(out / b) for b in blocked[:5]) + (" ..." if len(blocked) > 5 else "")
        raise OutputInTheWay(
            f"the report would overwrite {len(blocked)} file(s) in {out} that `iel report` did not write "
            f"({shown}); nothing was changed. Move them away, or choose another output folder with --out "
            f"(a report's own files are listed in {MANIFEST} and are replaced freely)"
        )
    for rel in sorted(ours - set(new)):  # a figure of the earlier report that this one does not draw
        (out / rel).unlink(missing_ok=True)
    for rel in new:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / rel, out / rel)
    tmp = out / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"files": new}, indent=1), encoding="utf-8")
    os.replace(tmp, out / MANIFEST)
    return new
