"""A backend that builds nothing and finds nothing: fakes override `build`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from buildpilot.backend import EngineInfo, Found


class QuietBackend:
    """Every engine call but `build` answers at once and changes nothing."""

    def check(self, *, builder: str | None) -> EngineInfo:
        return EngineInfo(buildx_version="v0.13.1", driver="docker")

    def tag(self, source: str, target: str) -> None:
        pass

    def find(self, refs: Sequence[str], *, registry: bool) -> dict[str, Found]:
        return {}

    def retag_remote(self, source: str, tags: Sequence[str]) -> None:
        pass

    def interrupt(self) -> None:
        pass

    def save(self, ref: str, path: Path) -> None:
        pass
