"""Answers the warm path got before it declined, handed once to the full path in the same process.

The warm reusing `build` (`warmbuild.py`) asks the local engine or the registry about every
image's `fp-` tag. When one is missing it declines and the full CLI runs in the same
process, whose first lookup would ask the same questions again. The warm path leaves its
answers here; the full path takes each at most once, so any later lookup (after a build)
sees the store as it is then. Only a process the console entry armed keeps answers: one
that calls the warm path and then runs other builds (a test) never hands them on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

ENGINE = "engine"  # local image inspections: ref -> the engine's answer, or None
REGISTRY = "registry"  # manifest digests: ref -> digest, or None


class _Answers:
    armed = False
    left: ClassVar[dict[str, dict[str, Any]]] = {}  # kind -> ref -> answer


def arm() -> None:
    """From the console entry: the full CLI may follow the warm path in this process."""
    _Answers.armed = True


def armed() -> bool:
    """Whether the full CLI may follow in this process (`arm`)."""
    return _Answers.armed


def leave(kind: str, answers: Mapping[str, Any]) -> None:
    """Keep `answers` (ref -> answer) for the full path, in an armed process."""
    if _Answers.armed:
        _Answers.left.setdefault(kind, {}).update(answers)


def take(kind: str, refs: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """The answers left for `refs`, each given out once, and the refs that still need asking."""
    left = _Answers.left.get(kind, {})
    known = {ref: left.pop(ref) for ref in refs if ref in left}
    return known, [ref for ref in refs if ref not in known]
