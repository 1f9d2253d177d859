"""BuildKit's rawjson progress as buildx writes it, and what a vertex's name says.

BuildKit writes its SolveStatus events to stderr: buildx 0.13 pretty-prints each event
over several lines, newer buildx writes one event per line, and plain text (the final
`ERROR: failed to solve: ...` and the Dockerfile excerpt before it) can be mixed in.
`RawJsonStream` turns those lines back into events. Standard library only: the warm path
(`prebuild.settle`) reads a build's first events with it, before anything else is loaded;
`progress.ProgressTracker` folds the events into the records of `buildpilot.results`.
"""

from __future__ import annotations

import json
import re
from typing import Any

DEFAULT_STAGE = "stage-0"
"""Stage name given to the steps of a single-stage Dockerfile (BuildKit omits it)."""

_MAX_PENDING_CHARS = 64 << 20  # a "pretty object" longer than this is garbage: give it up

_BRACKET = re.compile(r"\[([^\]\n]*)\][ \t]*(.*)", re.DOTALL)
_COUNT = re.compile(r"(\d+)/(\d+)")

StepName = tuple[str | None, int | None, int | None, str | None]


# --------------------------------------------------------------------------- names


def parse_step_name(name: str) -> StepName:
    """Split a vertex name into (stage, index, total, instruction).

    `[builder 2/4] RUN make` gives `("builder", 2, 4, "RUN make")`. A single-stage
    Dockerfile's `[ 2/11] COPY a b` (BuildKit pads the index) gives stage
    `DEFAULT_STAGE`; a platform prefix (`[linux/arm64 builder 2/4]`) is dropped. Anything
    that is not a Dockerfile step (`[internal] ...`, `exporting to image`) gives
    `(None, None, None, None)`.
    """
    match = _BRACKET.fullmatch(name)
    if match is None:
        return None, None, None, None
    tokens = match.group(1).split()
    count = _COUNT.fullmatch(tokens[-1]) if tokens else None
    if count is None:
        return None, None, None, None
    stages = [t for t in tokens[:-1] if "/" not in t]  # platforms contain "/", stages cannot
    if len(stages) > 1:
        return None, None, None, None
    stage = stages[0] if stages else DEFAULT_STAGE
    return stage, int(count.group(1)), int(count.group(2)), match.group(2) or None


def _bracket_body(name: str) -> tuple[str, str]:
    """`("[context base]" contents, rest)` of a vertex name; `("", name)` without brackets."""
    match = _BRACKET.fullmatch(name)
    if match is None:
        return "", name
    return match.group(1).strip(), match.group(2)


def classify_phase(name: str) -> str:
    """The kind of a vertex that is not a Dockerfile step.

    One of `context`, `cache-import`, `export`, `cache-export`, `metadata`, `other`.
    """
    tag, body = _bracket_body(name)
    kind = "other"
    if body.startswith("load build context"):
        kind = "context"
    elif body.startswith("importing cache manifest from"):
        kind = "cache-import"
    elif body.startswith("exporting cache"):
        kind = "cache-export"
    elif body.startswith(("exporting to ", "pushing ", "sending tarball", "writing image")):
        kind = "export"
    elif body.startswith(("load metadata for", "load build definition", "load .dockerignore")):
        kind = "metadata"
    elif tag.startswith("context ") and body.startswith("load"):
        kind = "context"  # a named build context (`--build-context name=dir`)
    return kind


def past_start(event: dict[str, Any]) -> bool:
    """Whether an event shows a build past its start (the definition, the context and the
    cache manifests loaded, each step's cache key found: a burst of work for buildx and
    BuildKit): a Dockerfile step that is not in the cache, or the export, has begun."""
    for vertex in event.get("vertexes") or ():
        if not isinstance(vertex, dict) or not vertex.get("started") or vertex.get("cached"):
            continue
        name = str(vertex.get("name") or "")
        if parse_step_name(name)[1] is not None or classify_phase(name).endswith("export"):
            return True
    return False


# --------------------------------------------------------------------------- decoder


class RawJsonStream:
    """Incremental decoder of rawjson progress: feed it stderr line by line.

    Handles buildx 0.13's pretty-printed events (an object opened by a line `{` and closed
    by a line `}` at column 0, members indented) and newer one-event-per-line output.
    Every line that is not part of an event is kept, in order, in `text_lines`. A text line
    that lands inside a pretty event (column 0, not `}`) is taken as text and the event
    still decoded. Never raises on bad input.
    """

    def __init__(self) -> None:
        """Start with no pending event and no text."""
        self.text_lines: list[str] = []
        self._pending: list[str] = []
        self._pending_chars = 0

    def feed(self, line: str) -> list[dict[str, Any]]:
        """Take one line (with or without its newline); return the events it completed."""
        if line.endswith("\n"):
            line = line[:-1]
        events: list[dict[str, Any]] = []
        for part in line.split("\n"):  # JSON strings hold no raw newline: safe to split
            event = self._feed_line(part.rstrip("\r"))
            if event is not None:
                events.append(event)
        return events

    def close(self) -> list[str]:
        """End of stream: an unfinished event becomes text. Returns the lines moved."""
        moved = self._pending
        self.text_lines.extend(moved)
        self._pending = []
        self._pending_chars = 0
        return moved

    def _feed_line(self, line: str) -> dict[str, Any] | None:
        if self._pending:
            if line == "}":
                return self._finish_pending(line)
            if line[:1] in (" ", "\t"):
                self._pending.append(line)
                self._pending_chars += len(line)
                if self._pending_chars > _MAX_PENDING_CHARS:
                    self.close()
                return None
        if line == "{":
            self.close()  # a new pretty event while one is open: the open one was garbage
            self._pending = [line]
            self._pending_chars = 1
            return None
        event = _load_object(line) if line.lstrip().startswith("{") else None
        if event is None:
            self.text_lines.append(line)
        return event

    def _finish_pending(self, line: str) -> dict[str, Any] | None:
        lines = [*self._pending, line]
        self._pending = []
        self._pending_chars = 0
        event = _load_object("\n".join(lines))
        if event is None:
            self.text_lines.extend(lines)
        return event


def _load_object(text: str) -> dict[str, Any] | None:
    """The JSON object in `text`, or None when it is not exactly one object."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
