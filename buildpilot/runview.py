"""What renders a run without pydantic reads of it, and the summary table's shape.

`results.RunResult` and the warm reuse path's records (`warmbuild.py`) both satisfy these
protocols, so the run files (`runlog`, `ci_files`) and the summary's title and caption come
from one piece of code for both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from buildpilot.status import Status
from buildpilot.texttable import format_duration, table

SUMMARY_COLUMNS = ("image", "status", "duration", "cached", "slowest step", "digest")
SUMMARY_RIGHT = (2, 3)  # the summary's columns justified right: duration and cached


class TimelineView(Protocol):
    """What is read of an image's timeline."""

    @property
    def failed_step(self) -> str | None: ...
    @property
    def log_tail(self) -> Sequence[str]: ...


class ImageView(Protocol):
    """What is read of an image's result (`results.ImageResult`)."""

    @property
    def name(self) -> str: ...
    @property
    def status(self) -> Status: ...
    @property
    def duration(self) -> float: ...
    @property
    def digest(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def timeline(self) -> TimelineView: ...
    @property
    def steps_total(self) -> int: ...
    @property
    def steps_cached(self) -> int: ...


class RunView(Protocol):
    """What is read of a run (`results.RunResult`)."""

    @property
    def id(self) -> str: ...
    @property
    def started(self) -> datetime: ...
    @property
    def duration(self) -> float: ...
    @property
    def interrupted(self) -> bool: ...
    @property
    def commit(self) -> str | None: ...
    @property
    def branch(self) -> str | None: ...
    @property
    def images(self) -> Sequence[ImageView]: ...


def summary_title(run: RunView) -> str:
    """`run <id>: 4 images in 12.3s`, and `(interrupted)` when it was."""
    title = f"run {run.id}: {len(run.images)} images in {format_duration(run.duration)}"
    return f"{title} (interrupted)" if run.interrupted else title


def summary_text(run: RunView, rows: Sequence[Sequence[str]], width: int) -> str | None:
    """The run summary (`report.summary_table`) of `rows`, one per image, laid out `width`
    cells wide for an output that takes no escape codes; None where rich must lay it out."""
    return table(
        summary_title(run),
        SUMMARY_COLUMNS,
        rows,
        width=width,
        right=SUMMARY_RIGHT,
        caption=status_counts(run),
    )


def status_counts(run: RunView) -> str:
    """The summary's caption: `3 success, 1 skipped`."""
    counts = Counter(image.status for image in run.images)
    return ", ".join(f"{counts[status]} {status.value}" for status in Status if counts[status])
