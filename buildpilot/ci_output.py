"""A run's results in the formats CI systems read: GitHub workflow commands and job summary
markdown, GitLab log sections, JUnit XML and dotenv reports.

Every function returns text computed from its arguments alone (no clock, no files, no
printing), so a recorded run renders the same way every time.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime

from buildpilot.ci_files import ANSI
from buildpilot.dockerfile import DockerfileError, parse_dockerfile
from buildpilot.progress import is_cancellation
from buildpilot.report import has_run, step_instruction
from buildpilot.results import ImageResult, PredictionCheck, RunResult, StepTiming
from buildpilot.size_report import github_sizes
from buildpilot.status import Status
from buildpilot.texttable import NOT_APPLICABLE, format_duration, truncate

SLOWEST_STEPS = 3  # steps listed per image in the job summary
SUMMARY_INSTRUCTION_WIDTH = 48  # characters of a step's instruction in the job summary
ANNOTATION_TAIL = 10  # log lines in a failure annotation

STATUS_MARKS: dict[Status, str] = {
    Status.SUCCESS: "✅",
    Status.FAILED: "❌",
    Status.ABORTED: "⛔",
    Status.SKIPPED: "⏭️",
    Status.INTERRUPTED: "⚠️",
}

# Where buildx says the failing instruction is: `Dockerfile:12` (also `services/stt/Dockerfile:12`,
# `stt.Dockerfile:12`) above its excerpt, or `dockerfile parse error on line 12`.
_DOCKERFILE_LINE = re.compile(
    r"(?<![\w.-])[\w./-]*Dockerfile[\w.-]*:(\d+)\b|dockerfile parse error on line (\d+)\b",
    re.IGNORECASE,
)
_SECTION_NAME_DROP = re.compile(r"[^A-Za-z0-9_.-]+")
_SPACES = re.compile(r"\s+")


# --- GitHub Actions ----------------------------------------------------------------------------


def github_group_start(name: str) -> str:
    """`::group::<name>`: the log lines after it fold under `name` until `github_group_end`."""
    return f"::group::{escape_data(name)}"


def github_group_end() -> str:
    """`::endgroup::`."""
    return "::endgroup::"


def escape_data(text: str) -> str:
    """A workflow command's message as GitHub requires: `%`, CR and LF percent-encoded."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: as `escape_data`, and `:` and `,` too."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(
    run: RunResult,
    dockerfiles: Mapping[str, str],
    *,
    texts: Mapping[str, str] | None = None,
) -> list[str]:
    """An `::error` annotation for each failed image, at its failing Dockerfile line.

    `dockerfiles` maps an image to its Dockerfile's path relative to the repository (as
    GitHub shows files); `texts` maps such a path to the Dockerfile's content, to find the
    line whose instruction is the failed step. Without content the line comes from the
    `Dockerfile:12` that buildx reports; without either the annotation is on the file, or,
    when the image's Dockerfile is unknown, on no file.
    """
    lines = []
    for image in run.images:
        if image.status is not Status.FAILED:
            continue
        properties: list[tuple[str, str]] = []
        path = dockerfiles.get(image.name)
        if path is not None:
            properties.append(("file", path))
            line = failed_line(image, (texts or {}).get(path))
            if line is not None:
                properties.append(("line", str(line)))
        properties.append(("title", f"{image.name} failed"))
        head = ",".join(f"{key}={escape_property(value)}" for key, value in properties)
        lines.append(f"::error {head}::{escape_data(_failure_message(image))}")
    return lines


def failed_line(image: ImageResult, dockerfile: str | None) -> int | None:
    """The Dockerfile line of the image's failed step: the one buildx reports in the error
    text, else the line of the instruction that the failed step ran (None if unknown)."""
    step = _failed_step(image)
    for text in (step.error if step else None, image.reason):
        if not text:
            continue
        found = _DOCKERFILE_LINE.search(text)
        if found:
            return int(found.group(1) or found.group(2))
    if step is None or dockerfile is None:
        return None
    return _instruction_line(dockerfile, step)


def _failed_step(image: ImageResult) -> StepTiming | None:
    """The Dockerfile step that failed, by the timeline's record of it."""
    failed = image.timeline.failed_step
    matches = [s for s in image.timeline.steps if s.name == failed and s.stage is not None]
    if matches:
        return matches[-1]
    errors = [
        s
        for s in image.timeline.steps
        if s.stage is not None and s.error and not is_cancellation(s.error)
    ]
    return errors[-1] if errors else None


def _instruction_line(dockerfile: str, step: StepTiming) -> int | None:
    """The first line of the instruction whose text is the step's (in the step's stage, when
    the Dockerfile has such a stage; BuildKit names unnamed stages `stage-<index>`)."""
    try:
        model = parse_dockerfile(dockerfile, path="Dockerfile")
    except DockerfileError:
        return None
    wanted = _flat(step_instruction(step))
    candidates: list[tuple[bool, int]] = []
    for stage in model.stages:
        in_stage = step.stage in {stage.name, f"stage-{stage.index}"}
        candidates.extend(
            (not in_stage, instruction.line)
            for instruction in stage.instructions
            if _flat(instruction.original) == wanted
        )
    return min(candidates)[1] if candidates else None


def _flat(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def _failure_message(image: ImageResult) -> str:
    """The reason the image failed, then the last lines of the failed step's output."""
    parts = [image.reason or "the build failed"]
    tail = [ANSI.sub("", line) for line in image.timeline.log_tail[-ANNOTATION_TAIL:]]
    if tail:
        parts.append("\n".join(tail))
    return "\n".join(parts)


def github_summary(run: RunResult) -> str:
    """Markdown for `$GITHUB_STEP_SUMMARY`: one table row per image, then why the images that
    did not succeed did not, with the failed steps' output."""
    lines = [f"## buildpilot run {_code(run.id)}", "", _summary_headline(run), ""]
    lines += [
        "| image | status | duration | cached | misses predicted / actual "
        "| slowest steps | digest |",
        "|---|---|---:|---:|---|---|---|",
    ]
    lines += [_summary_row(image) for image in run.images]
    lines += _summary_problems(run.images)
    lines += github_sizes(run.images)
    return "\n".join(lines) + "\n"


def _summary_headline(run: RunResult) -> str:
    counts = Counter(image.status for image in run.images)
    tally = ", ".join(f"{counts[s]} {s.value}" for s in Status if counts[s])
    facts = [f"{len(run.images)} images in {format_duration(run.duration)} ({tally})"]
    if run.interrupted:
        facts.append("**interrupted**")
    if run.branch:
        facts.append(f"branch {_code(run.branch)}")
    if run.commit:
        facts.append(f"commit {_code(run.commit[:12])}")
    if run.since:
        facts.append(f"changes since {_code(run.since)}")
    return " · ".join(facts)


def _summary_row(image: ImageResult) -> str:
    ran = has_run(image)
    cells = [
        _code(image.name),
        f"{STATUS_MARKS[image.status]} {image.status.value}",
        format_duration(image.duration) if ran else NOT_APPLICABLE,
        f"{image.steps_cached}/{image.steps_total}" if image.steps_total else NOT_APPLICABLE,
        misses_figure(image.prediction),
        "<br>".join(_slow_step(step) for step in slowest_steps(image)) or NOT_APPLICABLE,
        _code(_short(image.digest)) if image.digest else NOT_APPLICABLE,
    ]
    return "| " + " | ".join(cells) + " |"


def slowest_steps(image: ImageResult, count: int = SLOWEST_STEPS) -> list[StepTiming]:
    """The image's `count` slowest Dockerfile steps that ran (cached ones took no time)."""
    ran = [s for s in image.timeline.steps if s.stage is not None and not s.cached]
    return sorted(ran, key=lambda s: s.duration, reverse=True)[:count]


def misses_figure(check: PredictionCheck | None) -> str:
    """`predicted / actual` cache misses, with the disagreements; `-` without a forecast."""
    if check is None:
        return NOT_APPLICABLE
    predicted = sum(1 for s in check.steps if not s.predicted_cached)
    seen = [s for s in check.steps if s.actual_cached is not None]
    if not seen:
        return f"{predicted} / {NOT_APPLICABLE}"
    actual = sum(1 for s in seen if not s.actual_cached)
    wrong = len(check.disagreements)
    return f"{predicted} / {actual}" + (f" ({wrong} disagree)" if wrong else "")


def _slow_step(step: StepTiming) -> str:
    instruction = truncate(step_instruction(step), SUMMARY_INSTRUCTION_WIDTH)
    return f"{_code(instruction)} {format_duration(step.duration)}"


def _summary_problems(images: Iterable[ImageResult]) -> list[str]:
    """A line per image that did not succeed, and the output of each failed step."""
    lines: list[str] = []
    for image in images:
        if image.status is Status.SUCCESS or (image.status is Status.SKIPPED and image.digest):
            continue
        reason = _cell(image.reason or image.status.value)
        lines += ["", f"**{image.name}** {image.status.value}: {reason}"]
        if image.timeline.log_tail:
            tail = "\n".join(ANSI.sub("", line) for line in image.timeline.log_tail)
            fence = "`" * max(3, _longest_run(tail, "`") + 1)
            lines += [
                "",
                "<details><summary>log tail</summary>",
                "",
                fence,
                tail,
                fence,
                "",
                "</details>",
            ]
    return lines


def _short(digest: str) -> str:
    """`sha256:` and the first 12 hex digits."""
    algorithm, _, hex_digits = digest.rpartition(":")
    return f"{algorithm}:{hex_digits[:12]}" if algorithm else hex_digits[:12]


def _cell(text: str) -> str:
    """Text safe in one markdown table cell or line: one line, `|` and `<` escaped."""
    return _flat(text).replace("|", "\\|").replace("<", "&lt;")


def _code(text: str) -> str:
    """`text` as inline code in a table cell, whatever backticks or pipes it holds."""
    flat = _flat(text).replace("|", "\\|")
    ticks = "`" * (_longest_run(flat, "`") + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{ticks}{pad}{flat}{pad}{ticks}"


def _longest_run(text: str, char: str) -> int:
    runs = re.findall(f"{re.escape(char)}+", text)
    return max((len(r) for r in runs), default=0)


# --- GitLab CI ---------------------------------------------------------------------------------


def gitlab_section_start(
    name: str, header: str, collapsed: bool = True, *, now: datetime | float
) -> str:
    """The marker that opens a collapsible job log section (`now`: a time, or Unix seconds)."""
    option = "[collapsed=true]" if collapsed else ""
    title = _flat(header)
    return f"\x1b[0Ksection_start:{_unix(now)}:{section_name(name)}{option}\r\x1b[0K{title}"


def gitlab_section_end(name: str, *, now: datetime | float) -> str:
    """The marker that closes the section `name`."""
    return f"\x1b[0Ksection_end:{_unix(now)}:{section_name(name)}\r\x1b[0K"


def section_name(name: str) -> str:
    """`name` as a section name GitLab accepts: only `A-Z a-z 0-9 _ . -`."""
    return _SECTION_NAME_DROP.sub("_", name) or "section"


def _unix(now: datetime | float) -> int:
    return int(now.timestamp() if isinstance(now, datetime) else now)
