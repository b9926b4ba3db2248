"""``blobs``: convex objects among clutter, for the convex-shape (curve-motion) IEL.

Two classes, background (0) and object (1).  Every object's true shape is convex: an ellipse or a convex
polygon (vertices on an ellipse in angular order).  The label is the union of the objects, so touching
objects (``touch_prob``) make a non-convex foreground of convex parts.  The image is harder than the
label: dark curvy "vessels" cross everything, objects included, while the label keeps the full convex
shape (as vessels cross the optic disc in REFUGE) -- a network without a shape prior predicts pockets
there; non-convex debris (``clutter``) of intermediate brightness sits on the background; texture,
illumination ramp, blur and noise are added.  Deterministic by ``seed``.
"""

from __future__ import annotations

import math

import torch

from ielcore.data.base import SegData, check_int, check_range, gaussian_blur, grid, smooth_field, uniform
from ielcore.errors import SpecError

CLASS_NAMES = ("background", "object")
_VERTICES = 8


def _inside_convex(yy: torch.Tensor, xx: torch.Tensor, vy: torch.Tensor, vx: torch.Tensor) -> torch.Tensor:
    """Points inside the polygon with counter-clockwise vertices ``(vy, vx)`` (``[N, M]``): ``[N, H, W]``.

    Inside iff ``cross(v[j+1] - v[j], p - v[j]) >= 0`` for every edge (repeated vertices give empty edges).
    """
    inside = torch.ones((vy.shape[0], *yy.shape[-2:]), dtype=torch.bool)
    m = vy.shape[1]
    for j in range(m):
        y0, x0 = vy[:, j].view(-1, 1, 1), vx[:, j].view(-1, 1, 1)
        y1, x1 = vy[:, (j + 1) % m].view(-1, 1, 1), vx[:, (j + 1) % m].view(-1, 1, 1)
        inside &= (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0) >= 0
    return inside


def _convex_object(
    yy: torch.Tensor,
    xx: torch.Tensor,
    cy: torch.Tensor,
    cx: torch.Tensor,
    r: torch.Tensor,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random convex shape per image: ``(inside BoolTensor[N, H, W], normalised radius [N, H, W])``."""
    n = cy.shape[0]
    v3 = lambda t: t.view(-1, 1, 1)  # noqa: E731
    a, b = r * uniform(gen, (n,), 0.8, 1.2), r * uniform(gen, (n,), 0.6, 1.0)
    rot = uniform(gen, (n,), 0.0, math.pi)
    # ellipse
    dy, dx = yy - v3(cy), xx - v3(cx)
    c, s = torch.cos(v3(rot)), torch.sin(v3(rot))
    u, v = c * dx + s * dy, -s * dx + c * dy
    d = torch.sqrt((u / v3(a)) ** 2 + (v / v3(b)) ** 2)
    # convex polygon: m = 4..8 jittered angles on the ellipse, padded with copies of vertex 0
    m = torch.randint(4, _VERTICES + 1, (n,), generator=gen)
    j = torch.arange(_VERTICES).view(1, -1)
    jitter = uniform(gen, (n, _VERTICES), -0.3, 0.3)
    theta = uniform(gen, (n, 1), 0.0, 2 * math.pi) + 2 * math.pi * (j + jitter) / m.view(-1, 1)
    theta = torch.where(j < m.view(-1, 1), theta, theta[:, :1])
    pu, pv = a.view(-1, 1) * torch.cos(theta), b.view(-1, 1) * torch.sin(theta)
    cr, sr = torch.cos(rot).view(-1, 1), torch.sin(rot).view(-1, 1)
    vx = cx.view(-1, 1) + cr * pu - sr * pv
    vy = cy.view(-1, 1) + sr * pu + cr * pv
    polygon = (torch.rand(n, generator=gen) < 0.5).view(-1, 1, 1)
    inside = torch.where(polygon, _inside_convex(yy, xx, vy, vx), d < 1.0)
    return inside, d


def make_blobs(
    *,
    seed: int,
    num_images: int = 64,
    size: int = 64,
    objects_per_image: int = 4,
    touch_prob: float = 0.4,
    clutter: int = 4,
    vessels: int = 3,
    contrast: float = 0.4,
    noise_std: float = 0.06,
    blur_sigma: float = 1.0,
    texture: float = 0.08,
    channels: int = 1,
) -> SegData:
    """Generate ``num_images`` ``size x size`` images of convex objects and their binary masks.

    ``objects_per_image``: most objects per image (each image has ``1..objects_per_image``);
    ``touch_prob``: probability an object is placed touching the previous one; ``clutter``: non-convex
    debris blobs on the background; ``vessels``: dark curves crossing the image (not in the label);
    ``contrast``: object-minus-background brightness; ``noise_std``, ``blur_sigma``, ``texture`` as in
    ``cells``; ``channels``: 1 (grey) or 3 (grey with a per-image tint).
    """
    n = check_int(num_images, "num_images", 1)
    s = check_int(size, "size", 16, 4096)
    k_max = check_int(objects_per_image, "objects_per_image", 1, 32)
    touch_prob = check_range(touch_prob, "touch_prob", 0.0, 1.0)
    m_clutter = check_int(clutter, "clutter", 0, 64)
    m_vessels = check_int(vessels, "vessels", 0, 16)
    contrast = check_range(contrast, "contrast", 0.0, 0.7, "lower is harder, e.g. 0.4")
    noise_std = check_range(noise_std, "noise_std", 0.0, 1.0)
    blur_sigma = check_range(blur_sigma, "blur_sigma", 0.0, 10.0)
    texture = check_range(texture, "texture", 0.0, 1.0)
    if channels not in (1, 3) or isinstance(channels, bool):
        raise SpecError(f"channels must be 1 or 3, but got channels={channels!r}", path="channels")

    gen = torch.Generator().manual_seed(seed)
    yy, xx = grid(s)
    yy, xx = yy.unsqueeze(0), xx.unsqueeze(0)  # (1, H, W)
    bg = uniform(gen, (n, 1, 1), 0.15, 0.3)
    img = bg * (1.0 + 2.0 * texture * smooth_field(n, 1, s, max(4, s // 5), gen)[:, 0])  # (N, H, W)

    # debris: unions of 2 small discs, intermediate brightness, background class
    for _ in range(m_clutter):
        cy, cx = uniform(gen, (n, 1, 1), 0.0, 1.0) * s, uniform(gen, (n, 1, 1), 0.0, 1.0) * s
        r1, r2 = uniform(gen, (n, 1, 1), 0.03, 0.07) * s, uniform(gen, (n, 1, 1), 0.03, 0.07) * s
        phi = uniform(gen, (n, 1, 1), 0.0, 2 * math.pi)
        oy, ox = cy + 1.3 * r1 * torch.sin(phi), cx + 1.3 * r1 * torch.cos(phi)
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2 < r1**2) | ((yy - oy) ** 2 + (xx - ox) ** 2 < r2**2)
        level = bg + contrast * uniform(gen, (n, 1, 1), 0.3, 0.7)
        img = torch.where(blob, level, img)

    mask = torch.zeros((n, s, s), dtype=torch.bool)
    count = torch.randint(1, k_max + 1, (n,), generator=gen)
    prev_cy, prev_cx, prev_r = torch.full((n,), s / 2), torch.full((n,), s / 2), torch.zeros(n)
    for k in range(k_max):
        active = count > k
        r = uniform(gen, (n,), 0.1, 0.2) * s
        touch = (torch.rand(n, generator=gen) < touch_prob) & (k > 0)
        phi = uniform(gen, (n,), 0.0, 2 * math.pi)
        dist = (prev_r + r) * uniform(gen, (n,), 0.75, 0.95)
        cy = torch.where(touch, prev_cy + dist * torch.sin(phi), uniform(gen, (n,), 0.05, 0.95) * s)
        cx = torch.where(touch, prev_cx + dist * torch.cos(phi), uniform(gen, (n,), 0.05, 0.95) * s)
        inside, d = _convex_object(yy, xx, cy, cx, r, gen)
        inside &= active.view(-1, 1, 1)
        level = bg + contrast * uniform(gen, (n, 1, 1), 0.8, 1.2)
        shade = level * (1.1 - 0.2 * d.clamp(max=1.0) ** 2)
        img = torch.where(inside, shade, img)
        mask |= inside
        prev_cy, prev_cx = torch.where(active, cy, prev_cy), torch.where(active, cx, prev_cx)
        prev_r = torch.where(active, r, prev_r)

    # vessels: y = y0 + slope (x - s/2) + amp sin(freq x + phase), in a random orientation
    for _ in range(m_vessels):
        transpose = (torch.rand(n, generator=gen) < 0.5).view(-1, 1, 1)
        py, px = torch.where(transpose, xx, yy), torch.where(transpose, yy, xx)
        y0 = uniform(gen, (n, 1, 1), 0.1, 0.9) * s
        slope = uniform(gen, (n, 1, 1), -0.6, 0.6)
        amp, freq = (
            uniform(gen, (n, 1, 1), 0.0, 0.08) * s,
            uniform(gen, (n, 1, 1), 1.0, 4.0) * 2 * math.pi / s,
        )
        phase = uniform(gen, (n, 1, 1), 0.0, 2 * math.pi)
        f = y0 + slope * (px - s / 2) + amp * torch.sin(freq * px + phase)
        df = slope + amp * freq * torch.cos(freq * px + phase)
        dist = (py - f).abs() / torch.sqrt(1.0 + df**2)
        half = uniform(gen, (n, 1, 1), 0.6, 1.6) * max(1.0, s / 64)
        depth = uniform(gen, (n, 1, 1), 0.4, 0.7) * (1.0 - dist / half).clamp(min=0.0, max=1.0).sqrt()
        img = img * (1.0 - depth)

    ramp = uniform(gen, (n, 1, 1), -0.2, 0.2) * (yy / s - 0.5) + uniform(gen, (n, 1, 1), -0.2, 0.2) * (
        xx / s - 0.5
    )
    img = (img * (1.0 + ramp)).unsqueeze(1)  # (N, 1, H, W)
    if channels == 3:
        img = img * (1.0 + 0.1 * torch.randn((n, 3, 1, 1), generator=gen))
    img = gaussian_blur(img, blur_sigma)
    img = img + noise_std * torch.randn(img.shape, generator=gen)
    return SegData(
        images=img.clamp(0.0, 1.0).contiguous(),
        masks=mask.long(),
        num_classes=2,
        class_names=CLASS_NAMES,
    )
