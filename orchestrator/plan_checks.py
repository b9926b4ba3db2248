"""The checks a plan runs on each cell's configuration: what a worker would otherwise find at run time.

- the IEL and noise constructors' range checks (:func:`check_components`, no tensors);
- a ``folder`` dataset's subfolders exist, and its files' fingerprint (:func:`ielcore.data.folder.folder_fingerprint`)
  is set as ``data.fingerprint``, so the files are part of every trial's identity;
- the dataset builder's and model constructor's checks with memory limits
  (:func:`ielcore.limits.check_trial_limits`), once per distinct data and model setting.
"""

from __future__ import annotations

from pathlib import Path

from ielcore.errors import DatasetError, SpecError
from ielcore.limits import check_trial_limits
from ielcore.spec import TrialConfig, canonical_json


def check_components(config: TrialConfig) -> None:
    """Construct the configuration's IEL and noise model (cheap: no tensors) to check their values.

    Config resolution checks only parameter names; ranges (``steps >= 1``, ``dt > 0``, an IEL's
    worst-case gain) are checked by the constructors.  Models and datasets are never built here (see
    :func:`ielcore.limits.check_trial_limits` for their checks).  Raises :class:`SpecError` with the
    path ``iel.<param>`` / ``noise.<param>``.
    """
    if config.kind != "train":
        return
    from ielcore.iel import build_iel
    from ielcore.noise import build_noise

    iel = {k: v for k, v in config.iel.items() if k != "type"}
    noise = {k: v for k, v in config.noise.items() if k not in ("type", "rate")}
    checks = (
        ("iel", lambda: build_iel(config.iel["type"], **iel)),
        # num_classes is the dataset's; a large value checks everything that does not depend on it.
        ("noise", lambda: build_noise(config.noise["type"], config.noise["rate"], 1000, 0, **noise)),
    )
    for section, build in checks:
        try:
            build()
        except SpecError as e:
            raise e.located(path_prefix=section) from None
        except (TypeError, ValueError) as e:
            raise SpecError(f"invalid {section} parameters: {e}", path=section) from e


def _check_folder(config: TrialConfig) -> None:
    """A ``folder`` dataset's ``root`` holds its images and masks subfolders (error at ``data.root``)."""
    if config.kind != "train" or config.data.get("type") != "folder":
        return
    root = Path(str(config.data.get("root"))).expanduser()
    for d in (
        root,
        root / str(config.data.get("images", "images")),
        root / str(config.data.get("masks", "masks")),
    ):
        if not d.is_dir():
            raise SpecError(
                f"folder {str(d)!r} (resolved: {d.resolve()}) does not exist; a folder dataset needs "
                "root/images/ and root/masks/ with matching file names: fix the path",
                path="data.root",
            )


class Checker:
    """Checks each cell's configuration once per distinct data/model setting, and fingerprints folders."""

    def __init__(self) -> None:
        self._limits: set[str] = set()
        self._fingerprints: dict[str, str] = {}

    def __call__(self, config: TrialConfig) -> TrialConfig:
        """``config`` checked (components, data and model limits), with a folder dataset's fingerprint set."""
        check_components(config)
        _check_folder(config)
        config = self._fingerprinted(config)
        key = canonical_json([config.kind, config.data, config.model])
        if key not in self._limits:
            check_trial_limits(config)
            self._limits.add(key)
        return config

    def _fingerprinted(self, config: TrialConfig) -> TrialConfig:
        if config.kind != "train" or config.data.get("type") != "folder":
            return config
        from ielcore.data.folder import folder_fingerprint

        where = (str(config.data["root"]), str(config.data.get("images")), str(config.data.get("masks")))
        key = "\0".join(where)
        if key not in self._fingerprints:
            try:
                self._fingerprints[key] = folder_fingerprint(*where)
            except DatasetError as e:
                raise SpecError(f"{e}", path="data.root") from None
        fingerprint = self._fingerprints[key]
        given = config.data.get("fingerprint")
        if given is not None and given != fingerprint:
            raise SpecError(
                f"the folder's files do not match the given fingerprint {given!r} (they hash to "
                f"{fingerprint!r}); remove data.fingerprint: the plan computes it",
                path="data.fingerprint",
            )
        return config.replace({"data.fingerprint": fingerprint})


__all__ = ["Checker", "check_components"]
