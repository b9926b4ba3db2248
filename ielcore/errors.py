"""Exception hierarchy of the platform.

One root (:class:`IELError`) and a few domain subclasses.  Third-party errors are translated at the
boundary (``raise ... from e``); the CLI is the single place that turns them into messages and exit codes.
"""

from __future__ import annotations


class IELError(Exception):
    """Root of every error the platform raises on purpose."""


class SpecError(IELError, ValueError):
    """A configuration (trial config or study spec) is invalid.

    ``path`` is the dotted field path (``iel.dt``), ``source`` the file it came from, when known.
    """

    def __init__(self, message: str, *, path: str | None = None, source: str | None = None) -> None:
        self.message = message
        self.path = path
        self.source = source
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.source:
            where.append(str(self.source))
        if self.path:
            where.append(f"field '{self.path}'")
        prefix = ": ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message

    def located(self, *, path_prefix: str | None = None, source: str | None = None) -> SpecError:
        """Return a copy of this error with a field-path prefix and/or a source file added."""
        path = self.path
        if path_prefix:
            path = f"{path_prefix}.{path}" if path else path_prefix
        return type(self)(self.message, path=path, source=source or self.source)


class UnknownNameError(SpecError):
    """A name (IEL type, noise model, model, dataset, ...) is not in its registry."""


class StabilityError(SpecError):
    """A forward evolution step is unstable, or an IEL's worst-case gain exceeds its limit."""


class DatasetError(IELError):
    """A dataset cannot be built (missing folder, unmatched files, unmapped mask values)."""
