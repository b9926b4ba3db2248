"""Datasets: a registry of procedural look-alikes and a folder loader for real data.

``build_dataset("cells", seed=0, num_images=64, size=64)`` returns a :class:`SegData`;
:func:`split_indices` splits it into training and validation indices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ielcore._params import lookup, resolve_params
from ielcore.data.base import SegData, split_indices
from ielcore.data.blobs import make_blobs
from ielcore.data.cells import make_cells
from ielcore.data.folder import load_folder

DATASET_TYPES: dict[str, Callable[..., SegData]] = {
    "cells": make_cells,
    "blobs": make_blobs,
    "folder": load_folder,
}


def resolve_dataset_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` of dataset ``name`` checked against its signature, with every default filled in.

    ``seed`` is an argument of :func:`build_dataset`, not a parameter.
    """
    factory = lookup(DATASET_TYPES, "dataset", name)
    return resolve_params(factory, params, kind=f"dataset {name!r}", skip=("seed",))


def build_dataset(name: str, seed: int, **params: Any) -> SegData:
    """Build dataset ``name`` (deterministic by ``seed``); unknown names/parameters raise SpecError."""
    factory = lookup(DATASET_TYPES, "dataset", name)
    return factory(seed=seed, **resolve_dataset_params(name, params))


__all__ = [
    "DATASET_TYPES",
    "SegData",
    "build_dataset",
    "load_folder",
    "make_blobs",
    "make_cells",
    "resolve_dataset_params",
    "split_indices",
]
