"""Secret values never shown or recorded: what they are, and how they are scrubbed.

Values come from the secrets an image is given (files and environment variables) and the
SSH key files it forwards; every string buildpilot prints or records about that image
passes through a Redactor, which replaces each value, and each line of a multi-line one
(a PEM key), with `***`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from buildpilot.request import BuildRequest

REDACTED = "***"
MAX_SECRET_FILE = 1 << 20  # larger files are data, not credentials
_M = TypeVar("_M", bound=BaseModel)


def secret_values(request: BuildRequest, env: Mapping[str, str] | None = None) -> list[str]:
    """The values of the request's secrets (files and environment variables) and the
    contents of its SSH key files: what must never be shown or recorded."""
    env = os.environ if env is None else env
    values: list[str] = []
    for spec in request.secrets:
        options = dict(part.partition("=")[::2] for part in spec.split(","))
        if "env" in options:
            values.append(env.get(options["env"], ""))
        elif "src" in options:
            values.append(_read_small(Path(options["src"])))
    for spec in request.ssh:
        paths = spec.partition("=")[2]
        values += [_read_small(Path(p)) for p in paths.split(",") if p]
    return values


def _read_small(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_SECRET_FILE:
            return ""
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


class Redactor:
    """Replaces secret values, and each line of a multi-line one, with `***`."""

    def __init__(self, values: Sequence[str]) -> None:
        pieces = {v.strip() for v in values if len(v.strip()) >= 4}
        pieces |= {
            line.strip() for v in values for line in v.splitlines() if len(line.strip()) >= 8
        }
        self.pieces = sorted(pieces, key=len, reverse=True)  # longest first

    def text(self, text: str) -> str:
        """`text` with every secret piece replaced."""
        for piece in self.pieces:
            if piece in text:
                text = text.replace(piece, REDACTED)
        return text

    def model(self, value: _M, kind: type[_M]) -> _M:
        """A pydantic record with every secret piece replaced in its strings."""
        if not self.pieces:
            return value
        data = value.model_dump()
        clean = self._scrub(data)
        return value if clean == data else kind.model_validate(clean)

    def _scrub(self, data: Any) -> Any:
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, dict):
            return {key: self._scrub(item) for key, item in data.items()}
        if isinstance(data, list):
            return [self._scrub(item) for item in data]
        return data
