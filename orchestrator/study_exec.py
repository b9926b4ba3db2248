"""The execution settings of a study: ``resources``, ``timeout_s`` and ``fuse`` (see :mod:`orchestrator.study`).

``resources`` and ``timeout_s`` cannot change a trial's result; ``fuse`` can (float rounding in a fused
group), so a study's version includes it (:mod:`orchestrator.study_version`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ielcore.errors import SpecError
from ielcore.fields import check_choice, check_float, check_keys, check_mapping

FUSE_MODES = ("auto", "off")


@dataclass(frozen=True)
class Resources:
    """What one trial asks of a worker. Quantities above 1 must be whole numbers (Ray's rule)."""

    cpus: float = 1.0
    gpus: float = 0.0
    gpu_memory_fraction: float | None = None


def parse_resources(raw: Any) -> Resources:
    m = check_mapping(raw, "resources")
    check_keys(m, "resources", ("cpus", "gpus", "gpu_memory_fraction"))
    cpus = check_float(m.get("cpus", 1), "resources.cpus", low=0.0, low_open=True)
    gpus = check_float(
        m.get("gpus", 0), "resources.gpus", low=0.0, hint="0, a fraction such as 0.5, or a whole number"
    )
    for key, q in (("cpus", cpus), ("gpus", gpus)):
        if q > 1 and q != int(q):
            raise SpecError(
                f"a quantity above 1 must be a whole number (Ray's rule) but got {q}; use a fraction "
                "<= 1 or an integer",
                path=f"resources.{key}",
            )
    fraction = m.get("gpu_memory_fraction")
    if fraction is not None:
        fraction = check_float(
            fraction, "resources.gpu_memory_fraction", low=0.0, low_open=True, hint="in (0, 1]"
        )
        if fraction > 1:
            raise SpecError(f"must be in (0, 1] but got {fraction}", path="resources.gpu_memory_fraction")
        if gpus == 0:
            raise SpecError(
                "a GPU memory fraction needs gpus > 0; set resources.gpus (e.g. 0.5) or remove it",
                path="resources.gpu_memory_fraction",
            )
    return Resources(cpus=cpus, gpus=gpus, gpu_memory_fraction=fraction)


def parse_timeout(raw: Any) -> float | None:
    if raw is None:
        return None
    return check_float(raw, "timeout_s", low=0.0, low_open=True, hint="seconds > 0, or null for no timeout")


def parse_fuse(raw: Any) -> str:
    # YAML 1.1 reads a bare `off` as false and `on` as true.
    value = ("auto" if raw else "off") if isinstance(raw, bool) else raw
    return check_choice(value, "fuse", FUSE_MODES)


__all__ = ["FUSE_MODES", "Resources", "parse_fuse", "parse_resources", "parse_timeout"]
