"""Version gates for the library patches: a patch runs only on the library versions it was verified with.

    from mathtune.patches.gate import Patch
    PATCH = Patch("my-patch", "what it changes in which library", {"torch": ">=2.13,<2.14"})
    if PATCH.supported(): ...      # else: take the library's plain path

Outside a verified range (or with the patch named in `MATHTUNE_DISABLE_PATCHES`, a comma-separated
list of patch names, or `all`) `supported()` is False and logs one warning per patch and process
on the `mathtune.patches` logger. The decision itself is not cached: tests change
`installed_version` and see the plain path at once.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

log = logging.getLogger("mathtune.patches")
DISABLE_ENV = "MATHTUNE_DISABLE_PATCHES"
_reported: set[str] = set()  # patches whose plain-path line was logged in this process


@functools.cache
def installed_version(package: str) -> str | None:
    """The installed distribution's version (`2.13.0+cpu`), None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def in_range(version: str | None, spec: str) -> bool:
    """Whether `version` satisfies the pip-style range `spec` (local labels such as +cpu ignored)."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    if version is None:
        return False
    try:
        return SpecifierSet(spec).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


@dataclass(frozen=True)
class Patch:
    """One change to a library's internals: its name, what it changes, and the range of each
    library it was verified with (pip syntax, e.g. `{"torch": ">=2.13,<2.14"}`)."""

    name: str
    changes: str
    verified: dict[str, str]

    def why_off(self) -> str | None:
        """Why the plain library path must be taken (None when the patch may run)."""
        off = {s.strip() for s in os.environ.get(DISABLE_ENV, "").split(",")}
        if self.name in off or "all" in off:
            return f"{DISABLE_ENV}={os.environ[DISABLE_ENV]}"
        for package, spec in self.verified.items():
            version = installed_version(package)
            if not in_range(version, spec):
                return f"verified with {package}{spec}, installed: {package} {version or 'missing'}"
        return None

    def supported(self) -> bool:
        """True when the patch may run here; False (one log line per process) when not."""
        why = self.why_off()
        if why is None:
            return True
        if self.name not in _reported:
            _reported.add(self.name)
            log.warning("mathtune patch %r is off (%s): using the library's plain path", self.name, why)
        return False

    def describe(self) -> str:
        """`name (torch>=2.13,<2.14, ...)`: for docs, logs and tests."""
        return f"{self.name} ({', '.join(p + s for p, s in self.verified.items())})"
