"""Metrics against independent computations (hand-written NumPy, scikit-image, SciPy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.measure import label as sk_label
from skimage.measure import regionprops
from skimage.morphology import convex_hull_image

from ielcore.metrics import (
    dice_per_class,
    dice_per_image,
    iou_per_image,
    num_components,
    object_solidities,
    object_solidity,
    pixel_accuracy,
    segmentation_metrics,
    solidity,
)


def _np_dice(pred: np.ndarray, target: np.ndarray, c: int) -> np.ndarray:
    """The authors' formula, written out with loops."""
    out = []
    for p_img, t_img in zip(pred, target):
        scores = []
        for k in range(1, c):
            p, t = p_img == k, t_img == k
            inter, sets = 2.0 * np.logical_and(p, t).sum(), p.sum() + t.sum()
            if sets == 0:
                sets = inter
            scores.append((inter + 1e-6) / (sets + 1e-6))
        out.append(np.mean(scores))
    return np.array(out)


def _np_iou(pred: np.ndarray, target: np.ndarray, c: int) -> np.ndarray:
    out = []
    for p_img, t_img in zip(pred, target):
        scores = []
        for k in range(1, c):
            p, t = p_img == k, t_img == k
            union = np.logical_or(p, t).sum()
            scores.append(1.0 if union == 0 else np.logical_and(p, t).sum() / union)
        out.append(np.mean(scores))
    return np.array(out)


def _random_pairs(c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, c, (6, 16, 16), generator=g)
    flip = torch.rand((6, 16, 16), generator=g) < 0.3
    pred = torch.where(flip, torch.randint(0, c, (6, 16, 16), generator=g), target)
    pred[0] = 0  # an image with no foreground prediction
    target[1] = 0
    pred[1] = 0  # empty prediction and empty truth: Dice 1
    return pred, target


@pytest.mark.parametrize("c", [2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_dice_iou_accuracy_match_numpy(c: int, seed: int) -> None:
    pred, target = _random_pairs(c, seed)
    p, t = pred.numpy(), target.numpy()
    assert np.allclose(dice_per_image(pred, target, c).numpy(), _np_dice(p, t, c), rtol=0, atol=1e-12)
    assert np.allclose(iou_per_image(pred, target, c).numpy(), _np_iou(p, t, c), rtol=0, atol=1e-12)
    assert np.allclose(pixel_accuracy(pred, target).numpy(), (p == t).mean(axis=(1, 2)))
    assert float(dice_per_image(pred, target, c)[1]) == 1.0


def test_dice_crafted_values() -> None:
    t = torch.zeros((1, 10, 10), dtype=torch.long)
    p = torch.zeros_like(t)
    t[0, :2, :5] = 1  # |T| = 10
    p[0, 1:3, :5] = 1  # |P| = 10, overlap 5
    assert float(dice_per_image(p, t, 2)) == pytest.approx(0.5, abs=1e-7)
    assert float(iou_per_image(p, t, 2)) == pytest.approx(5 / 15)
    # class 2 absent from both: counts as 1, so the mean over classes is (0.5 + 1) / 2
    assert float(dice_per_image(p, t, 3)) == pytest.approx(0.75, abs=1e-7)
    assert float(dice_per_image(t, t, 2)) == 1.0
    assert float(dice_per_image(torch.zeros_like(t), t, 2)) == pytest.approx(0.0, abs=1e-6)
    assert float(pixel_accuracy(p, t)) == pytest.approx(0.9)  # 10 of 100 pixels differ


def test_per_class_dice_by_hand() -> None:
    # image 0: class 1 |T|=10, |P|=10, overlap 5 -> 0.5; class 2 |T|=4, |P|=0 -> 0 (eps/(4+eps))
    # image 1: class 1 absent from both -> 1; class 2 |T|=6, |P|=2, overlap 2 -> 4/8 = 0.5
    t = torch.zeros((2, 10, 10), dtype=torch.long)
    p = torch.zeros_like(t)
    t[0, :2, :5] = 1
    p[0, 1:3, :5] = 1
    t[0, 5:7, 5:7] = 2
    t[1, 4, :6] = 2
    p[1, 4, :2] = 2
    per = dice_per_class(p, t, 3)
    assert per.shape == (2, 2)
    assert per[0].tolist() == pytest.approx([0.5, 0.0], abs=1e-6)
    assert per[1].tolist() == pytest.approx([1.0, 0.5], abs=1e-6)
    out = segmentation_metrics(p, t, 3)
    assert out["dice_c1"] == pytest.approx((0.5 + 1.0) / 2, abs=1e-6)
    assert out["dice_c2"] == pytest.approx((0.0 + 0.5) / 2, abs=1e-6)
    assert out["dice"] == pytest.approx((0.5 + 0.0 + 1.0 + 0.5) / 4, abs=1e-6)
    assert "dice_c3" not in out and "dice_c0" not in out
    # a collapsed class is visible: predicting only class 1 where class 2 is keeps dice_c1, zeroes dice_c2
    collapsed = torch.where(t == 2, torch.ones_like(t), t)
    out = segmentation_metrics(collapsed, t, 3)
    assert out["dice_c1"] < 1.0 and out["dice_c2"] == pytest.approx(0.0, abs=1e-6)
    # two classes: only dice_c1, equal to dice
    two = segmentation_metrics((p > 0).long(), (t > 0).long(), 2)
    assert [k for k in two if k.startswith("dice")] == ["dice", "dice_c1"] and two["dice"] == two["dice_c1"]


def _random_masks(seed: int, n: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = []
    for i in range(n):
        m = rng.random((24, 30)) < rng.uniform(0.05, 0.7)
        if i % 2:
            m = ndimage.binary_opening(m)
        masks.append(m)
    return masks


def test_solidity_matches_skimage() -> None:
    for m in _random_masks(0):
        if not m.any():
            assert solidity(torch.from_numpy(m)) == 1.0
            continue
        expected = regionprops(m.astype(np.uint8))[0].solidity  # whole foreground as one region
        assert solidity(torch.from_numpy(m)) == pytest.approx(expected, abs=1e-12)
        assert solidity(m) * convex_hull_image(m).sum() == pytest.approx(m.sum())


def test_solidity_crafted() -> None:
    m = torch.zeros((20, 20), dtype=torch.bool)
    assert solidity(m) == 1.0
    m[2:10, 3:15] = True
    assert solidity(m) == 1.0  # a rectangle is convex
    m[2:10, 3:15] = False
    m[2:12, 2:4] = True  # an L: 10x2 + 2x8 = 36 pixels
    m[10:12, 4:12] = True
    hull = convex_hull_image(m.numpy()).sum()
    assert solidity(m) == pytest.approx(36 / hull)
    assert solidity(m) < 0.7


def test_num_components_matches_scipy_and_skimage() -> None:
    eight = np.ones((3, 3))
    for m in _random_masks(1):
        n = num_components(torch.from_numpy(m))
        assert n == ndimage.label(m, structure=eight)[1]
        assert n == int(sk_label(m, connectivity=2).max())
    diag = torch.eye(5, dtype=torch.bool)
    assert num_components(diag) == 1  # corners connect (8-connectivity); 4-connectivity would give 5
    assert num_components(torch.zeros((4, 4), dtype=torch.bool)) == 0


def test_segmentation_metrics_against_independent_values() -> None:
    pred, target = _random_pairs(3, 2)
    pred[2] = 0
    pred[2, 2:8, 2:8] = 1  # one convex square
    pred[3] = 0
    pred[3, 1:4, 1:4] = 2
    pred[3, 8:12, 8:12] = 1  # two components
    out = segmentation_metrics(pred, target, 3)
    assert list(out) == [
        "dice",
        "dice_c1",
        "dice_c2",
        "miou",
        "pixel_acc",
        "solidity",
        "nonconvex_share",
        "multi_component_share",
        "components",
        "object_solidity",
        "nonconvex_area_share",
    ]
    p, t = pred.numpy(), target.numpy()
    fg = p != 0
    sol = np.array([regionprops(f.astype(np.uint8))[0].solidity if f.any() else 1.0 for f in fg])
    comps = np.array([sk_label(f, connectivity=2).max() for f in fg])
    assert out["dice"] == pytest.approx(_np_dice(p, t, 3).mean())
    assert out["dice"] == pytest.approx((out["dice_c1"] + out["dice_c2"]) / 2)
    assert out["miou"] == pytest.approx(_np_iou(p, t, 3).mean())
    assert out["pixel_acc"] == pytest.approx((p == t).mean())
    assert out["solidity"] == pytest.approx(sol.mean())
    assert out["nonconvex_share"] == pytest.approx((sol < 0.95).mean())
    assert out["multi_component_share"] == pytest.approx((comps > 1).mean())
    assert out["components"] == pytest.approx(comps.mean())
    assert sol[0] == 1.0 and comps[0] == 0 and sol[2] == 1.0 and comps[3] == 2
    # per object: skimage's regionprops on the 8-connected labels, weighted by area
    obj, share = [], []
    for f in fg:
        regions = regionprops(sk_label(f, connectivity=2))
        area = np.array([r.area for r in regions], dtype=float)
        so = np.array([r.solidity for r in regions])
        obj.append((so * area).sum() / area.sum() if regions else 1.0)
        share.append(area[so < 0.95].sum() / area.sum() if regions else 0.0)
    assert out["object_solidity"] == pytest.approx(np.mean(obj))
    assert out["nonconvex_area_share"] == pytest.approx(np.mean(share))
    assert obj[3] == 1.0 and sol[3] < 1.0  # two disjoint squares: convex objects, non-convex union


def test_object_solidity_matches_skimage_per_component() -> None:
    for m in _random_masks(2):
        sols, areas = object_solidities(m)
        regions = regionprops(sk_label(m, connectivity=2))
        assert [int(a) for a in areas] == [int(r.area) for r in regions]
        assert sols == pytest.approx([r.solidity for r in regions], abs=1e-12)


def test_object_solidity_crafted() -> None:
    m = np.zeros((30, 30), dtype=bool)
    assert object_solidity(m) == (1.0, 0.0)
    m[1:5, 1:5] = True  # a 4x4 square (16 px) ...
    m[10:20, 10:20] = True  # ... and a 10x10 square (100 px): both convex, their union is not
    assert object_solidity(m) == (1.0, 0.0)
    assert solidity(m) < 0.6  # 116 px in a hull of 217
    m[10:15, 15:20] = False  # the big square loses a quarter: an L of 75 px
    hull = convex_hull_image(m[10:20, 10:20]).sum()
    assert object_solidity(m)[0] == pytest.approx((16 * 1.0 + 75 * (75 / hull)) / 91)
    assert object_solidity(m)[1] == pytest.approx(75 / 91)  # the L is non-convex (75/hull < 0.95)
