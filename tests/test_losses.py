"""Losses against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ielcore.errors import SpecError, UnknownNameError
from ielcore.losses import LOSS_TYPES, build_loss, resolve_loss_params


def _batch(c: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn((2, c, 5, 6), generator=g, dtype=torch.float64)
    target = torch.randint(0, c, (2, 5, 6), generator=g)
    return logits, target


def _np_ce(z: np.ndarray, y: np.ndarray) -> float:
    zmax = z.max(axis=1, keepdims=True)
    logp = z - zmax - np.log(np.exp(z - zmax).sum(axis=1, keepdims=True))
    b, _, h, w = z.shape
    return -np.mean([logp[i, y[i, r, s], r, s] for i in range(b) for r in range(h) for s in range(w)])


def test_registry_names() -> None:
    assert set(LOSS_TYPES) == {"ce", "ce_dice", "smooth"}


def test_ce_is_cross_entropy() -> None:
    z, y = _batch()
    loss = build_loss("ce", 3)(z, y)
    assert loss.ndim == 0
    assert float(loss) == pytest.approx(float(F.cross_entropy(z, y)), abs=1e-12)
    assert float(loss) == pytest.approx(_np_ce(z.numpy(), y.numpy()), abs=1e-12)


@pytest.mark.parametrize("weight", [1.0, 0.5])
def test_ce_dice_by_hand(weight: float) -> None:
    z, y = _batch(c=3, seed=1)
    zn, yn = z.numpy(), y.numpy()
    prob = np.exp(zn) / np.exp(zn).sum(axis=1, keepdims=True)
    dices = []
    for k in (1, 2):  # foreground classes only, pooled over the batch
        p, t = prob[:, k], (yn == k).astype(float)
        dices.append((2 * (p * t).sum() + 1e-6) / (p.sum() + t.sum() + 1e-6))
    expected = _np_ce(zn, yn) + weight * (1 - np.mean(dices))
    assert float(build_loss("ce_dice", 3, dice_weight=weight)(z, y)) == pytest.approx(expected, abs=1e-12)


def test_ce_dice_perfect_prediction_has_no_dice_term() -> None:
    y = torch.randint(0, 2, (2, 8, 8), generator=torch.Generator().manual_seed(0))
    z = 50.0 * F.one_hot(y, 2).permute(0, 3, 1, 2).double()
    assert float(build_loss("ce_dice", 2)(z, y)) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("padding", ["zero", "replicate"])
def test_smoothing_loss_by_finite_differences(padding: str) -> None:
    z, y = _batch(c=2, seed=2)
    zn = z.numpy()
    b, c, h, w = zn.shape
    total = 0.0
    for i in range(b):
        for k in range(c):
            for r in range(h):
                for s in range(w):
                    if padding == "zero":
                        left = zn[i, k, r, s - 1] if s > 0 else 0.0
                        up = zn[i, k, r - 1, s] if r > 0 else 0.0
                    else:
                        left = zn[i, k, r, max(s - 1, 0)]
                        up = zn[i, k, max(r - 1, 0), s]
                    total += (zn[i, k, r, s] - left) ** 2 + (zn[i, k, r, s] - up) ** 2
    expected = _np_ce(zn, y.numpy()) + 2.0 * total / zn.size
    loss = build_loss("smooth", 2, padding=padding)(z, y)
    assert float(loss) == pytest.approx(expected, abs=1e-12)
    assert float(build_loss("smooth", 2, lam=0.0)(z, y)) == pytest.approx(float(F.cross_entropy(z, y)))


def test_smoothing_zero_padding_matches_authors_convolution() -> None:
    """The authors compute D_x with a 3x3 kernel (-1 at [1,0], 1 at [1,1]) and zero padding 1."""
    z, y = _batch(c=3, seed=3)
    kx = torch.zeros((3, 1, 3, 3), dtype=z.dtype)
    kx[:, 0, 1, 0], kx[:, 0, 1, 1] = -1.0, 1.0
    ky = torch.zeros_like(kx)
    ky[:, 0, 0, 1], ky[:, 0, 1, 1] = -1.0, 1.0
    gx, gy = F.conv2d(z, kx, padding=1, groups=3), F.conv2d(z, ky, padding=1, groups=3)
    expected = F.cross_entropy(z, y) + 2.0 * (gx**2 + gy**2).mean()
    assert float(build_loss("smooth", 3)(z, y)) == pytest.approx(float(expected), abs=1e-12)


@pytest.mark.parametrize("name", list(LOSS_TYPES))
def test_losses_are_differentiable(name: str) -> None:
    z, y = _batch()
    z.requires_grad_(True)
    build_loss(name, 3)(z, y).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_builder_errors_and_resolved_params() -> None:
    with pytest.raises(UnknownNameError, match="ce, ce_dice, smooth"):
        build_loss("focal", 3)
    with pytest.raises(SpecError, match="valid parameters are: lam, padding"):
        build_loss("smooth", 3, lambda_value=2.0)
    with pytest.raises(SpecError) as err:
        build_loss("ce_dice", 3, dice_weight=-1.0)
    assert err.value.path == "dice_weight"
    with pytest.raises(SpecError) as err:
        build_loss("smooth", 3, padding="reflect")
    assert err.value.path == "padding"
    z, y = _batch(c=3)
    with pytest.raises(SpecError, match=r"logits \[B, 4, H, W\]"):
        build_loss("ce", 4)(z, y)
    assert resolve_loss_params("ce", {}) == {}
    assert resolve_loss_params("ce_dice", {}) == {"dice_weight": 1.0}
    assert resolve_loss_params("smooth", {"lam": 1.0}) == {"lam": 1.0, "padding": "zero"}
