"""Turn `docker buildx build --progress=rawjson` events into step and phase timings.

`rawjson.RawJsonStream` decodes the events from buildx's stderr; `ProgressTracker` folds
them into the records of `buildpilot.results`. Pure: no I/O, no printing.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from buildpilot.rawjson import classify_phase, parse_step_name
from buildpilot.results import PhaseTiming, StageTiming, StepTiming, Timeline

__all__ = ["ProgressTracker", "is_cancellation", "parse_timestamp"]

MAX_LOG_BYTES = 1 << 20  # output kept per vertex: enough for any tail, bounded for `pip install`

_FRACTION = re.compile(r"(\.\d{6})\d+")
_EXPORT_VERTEX = "exporting to image"
_EXPORTED = re.compile(r"exporting manifest (list )?(sha256:[0-9a-f]{64})$")


def is_cancellation(error: str) -> bool:
    """Whether a vertex error only says the step was stopped because another one failed."""
    lowered = error.lower()
    return "context canceled" in lowered or lowered.rstrip(". ").endswith(("canceled", "cancelled"))


def parse_timestamp(value: object) -> datetime | None:
    """An RFC 3339 timestamp from BuildKit (nanoseconds allowed) as a datetime, or None."""
    if not isinstance(value, str) or not value:
        return None
    text = _FRACTION.sub(r"\1", value.strip())
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _decode_b64(value: object) -> bytes:
    """The bytes of a base64 field, or b"" when it is missing or not base64."""
    if not isinstance(value, str):
        return b""
    try:
        return base64.b64decode(value)
    except (binascii.Error, ValueError):
        return b""


def _text_lines(data: bytes) -> list[str]:
    """Decoded output split into lines, trailing `\\r` removed, no empty last line."""
    lines = data.decode("utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _seconds(start: datetime | None, end: datetime | None) -> float:
    """`end - start` in seconds, never negative, 0.0 when either is unknown."""
    if start is None or end is None:
        return 0.0
    return max(0.0, (end - start).total_seconds())


# --------------------------------------------------------------------------- tracker


@dataclass
class _Vertex:
    """What is known of one vertex digest so far."""

    name: str
    order: int  # first appearance
    runs: dict[datetime, datetime | None] = field(default_factory=dict)  # started -> completed
    start_order: int | None = None  # first update that had it started
    cached: bool = False
    error: str | None = None
    last_seen: datetime | None = None  # newest timestamp of a status or log line
    reported: bool = False

    @property
    def started(self) -> datetime | None:
        return min(self.runs) if self.runs else None

    @property
    def running(self) -> bool:
        return any(end is None for end in self.runs.values())

    @property
    def completed(self) -> datetime | None:
        ends = [end for end in self.runs.values() if end is not None]
        return None if self.running or not ends else max(ends)


def _merge(vertex: _Vertex, update: dict[str, Any], order: int) -> None:
    """Apply one re-sent vertex state.

    BuildKit re-sends the whole vertex on every change, with unset fields left out. A
    vertex can run more than once (a fresh `started` without `completed`), so each
    `started` is kept as a run; an update without times only re-announces the vertex.
    """
    name = update.get("name")
    if isinstance(name, str) and name:
        vertex.name = name
    started = parse_timestamp(update.get("started"))
    completed = parse_timestamp(update.get("completed"))
    if started is not None:
        vertex.runs[started] = completed if completed is not None else vertex.runs.get(started)
        if vertex.start_order is None:
            vertex.start_order = order
    elif completed is not None:
        vertex.runs.setdefault(completed, completed)
    if started is not None or completed is not None:
        vertex.cached = bool(update.get("cached"))
    elif update.get("cached"):
        vertex.cached = True
    error = update.get("error")
    if isinstance(error, str) and error:
        vertex.error = error


def _busy_seconds(vertex: _Vertex) -> float:
    """Time the vertex spent running: its runs' union; an open run counts to `last_seen`."""
    spans: list[tuple[datetime, datetime]] = []
    for start, end in vertex.runs.items():
        stop = end if end is not None else vertex.last_seen
        if stop is not None and stop > start:
            spans.append((start, stop))
    total = 0.0
    current: tuple[datetime, datetime] | None = None
    for start, stop in sorted(spans):
        if current is not None and start <= current[1]:
            current = (current[0], max(current[1], stop))
            continue
        if current is not None:
            total += _seconds(*current)
        current = (start, stop)
    if current is not None:
        total += _seconds(*current)
    return total


def _step_timing(vertex: _Vertex) -> StepTiming:
    stage, index, total, instruction = parse_step_name(vertex.name)
    return StepTiming(
        name=vertex.name,
        stage=stage,
        index=index,
        total=total,
        instruction=instruction,
        started=vertex.started,
        completed=vertex.completed,
        duration=_busy_seconds(vertex),
        cached=vertex.cached,
        error=vertex.error,
    )


def _stage_timings(steps: list[StepTiming]) -> list[StageTiming]:
    """Dockerfile steps summed per stage, stages in the order their first step ran."""
    grouped: dict[str, list[StepTiming]] = {}
    for step in steps:
        if step.stage is not None:
            grouped.setdefault(step.stage, []).append(step)
    stages: list[StageTiming] = []
    for name, members in grouped.items():
        starts = [s.started for s in members if s.started is not None]
        ends = [s.completed for s in members if s.completed is not None]
        first = min(starts) if starts else None
        last = max(ends) if ends else None
        stages.append(
            StageTiming(
                name=name,
                started=first,
                completed=last,
                duration=_seconds(first, last),
                steps=len(members),
                cached=sum(1 for s in members if s.cached),
            )
        )
    return stages


def _failed_index(steps: list[StepTiming]) -> int | None:
    """Which step to blame: first Dockerfile step with a real error, else the first phase
    whose error BuildKit does not tolerate (a failed cache import never fails a build: a
    push that failed after one is what to blame), else first error at all."""
    errored = [i for i, s in enumerate(steps) if s.error]
    tolerated = {i for i in errored if classify_phase(steps[i].name) == "cache-import"}
    real = [
        i
        for i in errored
        if steps[i].stage is not None and not is_cancellation(steps[i].error or "")
    ]
    phases = [
        i
        for i in errored
        if steps[i].stage is None
        and i not in tolerated
        and not is_cancellation(steps[i].error or "")
    ]
    candidates = real or phases or [i for i in errored if i not in tolerated]
    return candidates[0] if candidates else None


class ProgressTracker:
    """Folds SolveStatus events (from `RawJsonStream`) into timings.

    Steps and phases are listed in the order they first started (never-started ones last,
    in order of first appearance): BuildKit announces all steps up front, last step first,
    so order of appearance alone would list the Dockerfile backwards.
    """

    def __init__(self) -> None:
        """Start with no vertex seen."""
        self._vertices: dict[str, _Vertex] = {}
        self._logs: dict[str, bytearray] = {}
        self._warnings: list[str] = []
        self._order = 0
        self._exported: dict[bool, set[str]] = {False: set(), True: set()}  # is list -> digests

    @property
    def warnings(self) -> list[str]:
        """BuildKit's warnings so far (their short text), e.g. Dockerfile deprecations."""
        return list(self._warnings)

    def feed(self, event: dict[str, Any]) -> list[StepTiming]:
        """Take one event; return the Dockerfile steps it completed, for a live display.

        Only Dockerfile steps (stage not None) are returned, each once: the first time
        it is seen completed (cached, done or failed). Phases are in `timeline()`.
        """
        if not isinstance(event, dict):
            return []
        touched = [d for d in map(self._take_vertex, _dicts(event.get("vertexes"))) if d]
        for status in _dicts(event.get("statuses")):
            self._see(status.get("vertex"), status.get("timestamp"), status.get("completed"))
            self._take_export(status)
        for log in _dicts(event.get("logs")):
            self._take_log(log)
        for warning in _dicts(event.get("warnings")):
            text = _decode_b64(warning.get("short")).decode("utf-8", errors="replace").strip()
            if text and text not in self._warnings:
                self._warnings.append(text)
        return self._newly_completed(touched)

    @property
    def exported_digest(self) -> str | None:
        """The image's digest once BuildKit has finished exporting it (stored or pushed),
        which is before the cache export and the end of the build; None until then, and
        when the export named no single manifest or manifest list."""
        exporter = [v for v in self._vertices.values() if v.name == _EXPORT_VERTEX]
        if len(exporter) != 1 or exporter[0].completed is None or exporter[0].error:
            return None
        lists, manifests = self._exported[True], self._exported[False]
        found = lists or manifests
        return next(iter(found)) if len(found) == 1 else None

    def _take_export(self, status: dict[str, Any]) -> None:
        vertex = self._vertices.get(status.get("vertex") or "")
        match = _EXPORTED.match(str(status.get("id") or ""))
        if vertex is not None and vertex.name == _EXPORT_VERTEX and match:
            self._exported[bool(match.group(1))].add(match.group(2))

    def log_tail(self, vertex_digest: str, n: int = 20) -> list[str]:
        """The last `n` lines a vertex wrote (stdout and stderr, in arrival order)."""
        data = self._logs.get(vertex_digest)
        if not data or n <= 0:
            return []
        return _text_lines(bytes(data))[-n:]

    def timeline(self, *, tail_lines: int = 20) -> Timeline:
        """Everything seen so far as a `Timeline` (callable mid-build too)."""
        ordered = sorted(self._vertices.items(), key=lambda item: _sort_key(item[1]))
        timed = [(d, _step_timing(v)) for d, v in ordered]
        foreign = _foreign_steps([step for _, step in timed])
        kept = [(d, step) for d, step in timed if id(step) not in foreign]
        steps = [step for _, step in kept]
        digests = [d for d, _ in kept]
        phases = [
            PhaseTiming(
                kind=classify_phase(s.name), name=s.name, duration=s.duration, error=s.error
            )
            for s in steps
            if s.stage is None
        ]
        failed = _failed_index(steps)
        return Timeline(
            steps=steps,
            stages=_stage_timings(steps),
            phases=phases,
            failed_step=None if failed is None else steps[failed].name,
            log_tail=[] if failed is None else self.log_tail(digests[failed], tail_lines),
            cache_export_failed=any(p.kind == "cache-export" and p.error for p in phases),
        )

    def _take_vertex(self, update: dict[str, Any]) -> str | None:
        digest = update.get("digest")
        if not isinstance(digest, str) or not digest:
            return None
        self._order += 1
        vertex = self._vertices.get(digest)
        if vertex is None:
            name = update.get("name")
            vertex = _Vertex(name=name if isinstance(name, str) else digest, order=self._order)
            self._vertices[digest] = vertex
        _merge(vertex, update, self._order)
        return digest

    def _see(self, digest: object, *stamps: object) -> None:
        vertex = self._vertices.get(digest) if isinstance(digest, str) else None
        if vertex is None:
            return
        for stamp in map(parse_timestamp, stamps):
            if stamp is not None and (vertex.last_seen is None or stamp > vertex.last_seen):
                vertex.last_seen = stamp

    def _take_log(self, log: dict[str, Any]) -> None:
        digest = log.get("vertex")
        if not isinstance(digest, str):
            return
        self._see(digest, log.get("timestamp"))
        buffer = self._logs.setdefault(digest, bytearray())
        buffer += _decode_b64(log.get("data"))
        if len(buffer) > MAX_LOG_BYTES:
            cut = buffer.find(b"\n", len(buffer) - MAX_LOG_BYTES)
            del buffer[: cut + 1 if cut >= 0 else len(buffer) - MAX_LOG_BYTES]

    def _newly_completed(self, digests: list[str]) -> list[StepTiming]:
        done: list[StepTiming] = []
        for digest in dict.fromkeys(digests):
            vertex = self._vertices[digest]
            if vertex.reported or vertex.completed is None:
                continue
            step = _step_timing(vertex)
            if step.stage is not None:
                vertex.reported = True
                done.append(step)
        return done


def _sort_key(vertex: _Vertex) -> tuple[int, int]:
    """Started vertices first, in the order they started; then the rest as they appeared."""
    if vertex.start_order is None:
        return 1, vertex.order
    return 0, vertex.start_order


def _dicts(value: object) -> list[dict[str, Any]]:
    """The dict items of a JSON list field; nothing when the field is not a list."""
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def _foreign_steps(steps: list[StepTiming]) -> set[int]:
    """Steps of other builds that BuildKit merged into this stream.

    Concurrent builds on one daemon share equivalent vertices, and a shared vertex is
    reported to every build that waits on it, under the name the first build gave it: a
    `[stage 1/4] COPY …` of another Dockerfile can show up beside this build's `[1/3]`
    steps. Within a stage, this build's steps agree on the step count `n` of `[i/n]`; a
    vertex whose `n` is not the stage's most common one belongs to another build.
    """
    by_stage: dict[str, list[StepTiming]] = {}
    for step in steps:
        if step.stage is not None and step.total is not None:
            by_stage.setdefault(step.stage, []).append(step)
    foreign: set[int] = set()
    for members in by_stage.values():
        counts: dict[int, int] = {}
        for step in members:
            counts[step.total or 0] = counts.get(step.total or 0, 0) + 1
        ranked = sorted(counts.items(), key=lambda item: item[1], reverse=True)
        if len(ranked) > 1 and ranked[0][1] > ranked[1][1]:
            foreign.update(id(step) for step in members if step.total != ranked[0][0])
    return foreign
