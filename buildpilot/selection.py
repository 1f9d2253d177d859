"""Pure: which images of a plan a run builds, reuses, or skips, and why."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from buildpilot import graph
from buildpilot.prediction import ImagePrediction, Prediction, reason_line

if TYPE_CHECKING:  # the warm plan path decides without importing the config's models
    from buildpilot.fingerprint import Fingerprint


class Action(enum.StrEnum):
    """What happens to one image."""

    BUILD = "build"
    REUSE = "reuse"  # use the existing image with this fingerprint; build it when there is none
    SKIP = "skip"  # not needed in this run


@dataclass(frozen=True)
class Decision:
    """What happens to one image, and why."""

    action: Action
    reason: str


@dataclass(frozen=True)
class Forecast:
    """What `plan` and `explain` show: the images to build in waves, and why."""

    order: list[str]  # every selected image and its dependencies, bases first
    waves: list[list[str]]  # the images to build, in parallel waves
    prediction: Prediction | None
    decisions: Mapping[str, Decision]
    fingerprints: Mapping[str, Fingerprint]


def decide(
    order: Sequence[str],
    deps: Mapping[str, Sequence[str]],
    *,
    prediction: Prediction | None,
    fingerprints: Mapping[str, Fingerprint],
    skip_existing: bool,
) -> dict[str, Decision]:
    """Affected images are built; unaffected bases of affected images are reused; the rest
    are skipped. With `skip_existing`, an image whose fingerprint already has an image is
    reused instead of built."""
    decisions: dict[str, Decision] = {}
    for name in order:
        if prediction is None:
            decisions[name] = Decision(Action.BUILD, "selected")
            continue
        forecast = prediction.images[name]
        if forecast.affected:
            decisions[name] = Decision(Action.BUILD, describe(forecast))
            continue
        needed_by = sorted(
            other
            for other in order
            if prediction.images[other].affected and name in graph.closure(deps, [other])
        )
        if needed_by:
            decisions[name] = Decision(
                Action.REUSE,
                f"unchanged since {prediction.since}; a base of {', '.join(needed_by)}",
            )
        else:
            decisions[name] = Decision(Action.SKIP, f"unchanged since {prediction.since}")
    if skip_existing:
        for name, decision in decisions.items():
            fingerprint = fingerprints.get(name)
            if decision.action is Action.BUILD and fingerprint is not None and fingerprint.value:
                decisions[name] = Decision(Action.REUSE, decision.reason)
    return decisions


def describe(forecast: ImagePrediction) -> str:
    """One line: the first reason an image is affected."""
    if not forecast.reasons:
        return "unchanged"
    return reason_line(forecast.reasons[0]) + (
        f" (+{len(forecast.reasons) - 1} more)" if len(forecast.reasons) > 1 else ""
    )
