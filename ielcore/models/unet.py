"""U-Net as in the IEL authors' code (a milesial/Pytorch-UNet variant, transposed-conv upsampling).

Layout for ``width = w``, ``depth = d`` (channels ``w·2^k`` at level ``k``)::

    block(c_in, c_out) = [3×3 conv (no bias) -> InstanceNorm2d (affine=False) -> LeakyReLU(0.01)] ×2
    encoder   block(in, w), then d × [2×2 max pool -> block(w·2^k, w·2^(k+1))]
    decoder   d × [ConvTranspose2d(c, c/2, 2, stride 2, bias) -> concat skip -> block(c, c/2)]
    head      1×1 conv (w -> num_classes, with bias)

``UNet(3, 3, width=64, depth=4)`` (64-128-256-512-1024) has 31,025,987 parameters (≈31.03 M): the
InstanceNorms carry none (PyTorch's default ``affine=False``, as in the authors' code).

Sizes: inputs whose ``H`` and ``W`` are multiples of ``2**depth`` run exactly as the authors' network;
other sizes are replicate-padded up to the next multiple and the logits cropped back, so any ``H×W``
works.  InstanceNorm needs more than one pixel at the bottleneck in training, i.e.
``ceil(H/2^d)·ceil(W/2^d) >= 2`` (``H, W >= 32`` for ``depth=4``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ielcore.models.pde_blocks import check_int


class DoubleConv(nn.Sequential):
    """``[3×3 conv (no bias) -> InstanceNorm2d -> LeakyReLU(0.01)] ×2``; ``9·c_out·(c_in + c_out)`` parameters."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(c_out),
            nn.LeakyReLU(0.01),
            nn.Conv2d(c_out, c_out, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(c_out),
            nn.LeakyReLU(0.01),
        )


class Up(nn.Module):
    """``ConvTranspose2d(c, c/2, 2, stride 2)``, concatenate ``[skip, up]``, then ``DoubleConv(c, c/2)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(channels, channels // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(channels, channels // 2)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """U-Net: ``(B, in_channels, H, W) -> (B, num_classes, H, W)`` logits for any ``H×W`` (see module doc)."""

    def __init__(self, in_channels: int, num_classes: int, *, width: int = 64, depth: int = 4) -> None:
        super().__init__()
        check_int("in_channels", in_channels, 1)
        check_int("num_classes", num_classes, 1)
        check_int("width", width, 1)
        self.depth = check_int("depth", depth, 1, 8)
        self.inc = DoubleConv(in_channels, width)
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), DoubleConv(width * 2**k, width * 2 ** (k + 1)))
            for k in range(depth)
        )
        self.ups = nn.ModuleList(Up(width * 2 ** (k + 1)) for k in reversed(range(depth)))
        self.head = nn.Conv2d(width, num_classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        m = 2**self.depth
        pad_h, pad_w = -h % m, -w % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.ups:
            y = up(y, skips.pop())
        return self.head(y)[..., :h, :w]
