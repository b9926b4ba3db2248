"""``cells``: a procedural look-alike of the white-blood-cell (WBC) data set.

RGB images of stained blood smears with classes background (0), cytoplasm (1) and nucleus (2), like
WBC "Dataset 1" (labels 0/128/255).  Each image holds 1..``cells_per_image`` white cells, possibly
touching one another or cut by the border, among red-cell-like discs with pale centres and small dark
debris (both background).  Nuclei are round, kidney-like or lobed (2-4 lobes, as in neutrophils).

What makes it hard: the cytoplasm differs from the plasma by a weak colour shift (``contrast``), red
cells are larger and stronger in colour than the cytoplasm, debris has the nucleus colour, and every image
has its own stain colours, illumination ramp, texture, blur (``blur_sigma``) and pixel noise
(``noise_std``).  Every random draw comes from one generator seeded by ``seed``: same parameters and
seed give identical tensors.
"""

from __future__ import annotations

import math

import torch

from ielcore.data.base import SegData, check_int, check_range, gaussian_blur, grid, smooth_field, uniform

CLASS_NAMES = ("background", "cytoplasm", "nucleus")

# reference colours (RGB in [0, 1]) before the per-image stain jitter
_PLASMA = (0.88, 0.82, 0.80)
_RED_CELL = (0.86, 0.56, 0.58)
_CYTOPLASM = (
    0.70,
    0.60,
    0.86,
)  # full-contrast cytoplasm; the drawn one is plasma + contrast * (this - plasma)
_NUCLEUS = (0.40, 0.22, 0.58)


def _shape_radius(
    yy: torch.Tensor,
    xx: torch.Tensor,
    cy: torch.Tensor,
    cx: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    angle: torch.Tensor,
    wobble: torch.Tensor,
    phase: torch.Tensor,
) -> torch.Tensor:
    """Normalised radius ``d`` of a wobbly ellipse per image (``[N, H, W]``): inside where ``d < 1``.

    ``d = sqrt((u/a)^2 + (v/b)^2) / (1 + wobble * cos(3 theta + phase))`` with ``(u, v)`` the pixel
    coordinates rotated by ``angle`` about ``(cy, cx)``; all parameters are ``[N]`` tensors.
    """
    v3 = lambda t: t.view(-1, 1, 1)  # noqa: E731
    dy, dx = yy - v3(cy), xx - v3(cx)
    c, s = torch.cos(v3(angle)), torch.sin(v3(angle))
    u, v = c * dx + s * dy, -s * dx + c * dy
    theta = torch.atan2(v, u)
    d = torch.sqrt((u / v3(a)) ** 2 + (v / v3(b)) ** 2)
    return d / (1.0 + v3(wobble) * torch.cos(3.0 * theta + v3(phase)))


def _disc(
    yy: torch.Tensor, xx: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, r: torch.Tensor
) -> torch.Tensor:
    """``|p - c| / r`` per image (``[N, H, W]``) for ``[N]`` centres and radii: a disc where ``< 1``."""
    v3 = lambda t: t.view(-1, 1, 1)  # noqa: E731
    return torch.sqrt((yy - v3(cy)) ** 2 + (xx - v3(cx)) ** 2) / v3(r)


def _colour(base: tuple[float, float, float], jitter: torch.Tensor) -> torch.Tensor:
    """Per-image colours ``[N, 3, 1, 1]``: ``base * (1 + jitter)``, clipped to [0, 1]."""
    return (torch.tensor(base).view(1, 3) * (1.0 + jitter)).clamp(0.0, 1.0).view(-1, 3, 1, 1)


def make_cells(
    *,
    seed: int,
    num_images: int = 64,
    size: int = 64,
    cells_per_image: int = 2,
    clutter: int = 6,
    contrast: float = 0.5,
    noise_std: float = 0.05,
    blur_sigma: float = 0.8,
    texture: float = 0.05,
    stain_jitter: float = 0.08,
    lobed_fraction: float = 0.4,
) -> SegData:
    """Generate ``num_images`` RGB ``size x size`` WBC-like images and their 3-class masks.

    ``cells_per_image``: most white cells per image (each image has ``1..cells_per_image``);
    ``clutter``: red-cell-like discs per image (plus ``clutter // 2`` debris specks);
    ``contrast`` in ``(0, 1]``: cytoplasm/plasma colour difference relative to a clearly stained cell;
    ``noise_std``: Gaussian pixel noise; ``blur_sigma``: optical blur in px; ``texture``: amplitude of
    smooth multiplicative texture; ``stain_jitter``: per-image relative colour variation;
    ``lobed_fraction``: share of lobed nuclei.
    """
    n = check_int(num_images, "num_images", 1)
    s = check_int(size, "size", 16, 4096)
    k_max = check_int(cells_per_image, "cells_per_image", 1, 16)
    m_red = check_int(clutter, "clutter", 0, 64)
    contrast = check_range(contrast, "contrast", 0.0, 1.0, "lower is harder, e.g. 0.5")
    noise_std = check_range(noise_std, "noise_std", 0.0, 1.0)
    blur_sigma = check_range(blur_sigma, "blur_sigma", 0.0, 10.0)
    texture = check_range(texture, "texture", 0.0, 1.0)
    stain_jitter = check_range(stain_jitter, "stain_jitter", 0.0, 0.5)
    lobed_fraction = check_range(lobed_fraction, "lobed_fraction", 0.0, 1.0)

    gen = torch.Generator().manual_seed(seed)
    yy, xx = grid(s)
    yy, xx = yy.unsqueeze(0), xx.unsqueeze(0)  # (1, H, W)

    jit = lambda: stain_jitter * torch.randn((n, 3), generator=gen)  # noqa: E731
    plasma, red = _colour(_PLASMA, jit()), _colour(_RED_CELL, jit())
    cyto_full, nucleus = _colour(_CYTOPLASM, jit()), _colour(_NUCLEUS, jit())
    cyto = plasma + contrast * (cyto_full - plasma)

    cell = max(4, s // 6)
    field = smooth_field(n, 1, s, cell, gen) + 0.3 * smooth_field(n, 3, s, cell, gen)
    img = plasma * (1.0 + texture * field)  # (N, 3, H, W)

    # red cells: discs with a pale centre (biconcave), painted on the plasma
    for _ in range(m_red):
        r = uniform(gen, (n,), 0.11, 0.17) * s
        d = _shape_radius(
            yy,
            xx,
            uniform(gen, (n,), -0.1, 1.1) * s,
            uniform(gen, (n,), -0.1, 1.1) * s,
            r * uniform(gen, (n,), 0.9, 1.1),
            r * uniform(gen, (n,), 0.9, 1.1),
            uniform(gen, (n,), 0.0, math.pi),
            uniform(gen, (n,), 0.0, 0.05),
            uniform(gen, (n,), 0.0, 2 * math.pi),
        ).unsqueeze(1)
        pale = 0.6 * (1.0 - (d / 0.7) ** 2).clamp(min=0.0) ** 2
        shade = red + pale * (plasma - red)
        img = torch.where(d < 1.0, shade, img)

    # debris / platelets: small specks with the nucleus colour
    for _ in range(m_red // 2):
        r = uniform(gen, (n,), 0.015, 0.04) * s + 0.6
        cy, cx = uniform(gen, (n,), 0.0, 1.0) * s, uniform(gen, (n,), 0.0, 1.0) * s
        d = _disc(yy, xx, cy, cx, r).unsqueeze(1)
        img = torch.where(d < 1.0, 0.5 * (nucleus + plasma) * uniform(gen, (n, 1, 1, 1), 0.8, 1.1), img)

    # white cells: cytoplasm (wobbly ellipse) with a nucleus inside; later cells occlude earlier ones
    mask = torch.zeros((n, s, s), dtype=torch.long)
    count = torch.randint(1, k_max + 1, (n,), generator=gen)
    prev_cy, prev_cx, prev_r = torch.full((n,), s / 2), torch.full((n,), s / 2), torch.zeros(n)
    for k in range(k_max):
        active = (count > k).view(-1, 1, 1)
        r = uniform(gen, (n,), 0.17, 0.26) * s
        if k == 0:
            cy, cx = uniform(gen, (n,), 0.3, 0.7) * s, uniform(gen, (n,), 0.3, 0.7) * s
        else:  # half of the extra cells touch the previous one, the rest fall anywhere (often cut)
            touch = torch.rand(n, generator=gen) < 0.5
            phi = uniform(gen, (n,), 0.0, 2 * math.pi)
            dist = (prev_r + r) * uniform(gen, (n,), 0.85, 1.0)
            cy = torch.where(touch, prev_cy + dist * torch.sin(phi), uniform(gen, (n,), -0.1, 1.1) * s)
            cx = torch.where(touch, prev_cx + dist * torch.cos(phi), uniform(gen, (n,), -0.1, 1.1) * s)
        ecc = uniform(gen, (n,), 0.0, 0.15)
        d_cell = _shape_radius(
            yy,
            xx,
            cy,
            cx,
            r * (1 + ecc),
            r * (1 - ecc),
            uniform(gen, (n,), 0.0, math.pi),
            uniform(gen, (n,), 0.0, 0.07),
            uniform(gen, (n,), 0.0, 2 * math.pi),
        )
        in_cell = (d_cell < 1.0) & active

        # nucleus: an ellipse/kidney, or 2-4 overlapping lobes along an arc
        rn = r * uniform(gen, (n,), 0.45, 0.72)
        off, off_phi = r * uniform(gen, (n,), 0.0, 0.18), uniform(gen, (n,), 0.0, 2 * math.pi)
        ny, nx = cy + off * torch.sin(off_phi), cx + off * torch.cos(off_phi)
        ecc_n = uniform(gen, (n,), 0.0, 0.25)
        d_nuc = _shape_radius(
            yy,
            xx,
            ny,
            nx,
            rn * (1 + ecc_n),
            rn * (1 - ecc_n),
            uniform(gen, (n,), 0.0, math.pi),
            uniform(gen, (n,), 0.0, 0.15),
            uniform(gen, (n,), 0.0, 2 * math.pi),
        )
        lobed = (torch.rand(n, generator=gen) < lobed_fraction).view(-1, 1, 1)
        n_lobes = torch.randint(2, 5, (n,), generator=gen)
        start, spread = uniform(gen, (n,), 0.0, 2 * math.pi), uniform(gen, (n,), 0.6, 1.1)
        in_lobes = torch.zeros((n, s, s), dtype=torch.bool)
        for j in range(4):
            ang = start + spread * j
            rl = r * uniform(gen, (n,), 0.24, 0.32)
            d_l = _disc(yy, xx, ny + 0.4 * r * torch.sin(ang), nx + 0.4 * r * torch.cos(ang), rl)
            in_lobes |= (d_l < 1.0) & (n_lobes > j).view(-1, 1, 1)
        in_nuc = torch.where(lobed, in_lobes, d_nuc < 1.0) & (d_cell < 0.9) & active  # keeps a rim

        tex_c = 1.0 + texture * smooth_field(n, 1, s, 3, gen)
        chrom = 1.0 + 2.0 * texture * smooth_field(n, 1, s, 2, gen)
        img = torch.where(in_cell.unsqueeze(1), cyto * tex_c, img)
        img = torch.where(in_nuc.unsqueeze(1), nucleus * chrom, img)
        mask = torch.where(in_cell, torch.where(in_nuc, 2, 1), mask)
        prev_cy = torch.where(active.view(-1), cy, prev_cy)
        prev_cx = torch.where(active.view(-1), cx, prev_cx)
        prev_r = torch.where(active.view(-1), r, prev_r)

    ramp = uniform(gen, (n, 1, 1, 1), -0.15, 0.15) * (yy.unsqueeze(1) / s - 0.5) + uniform(
        gen, (n, 1, 1, 1), -0.15, 0.15
    ) * (xx.unsqueeze(1) / s - 0.5)
    img = gaussian_blur(img * (1.0 + ramp), blur_sigma)
    img = img + noise_std * torch.randn(img.shape, generator=gen)
    return SegData(
        images=img.clamp(0.0, 1.0).contiguous(),
        masks=mask.contiguous(),
        num_classes=3,
        class_names=CLASS_NAMES,
    )
