"""What a run produced, as plain data: rendering and exit codes are separate passes over it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from buildpilot.size import ImageSize
from buildpilot.status import Status


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StepTiming(_Record):
    """One BuildKit vertex: a Dockerfile instruction or an internal step."""

    name: str  # the vertex name as BuildKit gives it, e.g. "[builder 2/4] RUN pip install ..."
    stage: str | None  # "builder", "stage-0"; None for internal steps
    index: int | None  # 2 of "[builder 2/4]"
    total: int | None  # 4 of "[builder 2/4]"
    instruction: str | None  # "RUN pip install ..."
    started: datetime | None
    completed: datetime | None
    duration: float  # seconds; 0.0 when never started
    cached: bool
    error: str | None = None


class PhaseTiming(_Record):
    """A phase outside the Dockerfile's steps that often dominates a build."""

    kind: str  # context, cache-import, export, cache-export, metadata, other
    name: str
    duration: float
    error: str | None = None


class StageTiming(_Record):
    """The steps of one Dockerfile stage, summed."""

    name: str
    started: datetime | None
    completed: datetime | None
    duration: float  # wall time from first start to last completion
    steps: int
    cached: int


class Timeline(_Record):
    """Everything BuildKit's progress said about one build, as timings."""

    steps: list[StepTiming] = []
    stages: list[StageTiming] = []
    phases: list[PhaseTiming] = []
    failed_step: str | None = None
    log_tail: list[str] = []  # last lines of the failed step's output
    cache_export_failed: bool = False


class PredictedStep(_Record):
    """A Dockerfile step as `plan` forecast it, beside what BuildKit did."""

    stage: str
    line: int
    instruction: str
    predicted_cached: bool
    actual_cached: bool | None = None  # None: BuildKit did not run it (or was not asked)


class PredictionCheck(_Record):
    """The forecast for one image against BuildKit's own cached flags."""

    since: str
    affected: bool
    reasons: list[str] = []
    steps: list[PredictedStep] = []

    @property
    def disagreements(self) -> list[PredictedStep]:
        """Steps where the forecast and BuildKit differ."""
        return [
            s
            for s in self.steps
            if s.actual_cached is not None and s.actual_cached != s.predicted_cached
        ]


class ImageResult(_Record):
    """The outcome of one image in a run."""

    name: str
    status: Status
    duration: float = 0.0
    started: datetime | None = None
    completed: datetime | None = None
    timeline: Timeline = Timeline()
    digest: str | None = None
    tags: list[str] = []
    reason: str | None = None  # why it failed, was aborted or skipped
    command: list[str] = []  # the buildx argv, redacted
    warnings: list[str] = []
    fingerprint: str | None = None
    prediction: PredictionCheck | None = None
    size: ImageSize | None = None  # measured for images with a size budget, or `--size`

    @property
    def steps_total(self) -> int:
        """Dockerfile steps (internal vertices excluded)."""
        return sum(1 for s in self.timeline.steps if s.stage is not None)

    @property
    def steps_cached(self) -> int:
        """Dockerfile steps BuildKit took from cache."""
        return sum(1 for s in self.timeline.steps if s.stage is not None and s.cached)

    @property
    def slowest_step(self) -> StepTiming | None:
        """The Dockerfile step that took longest, if any ran."""
        steps = [s for s in self.timeline.steps if s.stage is not None]
        return max(steps, key=lambda s: s.duration) if steps else None


class RunResult(_Record):
    """One `buildpilot build` invocation."""

    id: str
    started: datetime
    completed: datetime
    config: str  # path of the config file
    images: list[ImageResult]
    interrupted: bool = False
    branch: str | None = None
    commit: str | None = None
    since: str | None = None

    @property
    def duration(self) -> float:
        """Wall time of the whole run in seconds."""
        return (self.completed - self.started).total_seconds()


def exit_code(run: RunResult) -> int:
    """0 when every image succeeded or had nothing to do, 130 when interrupted, else 1."""
    if run.interrupted:
        return 130
    ok = {Status.SUCCESS, Status.SKIPPED}
    return 0 if all(image.status in ok for image in run.images) else 1
