"""PDE-CNN blocks (Ruthotto & Haber): exact updates, adjointness, stability, reversibility, parameter counts."""

from __future__ import annotations

import pytest
import torch

from ielcore.errors import SpecError, UnknownNameError
from ielcore.models.pde_blocks import (
    BLOCK_TYPES,
    ChannelNorm,
    HamiltonianBlock,
    ParabolicBlock,
    SecondOrderBlock,
    SymmetricLayer,
    build_block,
    conv_operator_norm,
)
from ielcore.models.pdecnn import PDEClassifier, paper_classifier


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_matrix(weight: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Dense matrix of the zero-padded 3×3 convolution on an h×w grid (columns = images of basis vectors)."""
    c = weight.shape[1]
    basis = torch.eye(c * h * w, dtype=weight.dtype).reshape(-1, c, h, w)
    return torch.nn.functional.conv2d(basis, weight, padding=1).reshape(c * h * w, -1).T


# ----------------------------------------------------------------------------------- paper classifier


PAPER_COUNTS = {
    ("parabolic", "stl10"): 618_554,
    ("parabolic", "cifar10"): 502_570,
    ("parabolic", "cifar100"): 652_484,
    ("second_order", "stl10"): 618_554,
    ("second_order", "cifar10"): 502_570,
    ("second_order", "cifar100"): 652_484,
    ("hamiltonian", "stl10"): 324_794,
    ("hamiltonian", "cifar10"): 264_106,
    ("hamiltonian", "cifar100"): 362_180,
}


@pytest.mark.parametrize(("kind", "dataset"), sorted(PAPER_COUNTS))
def test_paper_classifier_parameter_counts(kind: str, dataset: str) -> None:
    assert n_params(paper_classifier(kind, dataset)) == PAPER_COUNTS[(kind, dataset)]


def test_stl10_parabolic_accounting() -> None:
    """The note's itemisation: 464 + 7,008 + 576 + 27,840 + 2,176 + 110,976 + 8,448 + 443,136 + 16,640 + 1,290."""
    groups: list[int] = []  # a conv, PDE unit or linear layer, plus the BatchNorm that follows it
    for module in paper_classifier("parabolic", "stl10").net:
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear | ParabolicBlock):
            groups.append(0)
        groups[-1] += n_params(module)
    assert groups == [464, 7008, 576, 27840, 2176, 110976, 8448, 443136, 16640, 1290]


@pytest.mark.parametrize("kind", sorted(BLOCK_TYPES))
def test_classifier_shape_and_gradients(kind: str) -> None:
    torch.manual_seed(0)
    model = PDEClassifier(kind, widths=(4, 8), in_channels=3, num_classes=7, steps_per_unit=2, final_width=6)
    x = torch.randn(2, 3, 16, 16)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_paper_classifier_forward_on_stl10_size() -> None:
    torch.manual_seed(0)
    assert paper_classifier("hamiltonian", "stl10")(torch.randn(1, 3, 96, 96)).shape == (1, 10)
    assert paper_classifier("parabolic", "cifar100")(torch.randn(1, 3, 32, 32)).shape == (1, 100)


def test_classifier_unknown_names_are_listed() -> None:
    with pytest.raises(UnknownNameError, match="hamiltonian, parabolic, second_order"):
        paper_classifier("elliptic", "stl10")
    with pytest.raises(UnknownNameError, match="cifar10, cifar100, stl10"):
        paper_classifier("parabolic", "mnist")
    with pytest.raises(SpecError, match="even"):
        PDEClassifier("hamiltonian", widths=(16, 31))


# ------------------------------------------------------------------------------------ symmetric layer


def test_symmetric_layer_uses_the_exact_adjoint() -> None:
    """F_sym(y) = -Mᵀ relu(M y) with M the dense matrix of K (N = identity), in float64."""
    torch.manual_seed(0)
    layer = SymmetricLayer(2, normalization="none").double()
    y = torch.randn(1, 2, 5, 4, dtype=torch.float64)
    m = conv_matrix(layer.conv.weight.detach(), 5, 4)
    expected = -m.T @ torch.relu(m @ y.flatten())
    assert torch.allclose(layer(y).flatten(), expected, rtol=1e-12, atol=1e-12)


def test_pixel_norm_gives_unit_vectors_across_channels() -> None:
    norm = ChannelNorm(3, "pixel").double()
    y = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    sq = norm(y).pow(2).sum(dim=1)
    r2 = y.pow(2).sum(dim=1)
    assert torch.allclose(sq, r2 / (r2 + 1e-3), rtol=1e-12)
    assert n_params(norm) == 6 and n_params(ChannelNorm(3, "none")) == 0


def test_symmetric_layer_gradcheck() -> None:
    torch.manual_seed(0)
    layer = SymmetricLayer(2, normalization="pixel").double()
    with torch.no_grad():
        layer.norm.weight.uniform_(0.5, 1.5)
        layer.norm.bias.uniform_(-0.5, 0.5)
    y = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (y,))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_conv_operator_norm_matches_dense_spectral_norm(seed: int) -> None:
    torch.manual_seed(seed)
    weight = torch.randn(3, 3, 3, 3, dtype=torch.float64)
    exact = float(torch.linalg.matrix_norm(conv_matrix(weight, 6, 5), ord=2))
    estimate = conv_operator_norm(weight, 6, 5, iters=1000)  # (σ₂/σ₁)² <= 0.973 for these seeds
    assert estimate == pytest.approx(exact, rel=1e-8)
    assert estimate <= exact * (1 + 1e-12)


# ------------------------------------------------------------------------------------------- blocks


@pytest.mark.parametrize("normalization", ["none", "affine"])
def test_parabolic_step_is_nonexpansive_at_the_stability_limit(normalization: str) -> None:
    """Theorem 1's setting (N monotone: identity, or per-channel affine with scale s >= 0).

    The step is x -> x - δt Kᵀ σ(S K x + b); with δt · max σ' · max s · ‖K‖² = 2 it never expands
    differences: ‖f(x) - f(y)‖ <= ‖x - y‖.  (The per-pixel normalisation is not monotone, so the
    theorem does not cover it.)
    """
    torch.manual_seed(0)
    h, w = 6, 6
    block = ParabolicBlock(3, steps=1, normalization=normalization).double()
    layer = block.layers[0]
    scale = 1.0
    if normalization == "affine":
        with torch.no_grad():
            layer.norm.weight.uniform_(0.2, 2.0)
            layer.norm.bias.normal_()
        scale = float(layer.norm.weight.detach().max())
    k_norm = conv_operator_norm(layer.conv.weight, h, w, iters=1000)
    block.dt = 2.0 / (scale * k_norm**2)
    x = torch.randn(200, 3, h, w, dtype=torch.float64)
    y = x + torch.randn_like(x) * torch.logspace(-3, 1, 200, dtype=torch.float64)[:, None, None, None]
    with torch.no_grad():
        ratio = (block(x) - block(y)).flatten(1).norm(dim=1) / (x - y).flatten(1).norm(dim=1)
    assert float(ratio.max()) <= 1 + 1e-6
    assert float(ratio.max()) > 0.5  # non-trivial: some differences are nearly preserved


def test_parabolic_stability_limit_is_sharp() -> None:
    """With all pre-activations positive (σ' = 1) the step is I - δt KᵀK: gain |1 - δt‖K‖²| along the top vector."""
    torch.manual_seed(0)
    h, w = 6, 6
    block = ParabolicBlock(2, steps=1, normalization="affine").double()
    layer = block.layers[0]
    with torch.no_grad():
        layer.norm.bias.fill_(1e3)
    m = conv_matrix(layer.conv.weight.detach(), h, w)
    eigvals, eigvecs = torch.linalg.eigh(m.T @ m)
    top = eigvecs[:, -1].reshape(1, 2, h, w)
    x = torch.zeros(1, 2, h, w, dtype=torch.float64)
    for factor, gain in [(1.0, 1.0), (1.5, 2.0)]:
        block.dt = factor * 2.0 / float(eigvals[-1])
        with torch.no_grad():
            ratio = float((block(x + 1e-3 * top) - block(x)).norm() / (1e-3 * top).norm())
        assert ratio == pytest.approx(gain, rel=1e-9)


def test_parabolic_step_is_forward_euler() -> None:
    torch.manual_seed(0)
    block = ParabolicBlock(4, steps=2, dt=0.3).double()
    y0 = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    y1 = y0 + 0.3 * block.layers[0](y0)
    y2 = y1 + 0.3 * block.layers[1](y1)
    assert torch.allclose(block(y0), y2, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("normalization", ["pixel", "none"])
def test_hamiltonian_inverse_reconstructs_input(normalization: str) -> None:
    torch.manual_seed(0)
    block = HamiltonianBlock(6, steps=3, dt=0.5, normalization=normalization).double()
    x = torch.randn(2, 6, 8, 7, dtype=torch.float64)
    with torch.no_grad():
        y = block(x)
        back = block.inverse(y)
        forward_again = block(block.inverse(x))
    assert float((y - x).norm() / x.norm()) > 1e-2  # the block does something
    assert float((back - x).norm() / x.norm()) < 1e-8
    assert float((forward_again - x).norm() / x.norm()) < 1e-8


def test_hamiltonian_step_is_verlet() -> None:
    torch.manual_seed(0)
    block = HamiltonianBlock(4, steps=1, dt=0.2).double()
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    y, z = x[:, :2], x[:, 2:]
    y1 = y + 0.2 * block.layers_y[0](z)
    z1 = z - 0.2 * block.layers_z[0](y1)
    assert torch.allclose(block(x), torch.cat([y1, z1], dim=1), rtol=1e-14, atol=1e-14)
    assert n_params(block) == 2 * (9 * 2**2 + 2 * 2)


def test_second_order_starts_from_y_minus_one_equal_y0() -> None:
    torch.manual_seed(0)
    dt = 0.7
    one = SecondOrderBlock(3, steps=1, dt=dt).double()
    y0 = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    assert torch.allclose(one(y0), y0 + dt**2 * one.layers[0](y0), rtol=1e-14, atol=1e-14)
    two = SecondOrderBlock(3, steps=2, dt=dt).double()
    y1 = y0 + dt**2 * two.layers[0](y0)
    y2 = 2 * y1 - y0 + dt**2 * two.layers[1](y1)
    assert torch.allclose(two(y0), y2, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("kind", sorted(BLOCK_TYPES))
def test_block_parameter_count_per_step(kind: str) -> None:
    c, steps = 8, 3
    per_step = 2 * (9 * (c // 2) ** 2 + c) if kind == "hamiltonian" else 9 * c * c + 2 * c
    assert n_params(build_block(kind, c, steps=steps)) == steps * per_step
    assert n_params(build_block(kind, c, steps=steps, normalization="none")) == steps * (per_step - 2 * c)


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"channels": 0}, "channels"),
        ({"channels": 4, "steps": 0}, "steps"),
        ({"channels": 4, "dt": -0.1}, "dt"),
        ({"channels": 4, "normalization": "batch"}, "normalization"),
    ],
)
def test_block_bad_values(kwargs: dict[str, object], path: str) -> None:
    with pytest.raises(SpecError) as err:
        ParabolicBlock(**kwargs)  # type: ignore[arg-type]
    assert err.value.path == path
    with pytest.raises(SpecError, match="channels=5"):
        HamiltonianBlock(5)
