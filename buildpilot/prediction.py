"""What a change does to each image: the forecast's records, and how to say why.

`changes.predict` makes them from the repository now and at a ref; the warm path
(`warmplan.py`) makes the same from a planning snapshot. Plain frozen dataclasses, free of
the config's models, so that the warm path imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Reason:
    """Why a step misses: file -> Dockerfile:line instruction -> stage."""

    file: str
    dockerfile: str
    line: int
    instruction: str
    stage: str
    detail: str


@dataclass(frozen=True)
class StepPrediction:
    """One Dockerfile step of a stage the target builds, and whether it will be cached."""

    stage: str
    line: int
    instruction: str
    cached: bool


@dataclass(frozen=True)
class ImagePrediction:
    """The forecast for one image."""

    name: str
    affected: bool
    reasons: tuple[Reason, ...] = ()
    steps: tuple[StepPrediction, ...] = ()

    def first_misses(self) -> dict[str, StepPrediction]:
        """The first step of each stage that will run again."""
        misses: dict[str, StepPrediction] = {}
        for step in self.steps:
            if not step.cached:
                misses.setdefault(step.stage, step)
        return misses


@dataclass(frozen=True)
class Prediction:
    """The forecast for every image of a plan."""

    since: str
    base: str
    changed_files: tuple[str, ...]
    images: Mapping[str, ImagePrediction]


def reason_line(reason: Reason) -> str:
    """`file -> Dockerfile:line instruction [stage]: detail`."""
    return (
        f"{reason.file} -> {reason.dockerfile}:{reason.line} {reason.instruction} "
        f"[{reason.stage}]: {reason.detail}"
    )
