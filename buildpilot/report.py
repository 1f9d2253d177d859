"""Rendering of run results: rich renderables and JSON, computed from the records alone.

Nothing here prints, decides an exit code or touches the filesystem; `console.Terminal`
prints what these functions return.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from rich.console import RenderableType
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from buildpilot import planreport
from buildpilot.planreport import PlanData
from buildpilot.prediction import reason_line
from buildpilot.results import (
    ImageResult,
    PhaseTiming,
    PredictionCheck,
    RunResult,
    StepTiming,
    Timeline,
)
from buildpilot.runview import (
    SUMMARY_COLUMNS,
    SUMMARY_RIGHT,
    status_counts,
    summary_text,
    summary_title,
)
from buildpilot.selection import Forecast
from buildpilot.size_report import size_view
from buildpilot.status import Status
from buildpilot.texttable import NOT_APPLICABLE, format_duration, short_digest, truncate

if TYPE_CHECKING:
    from buildpilot.release import ReleaseManifest

INSTRUCTION_WIDTH = 60  # characters of a step's instruction shown in the step table
SLOWEST_WIDTH = 36  # characters of the slowest step's instruction shown in the summary

STATUS_STYLES: dict[Status, str] = {
    Status.SUCCESS: "green",
    Status.FAILED: "bold red",
    Status.ABORTED: "yellow",
    Status.SKIPPED: "dim",
    Status.INTERRUPTED: "magenta",
}

PHASE_LABELS: dict[str, str] = {
    "context": "context transfer",
    "cache-import": "cache import",
    "export": "export",
    "cache-export": "cache export",
    "metadata": "metadata",
}

_VERTEX_PREFIX = re.compile(r"^\[[^\]]*\]\s*")


# --- small formatting helpers, shared with console.py ---------------------------------------


def step_instruction(step: StepTiming) -> str:
    """The step's Dockerfile instruction, or its vertex name without the `[stage n/m]` prefix."""
    if step.instruction:
        return step.instruction
    return _VERTEX_PREFIX.sub("", step.name) or step.name


def cache_figure(image: ImageResult) -> str:
    """`cached/total` Dockerfile steps, e.g. `4/5`; `-` when the image ran no step."""
    if image.steps_total == 0:
        return NOT_APPLICABLE
    return f"{image.steps_cached}/{image.steps_total}"


def has_run(image: ImageResult) -> bool:
    """Whether the image was built at all (aborted and skipped images never start)."""
    return image.status not in (Status.ABORTED, Status.SKIPPED)


def status_text(status: Status) -> Text:
    """The status word, styled by outcome."""
    return Text(status.value, style=STATUS_STYLES.get(status, ""))


# --- the run summary -------------------------------------------------------------------------


def summary_table(run: RunResult) -> Table:
    """One row per image: status, duration, cached steps, slowest step and short digest."""
    table = Table(title=summary_title(run), caption=status_counts(run), title_justify="left")
    for index, column in enumerate(SUMMARY_COLUMNS):
        table.add_column(
            column, justify="right" if index in SUMMARY_RIGHT else "left", no_wrap=True
        )
    if run.since:
        table.add_column(f"forecast since {run.since}", no_wrap=True)
    for image in run.images:
        extra = (forecast_figure(image),) if run.since else ()
        table.add_row(*_summary_row(image), *extra)
    return table


def plain_summary(run: RunResult, width: int) -> str | None:
    """`summary_table(run)` as rich prints it `width` cells wide without escape codes, or
    None where rich must lay it out (`Terminal.show`)."""
    if run.since:
        return None  # the forecast column: rich's
    return summary_text(run, [[str(cell) for cell in _summary_row(i)] for i in run.images], width)


def _summary_row(image: ImageResult) -> tuple[RenderableType, ...]:
    duration = format_duration(image.duration) if has_run(image) else NOT_APPLICABLE
    return (
        image.name,
        status_text(image.status),
        duration,
        cache_figure(image),
        _slowest_cell(image),
        short_digest(image.digest),
    )


def _slowest_cell(image: ImageResult) -> str:
    step = image.slowest_step
    if step is None:
        return NOT_APPLICABLE
    instruction = truncate(step_instruction(step), SLOWEST_WIDTH)
    return f"{instruction} {format_duration(step.duration)}"


# --- one image in detail ---------------------------------------------------------------------


def image_detail(image: ImageResult) -> list[RenderableType]:
    """Everything about one image: stages, steps, phases, and why it failed or did not run."""
    parts: list[RenderableType] = [Rule(_detail_heading(image), align="left")]
    parts.extend(_facts(image))
    timeline = image.timeline
    if timeline.stages:
        parts.append(_stages_table(timeline))
    if any(step.stage is not None for step in timeline.steps):
        parts.append(_steps_table(timeline))
    if timeline.phases:
        parts.append(_phases_table(timeline.phases))
    if timeline.cache_export_failed:
        parts.append(Text("cache export failed: the image was built, its cache was not saved"))
    parts.extend(_failure(timeline))
    if image.prediction is not None:
        parts.extend(_prediction(image.prediction))
    if image.size is not None:
        parts.extend(size_view(image.size))
    return parts


def _prediction(check: PredictionCheck) -> list[RenderableType]:
    """The forecast since a ref beside BuildKit's cached flags; disagreements flagged."""
    verdict = "affected" if check.affected else "unaffected"
    parts: list[RenderableType] = [Text(f"forecast since {check.since}: {verdict}")]
    parts.extend(Text(f"  {reason}") for reason in check.reasons)
    if all(step.actual_cached is None for step in check.steps):
        return parts  # not built: nothing to compare
    table = Table(title="forecast vs BuildKit", title_justify="left")
    for column in ("stage", "line", "instruction", "forecast", "BuildKit", ""):
        table.add_column(column)
    for step in check.steps:
        actual = "-" if step.actual_cached is None else ("cached" if step.actual_cached else "ran")
        flag = (
            Text("DISAGREE", style="bold red")
            if step.actual_cached is not None and step.actual_cached != step.predicted_cached
            else Text("")
        )
        table.add_row(
            step.stage,
            str(step.line),
            truncate(step.instruction, INSTRUCTION_WIDTH),
            "cached" if step.predicted_cached else "runs",
            actual,
            flag,
        )
    parts.append(table)
    return parts


def forecast_figure(image: ImageResult) -> str:
    """`2/2 ok`, `1 disagree`, or `-` when there was no forecast or no build."""
    check = image.prediction
    if check is None or all(s.actual_cached is None for s in check.steps):
        return NOT_APPLICABLE
    misses = sum(1 for s in check.steps if not s.predicted_cached)
    wrong = len(check.disagreements)
    return f"{wrong} disagree" if wrong else f"{misses} misses ok"


def _detail_heading(image: ImageResult) -> Text:
    heading = Text(f"{image.name} ")
    heading.append_text(status_text(image.status))
    if has_run(image):
        heading.append(f" in {format_duration(image.duration)}")
        if image.steps_total:
            heading.append(f" ({cache_figure(image)} cached)")
    return heading


def _facts(image: ImageResult) -> list[RenderableType]:
    lines: list[RenderableType] = []
    if image.reason:
        lines.append(Text(f"reason: {image.reason}"))
    if image.digest:
        lines.append(Text(f"digest: {image.digest}"))
    if image.tags:
        lines.append(Text(f"tags: {', '.join(image.tags)}"))
    lines.extend(Text(f"warning: {warning}", style="yellow") for warning in image.warnings)
    return lines


def _stages_table(timeline: Timeline) -> Table:
    table = Table(title="stages", title_justify="left")
    table.add_column("stage", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("cached", justify="right", no_wrap=True)
    for stage in timeline.stages:
        table.add_row(stage.name, format_duration(stage.duration), f"{stage.cached}/{stage.steps}")
    return table


def _steps_table(timeline: Timeline) -> Table:
    table = Table(title="steps", title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("stage", no_wrap=True)
    table.add_column("instruction", no_wrap=True, overflow="ellipsis")
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("cache", no_wrap=True)
    for step in timeline.steps:
        if step.stage is not None:  # internal vertices are reported as phases
            table.add_row(*_step_row(step))
    return table


def _step_row(step: StepTiming) -> tuple[RenderableType, ...]:
    index = NOT_APPLICABLE if step.index is None else str(step.index)
    return (
        index,
        step.stage or NOT_APPLICABLE,
        truncate(step_instruction(step), INSTRUCTION_WIDTH),
        format_duration(step.duration),
        _cache_cell(step),
    )


def _cache_cell(step: StepTiming) -> Text:
    if step.error is not None:
        return Text("ERROR", style="bold red")
    if step.cached:
        return Text("CACHED", style="green")
    return Text("miss", style="yellow")


def _phases_table(phases: list[PhaseTiming]) -> Table:
    table = Table(title="phases", title_justify="left")
    table.add_column("phase", no_wrap=True)
    table.add_column("name", overflow="ellipsis")
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("result")
    for phase in phases:
        result = _phase_result(phase)
        label = PHASE_LABELS.get(phase.kind, phase.kind)
        table.add_row(label, phase.name, format_duration(phase.duration), result)
    return table


def _phase_result(phase: PhaseTiming) -> Text:
    if phase.error is None:
        return Text("ok")
    if phase.kind == "cache-import" and "not found" in phase.error:
        return Text("no cache at this ref yet", style="yellow")  # a first build, not a fault
    return Text(f"FAILED: {phase.error}", style="red")


def _failure(timeline: Timeline) -> list[RenderableType]:
    parts: list[RenderableType] = []
    if timeline.failed_step:
        parts.append(Text(f"failed step: {timeline.failed_step}", style="bold red"))
    if timeline.log_tail:
        log = Text.from_ansi("\n".join(timeline.log_tail))
        title = f"log tail (last {len(timeline.log_tail)} lines)"
        parts.append(Panel(log, title=title, title_align="left", expand=False))
    return parts


# --- the whole run ---------------------------------------------------------------------------


def run_report(run: RunResult) -> list[RenderableType]:
    """The details of every image, in run order, then the summary table."""
    parts: list[RenderableType] = []
    for image in run.images:
        parts.extend(image_detail(image))
    parts.append(summary_table(run))
    return parts


def run_json(run: RunResult) -> str:
    """The full record as indented JSON, plus the computed figures of the run and each image.

    Adds `duration` to the run and `steps_total`, `steps_cached` and `duration` to each image
    (`duration` is already a field of images); strip these keys to validate it as a RunResult.
    """
    data: dict[str, Any] = run.model_dump(mode="json")
    data["duration"] = run.duration
    for image, record in zip(run.images, data["images"], strict=True):
        record.update(_image_figures(image))
    return json.dumps(data, indent=2, ensure_ascii=False)


def _image_figures(image: ImageResult) -> dict[str, Any]:
    return {
        "steps_total": image.steps_total,
        "steps_cached": image.steps_cached,
        "duration": image.duration,
    }


def plan_view(data: PlanData) -> list[RenderableType]:
    """`buildpilot plan` for a terminal: one row per image in build order, then the parallel
    waves (`planreport.plan_text` is the same without escape codes)."""
    table = Table(title=planreport.title(data), title_justify="left")
    for column in planreport.COLUMNS:
        table.add_column(column, overflow="fold")
    for name, action, misses, why in planreport.rows(data):
        table.add_row(Text(name, style=planreport.ACTION_STYLES[action]), action, misses, why)
    return [table, Text(planreport.build_order(data))]


def explain_view(forecast: Forecast, image: str) -> list[RenderableType]:
    """`buildpilot explain IMAGE`: the whole chain behind one image's forecast."""
    decision = forecast.decisions[image]
    parts: list[RenderableType] = [
        Text(f"{image}: {decision.action.value} ({decision.reason})", style="bold")
    ]
    fingerprint = forecast.fingerprints.get(image)
    if fingerprint is not None:
        parts.append(
            Text(f"fingerprint: {fingerprint.value or 'none: ' + str(fingerprint.unknown)}")
        )
    if forecast.prediction is None:
        parts.append(Text("no --since given: nothing to compare with, so every step may run"))
        return parts
    predicted = forecast.prediction.images[image]
    changed = forecast.prediction.changed_files
    parts.append(Text(f"{len(changed)} files changed since {forecast.prediction.since}"))
    for reason in predicted.reasons:
        parts.append(Text("  " + reason_line(reason)))
    table = Table(title="steps", title_justify="left")
    for column in ("stage", "line", "instruction", "forecast"):
        table.add_column(column, overflow="fold")
    for step in predicted.steps:
        verdict = Text("cached", style="green") if step.cached else Text("runs", style="yellow")
        table.add_row(step.stage, str(step.line), truncate(step.instruction, 70), verdict)
    parts.append(table)
    return parts


def release_table(manifest: ReleaseManifest) -> Table:
    """One row per image of a release: digest, tags, and whether it was built or reused."""
    table = Table(
        title=f"release {manifest.version} ({(manifest.commit or '?')[:12]})", title_justify="left"
    )
    for column in ("image", "source", "digest", "tags"):
        table.add_column(column, overflow="fold")
    for entry in manifest.images:
        table.add_row(entry.image, entry.source, short_digest(entry.digest), "\n".join(entry.tags))
    return table
