"""Segmentation metrics: Dice (the authors' definition), IoU, pixel accuracy and shape measures.

Overlap metrics are per image over the *foreground* classes ``1..C-1``, averaged over classes; a class
absent from both prediction and truth scores 1.  Shape measures act on the predicted foreground
``{pred != 0}`` of one image:

- solidity ``= area / convex-hull area`` (1.0 for an empty mask), with the convex-hull area counted in
  pixels as scikit-image does: the hull of the pixel "diamonds" (each pixel centre ``+-0.5`` along each
  axis) and every pixel whose centre lies inside or on that hull;
- connected components with 8-connectivity (pixels sharing an edge or a corner are connected);
- per-object solidity: the solidity of each 8-connected component on its own, averaged with the components'
  areas as weights.  On images with several objects (``blobs``) the whole-mask solidity measures the gaps
  between objects, not their shapes; the per-object figure is 1.0 for any set of disjoint convex objects.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import ConvexHull

from ielcore.errors import SpecError

DICE_EPS = 1e-6  # the authors' smoothing term: (2|P∩T| + eps) / (|P| + |T| + eps)
NONCONVEX_SOLIDITY = 0.95
_EIGHT = np.ones((3, 3), dtype=bool)
_FOUR = ndimage.generate_binary_structure(2, 1)
_DIAMOND = np.array([[-0.5, 0.0], [0.5, 0.0], [0.0, -0.5], [0.0, 0.5]])


def _check_pair(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> None:
    if pred.shape != target.shape or pred.ndim != 3:
        raise SpecError(
            f"pred and target must both be [B, H, W], got {tuple(pred.shape)} and {tuple(target.shape)}",
            path="pred",
        )
    if num_classes < 2:
        raise SpecError(f"num_classes must be >= 2, but got num_classes={num_classes}", path="num_classes")


def _overlaps(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image and foreground class: ``(|P ∩ T|, |P|, |T|)``, each ``float64 [B, C-1]``."""
    _check_pair(pred, target, num_classes)
    classes = torch.arange(1, num_classes, device=pred.device).view(1, -1, 1, 1)
    p = pred.unsqueeze(1) == classes  # (B, C-1, H, W)
    t = target.unsqueeze(1) == classes
    count = lambda m: m.sum(dim=(2, 3)).double()  # noqa: E731
    return count(p & t), count(p), count(t)


def dice_per_class(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Dice per image and foreground class (``float64 [B, C-1]``, column ``k-1`` for class ``k``).

    ``D_k = (2|P_k ∩ T_k| + eps) / (|P_k| + |T_k| + eps)`` with ``eps = 1e-6`` (the authors' definition),
    where an empty ``P_k`` and empty ``T_k`` give ``D_k = 1``.
    """
    inter, p, t = _overlaps(pred, target, num_classes)
    two_i = 2.0 * inter
    sets = torch.where(p + t == 0, two_i, p + t)
    return (two_i + DICE_EPS) / (sets + DICE_EPS)


def dice_per_image(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Dice per image (``float64 [B]``), exactly as the authors evaluate: the mean over the foreground
    classes of :func:`dice_per_class`."""
    return dice_per_class(pred, target, num_classes).mean(dim=1)


def iou_per_image(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean IoU over foreground classes per image (``float64 [B]``): ``|P ∩ T| / |P ∪ T|``, 1 if both empty."""
    inter, p, t = _overlaps(pred, target, num_classes)
    union = p + t - inter
    return torch.where(union == 0, torch.ones_like(union), inter / union.clamp(min=1)).mean(dim=1)


def pixel_accuracy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Share of pixels with the right class, per image (``float64 [B]``), background included."""
    _check_pair(pred, target, 2)
    return (pred == target).double().mean(dim=(1, 2))


def _as_bool_array(mask: torch.Tensor | np.ndarray) -> np.ndarray:
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if arr.ndim != 2:
        raise SpecError(f"mask must be 2-D [H, W], got shape {arr.shape}", path="mask")
    return arr.astype(bool)


def convex_hull_area(mask: torch.Tensor | np.ndarray) -> int:
    """Number of pixels whose centre lies in (or on) the convex hull of the mask's pixel diamonds."""
    m = _as_bool_array(mask)
    if not m.any():
        return 0
    edge = m & ~ndimage.binary_erosion(m, structure=_FOUR)  # interior pixels never shape the hull
    pts = np.unique((np.argwhere(edge)[:, None, :] + _DIAMOND).reshape(-1, 2), axis=0)
    hull = ConvexHull(pts)
    lo = np.floor(pts.min(axis=0)).astype(int)
    hi = np.ceil(pts.max(axis=0)).astype(int)
    rr, cc = np.mgrid[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1]
    centres = np.stack([rr.ravel(), cc.ravel()], axis=1).astype(np.float64)
    # hull.equations: a.x + b <= 0 inside (outward unit normals); coordinates are half-integers
    inside = (centres @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9).all(axis=1)
    return int(inside.sum())


def solidity(mask: torch.Tensor | np.ndarray) -> float:
    """``area / convex-hull area`` of the whole mask (all components together); 1.0 for an empty mask."""
    m = _as_bool_array(mask)
    area = int(m.sum())
    return 1.0 if area == 0 else area / convex_hull_area(m)


def object_solidities(mask: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(solidity, area)`` of each 8-connected component of the mask (in label order); empty for none."""
    m = _as_bool_array(mask)
    labels, n = ndimage.label(m, structure=_EIGHT)
    sol = np.empty(n, dtype=np.float64)
    area = np.empty(n, dtype=np.int64)
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        comp = labels[box] == k
        area[k - 1] = int(comp.sum())
        sol[k - 1] = area[k - 1] / convex_hull_area(comp)
    return sol, area


def object_solidity(mask: torch.Tensor | np.ndarray) -> tuple[float, float]:
    """Area-weighted mean per-object solidity, and the share of foreground area in non-convex objects
    (solidity < 0.95); ``(1.0, 0.0)`` for an empty mask."""
    return _object_summary(*object_solidities(mask))


def _object_summary(sol: np.ndarray, area: np.ndarray) -> tuple[float, float]:
    if area.size == 0:
        return 1.0, 0.0
    total = float(area.sum())
    return float((sol * area).sum() / total), float(area[sol < NONCONVEX_SOLIDITY].sum() / total)


def num_components(mask: torch.Tensor | np.ndarray) -> int:
    """Number of 8-connected components of ``mask``."""
    return int(ndimage.label(_as_bool_array(mask), structure=_EIGHT)[1])


def segmentation_metrics(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Batch means of every metric.

    Keys: ``dice``, ``miou``, ``pixel_acc`` (means over images); ``dice_c1`` ... ``dice_c<C-1>`` (Dice
    of each foreground class, mean over images; ``dice`` is their mean); ``solidity`` (mean solidity of the
    predicted foreground ``pred != 0``); ``nonconvex_share`` (share of images with that solidity < 0.95);
    ``multi_component_share`` (share with more than one 8-connected foreground component);
    ``components`` (mean number of foreground components); ``object_solidity`` (mean over images of the
    area-weighted per-object solidity) and ``nonconvex_area_share`` (mean share of foreground area in
    non-convex objects): the shape measures for images with several objects.
    """
    _check_pair(pred, target, num_classes)
    if pred.shape[0] == 0:
        raise SpecError("cannot compute metrics of an empty batch", path="pred")
    fg = (pred != 0).cpu().numpy()
    sol = np.array([solidity(f) for f in fg])
    per_object = [object_solidities(f) for f in fg]  # labels each image once
    comps = np.array([area.size for _, area in per_object])
    objects = np.array([_object_summary(sol, area) for sol, area in per_object])
    per_class = dice_per_class(pred, target, num_classes).mean(dim=0)  # (C-1,)
    return {
        "dice": float(per_class.mean()),
        **{f"dice_c{k}": float(d) for k, d in enumerate(per_class.tolist(), start=1)},
        "miou": float(iou_per_image(pred, target, num_classes).mean()),
        "pixel_acc": float(pixel_accuracy(pred, target).mean()),
        "solidity": float(sol.mean()),
        "nonconvex_share": float((sol < NONCONVEX_SOLIDITY).mean()),
        "multi_component_share": float((comps > 1).mean()),
        "components": float(comps.mean()),
        "object_solidity": float(objects[:, 0].mean()),
        "nonconvex_area_share": float(objects[:, 1].mean()),
    }
