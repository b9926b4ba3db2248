"""ielcore: the science of the platform (IELs, label noise, models, data, metrics, the trainer).

Pure PyTorch/NumPy/SciPy; imports no Ray, MLflow, Optuna or SQLAlchemy.  Names are re-exported lazily
so that importing one family does not import the others.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "IEL_TYPES": "ielcore.iel",
    "build_iel": "ielcore.iel",
    "NOISE_TYPES": "ielcore.noise",
    "build_noise": "ielcore.noise",
    "MODEL_TYPES": "ielcore.models",
    "build_model": "ielcore.models",
    "DATASET_TYPES": "ielcore.data",
    "build_dataset": "ielcore.data",
    "LOSS_TYPES": "ielcore.losses",
    "build_loss": "ielcore.losses",
    "segmentation_metrics": "ielcore.metrics",
    "TrialConfig": "ielcore.spec",
    "config_hash": "ielcore.spec",
    "train_trial": "ielcore.train",
    "TrialResult": "ielcore.result",
    "RunStatus": "ielcore.states",
    "TrialState": "ielcore.states",
    "FailureKind": "ielcore.states",
    "load_checkpoint": "ielcore.artifacts",
    "IELError": "ielcore.errors",
    "SpecError": "ielcore.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ielcore' has no attribute {name!r}")
