"""PDE-CNNs (Ruthotto & Haber): segmentation backbones and the paper's image classifier.

Segmentation networks (registered as ``"parabolic"``, ``"hamiltonian"``, ``"second_order"``), all at full
resolution, so any ``H×W`` works:

    opening   3×3 conv (in_channels -> width, no bias) -> BatchNorm -> ReLU
    units ×   [ PDE block (steps_per_unit steps of size dt) -> 1×1 conv (no bias) -> BatchNorm -> ReLU ]
    head      1×1 conv (width -> num_classes, with bias)

Parameters: ``9·in·w + 2w + units·(steps·P_step + w² + 2w) + w·n + n`` with ``P_step = 9w² + 2w``
(parabolic, second order) or ``2·(9(w/2)² + 2(w/2))`` (Hamiltonian; ``width`` even), for the default
``normalization="pixel"``.  Each step of ``K`` and ``Kᵀ`` widens the receptive field by 4 pixels:
it is ``3 + 4·units·steps_per_unit`` pixels (27 with the defaults).

Classifier (:class:`PDEClassifier`, the paper's layout), for widths ``c_1 .. c_m`` and final width ``c_f``:

    opening   3×3 conv (in -> c_1, no bias) -> BatchNorm -> ReLU                      27·c_1 + 2·c_1
    unit i    PDE block at width c_i (steps_per_unit steps)                            steps·P_step(c_i)
    between   1×1 conv (c_i -> c_{i+1}, no bias) -> BatchNorm -> ReLU -> 2×2 avg pool  c_i·c_{i+1} + 2·c_{i+1}
    final     1×1 conv (c_m -> c_f, no bias) -> BatchNorm -> ReLU                      c_m·c_f + 2·c_f
    head      global average pool -> linear (c_f -> n_classes)                         n_classes·(c_f + 1)

:func:`paper_classifier` reproduces the paper's parameter counts exactly (STL-10 / CIFAR-10 / CIFAR-100):
parabolic and second order 618,554 / 502,570 / 652,484; Hamiltonian 324,794 / 264,106 / 362,180.
Not included: the paper's smoothness-in-time regulariser and weight clamping to ``[-1, 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ielcore._params import lookup
from ielcore.errors import SpecError
from ielcore.models.pde_blocks import BLOCK_TYPES, build_block, check_int, check_positive_float


def _conv_bn_relu(c_in: int, c_out: int, kernel_size: int) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False)
    return [conv, nn.BatchNorm2d(c_out), nn.ReLU()]


def _check_even(kind: str, name: str, value: int) -> None:
    if kind == "hamiltonian" and value % 2:
        raise SpecError(
            f"the Hamiltonian network splits channels in halves, but got {name}={value}; use an even number",
            path=name,
        )


class _PDESegmenter(nn.Module):
    """Full-resolution PDE-CNN for segmentation: ``(B, in_channels, H, W) -> (B, num_classes, H, W)`` logits."""

    kind: str = ""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        width: int = 16,
        units: int = 2,
        steps_per_unit: int = 3,
        dt: float = 0.1,
        normalization: str = "pixel",
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels, 1)
        check_int("num_classes", num_classes, 1)
        check_int("width", width, 1)
        check_int("units", units, 1)
        check_int("steps_per_unit", steps_per_unit, 1)
        check_positive_float("dt", dt)
        _check_even(self.kind, "width", width)
        layers: list[nn.Module] = _conv_bn_relu(in_channels, width, 3)
        for _ in range(units):
            layers.append(
                build_block(self.kind, width, steps=steps_per_unit, dt=dt, normalization=normalization)
            )
            layers.extend(_conv_bn_relu(width, width, 1))
        layers.append(nn.Conv2d(width, num_classes, kernel_size=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ParabolicNet(_PDESegmenter):
    """Segmentation PDE-CNN with parabolic blocks (``Y <- Y + δt F_sym(Y)``)."""

    kind = "parabolic"


class HamiltonianNet(_PDESegmenter):
    """Segmentation PDE-CNN with reversible Hamiltonian (Verlet) blocks; ``width`` must be even."""

    kind = "hamiltonian"


class SecondOrderNet(_PDESegmenter):
    """Segmentation PDE-CNN with second-order leapfrog blocks (``Y_{-1} = Y_0`` in each unit)."""

    kind = "second_order"


class PDEClassifier(nn.Module):
    """The paper's image classifier: ``(B, in_channels, H, W) -> (B, num_classes)`` logits (layout above)."""

    def __init__(
        self,
        kind: str,
        widths: Sequence[int] = (16, 32, 64, 128),
        in_channels: int = 3,
        num_classes: int = 10,
        steps_per_unit: int = 3,
        final_width: int | None = None,
        *,
        dt: float = 1.0,
        normalization: str = "pixel",
    ) -> None:
        super().__init__()
        lookup(BLOCK_TYPES, "PDE block", kind)
        widths = tuple(widths)
        if not widths:
            raise SpecError(
                "widths must list at least one width, but got widths=(); e.g. (16, 32)", path="widths"
            )
        for i, c in enumerate(widths):
            check_int(f"widths[{i}]", c, 1)
            _check_even(kind, f"widths[{i}]", c)
        final = widths[-1] if final_width is None else check_int("final_width", final_width, 1)
        check_int("in_channels", in_channels, 1)
        check_int("num_classes", num_classes, 1)
        check_int("steps_per_unit", steps_per_unit, 1)
        check_positive_float("dt", dt)
        layers: list[nn.Module] = _conv_bn_relu(in_channels, widths[0], 3)
        for i, c in enumerate(widths):
            layers.append(build_block(kind, c, steps=steps_per_unit, dt=dt, normalization=normalization))
            if i + 1 < len(widths):
                layers.extend([*_conv_bn_relu(c, widths[i + 1], 1), nn.AvgPool2d(2)])
        layers.extend(_conv_bn_relu(widths[-1], final, 1))
        layers.extend([nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(final, num_classes)])
        self.kind = kind
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


#: The paper's configurations: widths, final width, number of classes.
PAPER_CONFIGS: dict[str, tuple[tuple[int, ...], int, int]] = {
    "stl10": ((16, 32, 64, 128), 128, 10),
    "cifar10": ((32, 64, 112), 112, 10),
    "cifar100": ((32, 64, 128), 256, 100),
}


def paper_classifier(kind: str, dataset: str) -> PDEClassifier:
    """The paper's network for ``dataset`` in :data:`PAPER_CONFIGS` with blocks of ``kind`` (3 steps per unit)."""
    widths, final, n_classes = lookup(PAPER_CONFIGS, "dataset", dataset)
    return PDEClassifier(
        kind, widths, in_channels=3, num_classes=n_classes, steps_per_unit=3, final_width=final
    )
