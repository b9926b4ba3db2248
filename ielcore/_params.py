"""Registries and keyword-parameter validation shared by every component family.

Every component (IEL type, noise model, model, dataset) is a class or function whose keyword
parameters (with defaults) are its configuration.  :func:`lookup` finds a name in an explicit registry
and :func:`resolve_params` checks a parameter mapping against the signature, filling in defaults, so a
resolved configuration (and therefore a trial hash) always lists every parameter.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ielcore.errors import SpecError, UnknownNameError

T = TypeVar("T")


def lookup(registry: Mapping[str, T], kind: str, name: object) -> T:
    """Return ``registry[name]`` or raise :class:`UnknownNameError` listing the valid names."""
    if not isinstance(name, str) or name not in registry:
        valid = ", ".join(sorted(registry))
        raise UnknownNameError(f"unknown {kind} {name!r}; valid {kind}s are: {valid}", path="type")
    return registry[name]


def signature_params(factory: Callable[..., Any], skip: tuple[str, ...] = ()) -> dict[str, inspect.Parameter]:
    """The keyword parameters of ``factory`` (``__init__`` for classes), minus ``skip``."""
    target = factory.__init__ if inspect.isclass(factory) else factory  # type: ignore[misc]
    params = {}
    for p in inspect.signature(target).parameters.values():
        if p.name in ("self",) or p.name in skip:
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        params[p.name] = p
    return params


def resolve_params(
    factory: Callable[..., Any], params: Mapping[str, Any], *, kind: str, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Check ``params`` against ``factory``'s keyword parameters and fill in the defaults.

    Raises :class:`SpecError` naming an unknown parameter (and the valid ones) or a missing required one.
    """
    known = signature_params(factory, skip)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise SpecError(
            f"unknown parameter {unknown[0]!r} for {kind}; valid parameters are: {', '.join(sorted(known))}",
            path=unknown[0],
        )
    resolved: dict[str, Any] = {}
    for name, p in known.items():
        if name in params:
            resolved[name] = params[name]
        elif p.default is inspect.Parameter.empty:
            raise SpecError(f"missing required parameter {name!r} for {kind}", path=name)
        else:
            resolved[name] = p.default
    return resolved
