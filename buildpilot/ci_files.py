"""The files a run leaves for CI systems: a JUnit report and a dotenv of image digests.

GitLab's `artifacts:reports` read them; anyone may. They are written after every run, also
by the warm reuse path (`warmbuild.py`), so this module reads runs through the small
protocols of `runview` and imports neither pydantic nor rich.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from buildpilot.runview import ImageView, RunView
from buildpilot.status import Status

DIGEST_PREFIX = "BUILDPILOT_DIGEST_"
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
# Characters XML 1.0 cannot hold, even escaped.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")


def write_ci_files(state_dir: Path, run: RunView) -> None:
    """`junit.xml` and `digests.env` of `run` in `state_dir` (`.buildpilot/`)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "junit.xml").write_text(junit_xml(run), encoding="utf-8")
    (state_dir / "digests.env").write_text(dotenv(run), encoding="utf-8")


def junit_xml(run: RunView) -> str:
    """The run as a JUnit report: suite `buildpilot`, one test case per image.

    A failed image is a failure with its failed step's output; an aborted, skipped or
    interrupted one is skipped, with the reason.
    """
    counts = Counter(_junit_kind(image) for image in run.images)
    suite = ET.Element(
        "testsuite",
        {
            "name": "buildpilot",
            "tests": str(len(run.images)),
            "failures": str(counts["failure"]),
            "errors": "0",
            "skipped": str(counts["skipped"]),
            "time": _seconds(run.duration),
            "timestamp": run.started.isoformat(),
        },
    )
    for image in run.images:
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "name": _xml_text(image.name),
                "classname": "buildpilot.images",
                "time": _seconds(image.duration),
            },
        )
        kind = _junit_kind(image)
        if kind == "failure":
            failure = ET.SubElement(
                case,
                "failure",
                {"message": _xml_text(image.reason or "the build failed"), "type": "BuildFailed"},
            )
            failure.text = _xml_text(_failure_text(image))
        elif kind == "skipped":
            ET.SubElement(case, "skipped", {"message": _xml_text(_skip_message(image))})
        if image.digest:
            ET.SubElement(case, "system-out").text = _xml_text(f"digest: {image.digest}")
    ET.indent(suite)
    body = ET.tostring(suite, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


def _junit_kind(image: ImageView) -> str:
    if image.status is Status.FAILED:
        return "failure"
    if image.status is Status.SUCCESS or (image.status is Status.SKIPPED and image.digest):
        return "passed"  # built, or reused: the image exists
    return "skipped"


def _skip_message(image: ImageView) -> str:
    """`aborted: base failed`; the status alone when there is no other reason."""
    status = image.status.value
    return f"{status}: {image.reason}" if image.reason and image.reason != status else status


def _failure_text(image: ImageView) -> str:
    lines = []
    if image.timeline.failed_step:
        lines.append(f"failed step: {image.timeline.failed_step}")
    if image.timeline.log_tail:
        lines += [""] if lines else []
        lines += [ANSI.sub("", line) for line in image.timeline.log_tail]
    return "\n".join(lines) or (image.reason or "the build failed")


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def _xml_text(text: str) -> str:
    """Text XML 1.0 can hold: terminal colours and other control characters removed."""
    return _NOT_XML.sub("", ANSI.sub("", text))


def dotenv(run: RunView) -> str:
    """`BUILDPILOT_DIGEST_<IMAGE>=sha256:…` for every image with a digest (built or reused),
    for `artifacts:reports:dotenv`. Two names that map to one variable (`a-b`, `a.b`) get
    `_2`, `_3`… on the later ones, in run order."""
    seen: Counter[str] = Counter()
    lines = []
    for image in run.images:
        if not image.digest:
            continue
        key = digest_variable(image.name)
        seen[key] += 1
        if seen[key] > 1:
            key = f"{key}_{seen[key]}"
        lines.append(f"{key}={image.digest}")
    return "".join(f"{line}\n" for line in lines)


def digest_variable(image: str) -> str:
    """`stt-gpu` -> `BUILDPILOT_DIGEST_STT_GPU`."""
    return DIGEST_PREFIX + _NOT_ALNUM.sub("_", image.upper())
