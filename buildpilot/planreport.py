"""`buildpilot plan` as data, as JSON and as plain text, computed from a forecast.

Nothing here prints. Free of rich and pydantic, so that the warm path (`warmplan.py`)
renders through the very functions the full path does; `report.plan_view` turns the same
rows into a rich table for a terminal.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from buildpilot import texttable

if TYPE_CHECKING:
    from buildpilot.prediction import Reason, StepPrediction
    from buildpilot.selection import Forecast

PlanData = dict[str, Any]
COLUMNS = ("image", "action", "first misses", "why")
MISS_WIDTH = 40  # characters of a first miss's instruction in the table
ACTION_STYLES = {"build": "bold", "reuse": "cyan", "skip": "dim"}


def plan_data(forecast: Forecast) -> PlanData:
    """The plan as data: every image with its decision, reasons and predicted steps."""
    images = []
    for name in forecast.order:
        decision = forecast.decisions[name]
        predicted = forecast.prediction.images[name] if forecast.prediction else None
        fingerprint = forecast.fingerprints.get(name)
        images.append(
            {
                "name": name,
                "affected": predicted.affected if predicted else True,
                "action": decision.action.value,
                "why": decision.reason,
                "reasons": [_fields(r) for r in predicted.reasons] if predicted else [],
                "steps": [_fields(s) for s in predicted.steps] if predicted else [],
                "first_misses": {
                    stage: _fields(step) for stage, step in predicted.first_misses().items()
                }
                if predicted
                else {},
                "fingerprint": fingerprint.value if fingerprint else None,
            }
        )
    prediction = forecast.prediction
    return {
        "since": prediction.since if prediction else None,
        "base": prediction.base if prediction else None,
        "changed_files": list(prediction.changed_files) if prediction else [],
        "images": images,
        "order": forecast.waves,
    }


def _fields(record: Reason | StepPrediction) -> dict[str, Any]:
    """`dataclasses.asdict` of a record of plain values (its fields, in order), without the
    deep copies that made it the slowest part of a warm plan."""
    return dict(vars(record))


def plan_json(data: PlanData) -> str:
    """`buildpilot plan --json`."""
    return json.dumps(data, indent=2)


def title(data: PlanData) -> str:
    """The table's title."""
    since = data["since"]
    return f"plan since {since}" if since else "plan (no --since: every selected image builds)"


def rows(data: PlanData) -> list[tuple[str, str, str, str]]:
    """One row per image in build order: image, action, first misses, why."""
    found = []
    for image in data["images"]:
        misses = "\n".join(
            f"{stage}: line {step['line']} {texttable.truncate(step['instruction'], MISS_WIDTH)}"
            for stage, step in image["first_misses"].items()
        )
        found.append((image["name"], image["action"], misses or "-", image["why"]))
    return found


def build_order(data: PlanData) -> str:
    """The line under the table: the parallel waves of images to build."""
    waves = " -> ".join("[" + ", ".join(wave) + "]" for wave in data["order"])
    return f"build order: {waves or 'nothing to build'}"


def plan_text(data: PlanData, width: int) -> str | None:
    """`buildpilot plan` as rich prints it `width` cells wide without escape codes (see
    `texttable`); None when rich must lay it out."""
    table = texttable.table(title(data), COLUMNS, rows(data), width=width)
    tail = texttable.paragraph(build_order(data), width=width)
    return None if table is None or tail is None else table + tail
