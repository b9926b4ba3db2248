"""Small study documents used by the orchestration tests (no-op trials unless stated)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def noop_study(name: str, **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": 1,
        "name": name,
        "description": "no-op test study",
        "base": {
            "kind": "noop",
            "epochs": 3,
            "noise": {"type": "none", "rate": 0.0},
            "optimizer": {"type": "adam", "lr": 1.0e-3},
        },
        "factors": {"noise.rate": [0.0, 0.2], "optimizer.lr": [1.0e-3, 1.0e-2]},
        "baseline": {"optimizer.lr": 1.0e-3},
        "seeds": 2,
        "max_concurrent": 2,
        "retries": 1,
    }
    doc.update(overrides)
    return doc


def write_study(tmp: Path, doc: dict[str, Any]) -> Path:
    path = tmp / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
