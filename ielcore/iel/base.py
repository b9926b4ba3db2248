"""The IEL contract (:class:`IEL`) and the shared machinery of explicit PDE types (:class:`ExplicitIEL`).

An inverse evolution layer reverses a smoothing PDE ``u_t = P(u)``: it applies ``N`` explicit steps
``u <- u - dt * P(u)`` to the logits during training, so the loss sees the unwanted property amplified.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from ielcore.errors import SpecError, StabilityError
from ielcore.iel._stencils import PADDINGS

DEFAULT_MAX_GAIN = 1e4


class IEL(nn.Module):
    """Base class of inverse evolution layers.

    Contract:

    - ``forward(z)`` maps logits ``(B, C, H, W)`` to logits of the same shape, dtype and device.  It
      computes in float32 (float64 when given float64, for ``gradcheck``) with autocast disabled, and
      casts the result back to the input dtype.  The input is never modified.  It is deterministic and
      has no trainable parameters.
    - ``rhs(u)`` is the right-hand side ``P(u)`` of the forward (smoothing) PDE ``u_t = P(u)``; stepping is
      kept apart from it.  ``evolve_inverse(u)`` is the layer's evolution ``u <- u - dt * P(u)`` (``steps``
      times, in the dtype given, all channels), ``evolve_forward(u, steps, dt)`` the smoothing evolution
      ``u <- u + dt * P(u)``; it raises :class:`StabilityError` when ``dt > max_stable_dt``.
    - ``worst_case_gain()`` bounds how much the layer can amplify a perturbation of its input (each type
      documents its bound).  Construction raises :class:`StabilityError` when it exceeds ``max_gain``.
    - Constructor arguments are keyword-only with defaults (they are the configuration); a bad value
      raises :class:`SpecError` whose ``path`` is the parameter name.

    Subclasses implement :meth:`rhs`, :meth:`evolve_inverse`, :meth:`worst_case_gain` and
    :attr:`max_stable_dt`, and call :meth:`check_gain` at the end of ``__init__``; ``forward`` hands the
    float32 logits to :meth:`_apply_to_logits` (where :class:`ExplicitIEL` restricts to ``classes``).
    A new PDE type is usually an :class:`ExplicitIEL` subclass (``rhs``, ``step_gain``, ``max_stable_dt``)
    in its own module plus one line in ``IEL_TYPES``.
    """

    steps: int = 0
    dt: float = 0.0
    max_gain: float = DEFAULT_MAX_GAIN
    gain_formula: str = "worst_case_gain()"

    def forward(self, z: Tensor) -> Tensor:
        if z.ndim != 4 or not z.is_floating_point():
            raise ValueError(
                f"an IEL expects floating-point logits of shape (B, C, H, W), "
                f"but got dtype={z.dtype} shape={tuple(z.shape)}"
            )
        compute = torch.float64 if z.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=z.device.type, enabled=False):
            out = self._apply_to_logits(z.to(compute))
        return out.to(z.dtype)

    def _apply_to_logits(self, u: Tensor) -> Tensor:
        return self.evolve_inverse(u)

    @property
    def max_stable_dt(self) -> float:
        """Largest ``dt`` for which the explicit forward (smoothing) step is stable."""
        raise NotImplementedError

    def rhs(self, u: Tensor) -> Tensor:
        """``P(u)``, the right-hand side of the forward PDE ``u_t = P(u)``."""
        raise NotImplementedError

    def evolve_inverse(self, u: Tensor) -> Tensor:
        """The layer's evolution ``u <- u - dt * P(u)``, ``steps`` times, on every channel of ``u``."""
        raise NotImplementedError

    def worst_case_gain(self) -> float:
        """Upper bound on the amplification of an input perturbation by the whole layer."""
        raise NotImplementedError

    def evolve_forward(self, u: Tensor, steps: int | None = None, dt: float | None = None) -> Tensor:
        """The smoothing evolution ``u <- u + dt * P(u)`` (defaults: the layer's ``steps`` and ``dt``)."""
        steps = self.steps if steps is None else check_steps(steps, minimum=0)
        dt = self.dt if dt is None else check_positive(dt, "dt")
        limit = self.max_stable_dt
        if dt > limit:
            raise StabilityError(
                f"forward (smoothing) step with dt={dt:g} is unstable: {type(self).__name__}'s explicit scheme "
                f"is stable only for dt <= {limit:g}; use dt <= {limit:g} and more steps for the same time",
                path="dt",
            )
        for _ in range(steps):
            u = u + dt * self.rhs(u)
        return u

    def check_gain(self) -> None:
        """Raise :class:`StabilityError` when ``worst_case_gain() > max_gain`` (call at the end of ``__init__``)."""
        gain = self.worst_case_gain()
        if gain > self.max_gain:
            raise StabilityError(
                f"worst-case gain {gain:.4g} = {self.gain_formula} (dt={self.dt:g}, steps={self.steps}) exceeds "
                f"max_gain={self.max_gain:g}; lower it with fewer steps or a smaller dt, "
                f"or raise max_gain if the amplification is intended",
                path="max_gain",
            )


class ExplicitIEL(IEL):
    """An IEL made of ``steps`` explicit steps ``u <- u - dt * rhs(u)`` of a local, channel-wise PDE.

    Common parameters: ``dt > 0``, ``steps >= 1``, ``padding`` (one of :data:`PADDINGS`; ``zeros`` is the
    authors'), ``classes`` (channel indices the layer acts on; ``None`` = all; the others pass through
    unchanged), ``max_gain``.  Subclasses set the PDE (:meth:`rhs`), :meth:`step_gain` (a bound on the
    operator norm of one inverse step's Jacobian) and :attr:`max_stable_dt`.  ``worst_case_gain()`` is
    ``step_gain() ** steps``.  With ``checkpoint=True`` (set by subclasses that offer it) each step runs
    under :func:`torch.utils.checkpoint.checkpoint`: only each step's input is kept for backward.
    """

    def __init__(
        self,
        *,
        dt: float,
        steps: int,
        padding: str = "zeros",
        classes: Sequence[int] | None = None,
        max_gain: float = DEFAULT_MAX_GAIN,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.dt = check_positive(dt, "dt")
        self.steps = check_steps(steps)
        self.padding = check_padding(padding)
        self.classes = check_classes(classes)
        self.max_gain = check_max_gain(max_gain)
        self.checkpoint = bool(checkpoint)

    def step_gain(self) -> float:
        """Bound on ``||I - dt * dP/du||`` for one inverse step."""
        raise NotImplementedError

    def worst_case_gain(self) -> float:
        return power(self.step_gain(), self.steps)

    def inverse_step(self, u: Tensor) -> Tensor:
        """One step ``u - dt * P(u)``."""
        return u - self.dt * self.rhs(u)

    def evolve_inverse(self, u: Tensor) -> Tensor:
        for _ in range(self.steps):
            if self.checkpoint and torch.is_grad_enabled() and u.requires_grad:
                u = _checkpoint(self.inverse_step, u, use_reentrant=False)
            else:
                u = self.inverse_step(u)
        return u

    def _apply_to_logits(self, u: Tensor) -> Tensor:
        if self.classes is None:
            return self.evolve_inverse(u)
        if max(self.classes) >= u.shape[1]:
            raise SpecError(
                f"classes={list(self.classes)} names a channel >= the number of logit channels {u.shape[1]}; "
                f"use channel indices in 0..{u.shape[1] - 1}",
                path="classes",
            )
        index = torch.tensor(self.classes, device=u.device)
        return u.index_copy(1, index, self.evolve_inverse(u.index_select(1, index)))

    def extra_repr(self) -> str:
        return f"dt={self.dt:g}, steps={self.steps}, padding={self.padding!r}, classes={self.classes}"


def power(base: float, exponent: int) -> float:
    """``base ** exponent`` as a float, ``inf`` on overflow."""
    try:
        return math.pow(base, exponent)
    except OverflowError:
        return math.inf


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def check_positive(value: Any, name: str) -> float:
    """``value`` as a float, or :class:`SpecError` unless it is a finite number > 0."""
    if not _is_real(value) or not math.isfinite(float(value)) or float(value) <= 0:
        raise SpecError(f"{name} must be a finite number > 0, but got {name}={value!r}", path=name)
    return float(value)


def check_steps(value: Any, minimum: int = 1) -> int:
    """``value`` as an int, or :class:`SpecError` unless it is an integer >= ``minimum``."""
    if not isinstance(value, Integral) or isinstance(value, bool) or int(value) < minimum:
        raise SpecError(f"steps must be an integer >= {minimum}, but got steps={value!r}", path="steps")
    return int(value)


def check_padding(value: Any) -> str:
    if value not in PADDINGS:
        raise SpecError(
            f"unknown padding {value!r}; valid paddings are: {', '.join(PADDINGS)} "
            f"('zeros' is the authors' choice)",
            path="padding",
        )
    return str(value)


def check_classes(value: Any) -> tuple[int, ...] | None:
    """``None`` (all channels) or a non-empty tuple of distinct channel indices >= 0."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise SpecError(
            f"classes must be a list of channel indices or null, but got {value!r}", path="classes"
        )
    items = tuple(value)
    if (
        not items
        or any(not isinstance(c, Integral) or isinstance(c, bool) or int(c) < 0 for c in items)
        or len(set(items)) != len(items)
    ):
        raise SpecError(
            f"classes must be a non-empty list of distinct channel indices >= 0 (or null for all), "
            f"but got classes={value!r}",
            path="classes",
        )
    return tuple(int(c) for c in items)


def check_max_gain(value: Any) -> float:
    if not _is_real(value) or math.isnan(float(value)) or float(value) < 1:
        raise SpecError(f"max_gain must be a number >= 1, but got max_gain={value!r}", path="max_gain")
    return float(value)
