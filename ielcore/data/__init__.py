"""Datasets: a registry of procedural look-alikes, a shipped real sample and a folder loader.

``build_dataset("cells", seed=0, num_images=64, size=64)`` returns a :class:`SegData`;
:func:`split_dataset` splits it into training and validation indices (by region for tiled data such as
``nuclei``, otherwise at random with :func:`split_indices`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ielcore._params import lookup, resolve_params
from ielcore.data.base import SegData, split_dataset, split_indices
from ielcore.data.blobs import make_blobs
from ielcore.data.cells import make_cells
from ielcore.data.folder import load_folder
from ielcore.data.nuclei import check_params as check_nuclei_params
from ielcore.data.nuclei import make_nuclei

DATASET_TYPES: dict[str, Callable[..., SegData]] = {
    "cells": make_cells,
    "blobs": make_blobs,
    "folder": load_folder,
    "nuclei": make_nuclei,
}
# Checks of a dataset's parameters beyond their signature, run when a configuration is validated.
DATASET_CHECKS: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "nuclei": check_nuclei_params,
}


def resolve_dataset_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` of dataset ``name`` checked against its signature, with every default filled in.

    ``seed`` is an argument of :func:`build_dataset`, not a parameter.
    """
    factory = lookup(DATASET_TYPES, "dataset", name)
    resolved = resolve_params(factory, params, kind=f"dataset {name!r}", skip=("seed",))
    if name in DATASET_CHECKS:
        DATASET_CHECKS[name](resolved)
    return resolved


def build_dataset(name: str, seed: int, **params: Any) -> SegData:
    """Build dataset ``name`` (deterministic by ``seed``); unknown names/parameters raise SpecError."""
    factory = lookup(DATASET_TYPES, "dataset", name)
    return factory(seed=seed, **resolve_dataset_params(name, params))


__all__ = [
    "DATASET_CHECKS",
    "DATASET_TYPES",
    "SegData",
    "build_dataset",
    "load_folder",
    "make_blobs",
    "make_cells",
    "make_nuclei",
    "resolve_dataset_params",
    "split_dataset",
    "split_indices",
]
