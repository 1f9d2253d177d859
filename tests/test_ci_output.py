"""CI renderers: GitHub annotations and job summary, GitLab sections, JUnit and dotenv."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from buildpilot import ci_files, ci_output
from buildpilot.results import (
    ImageResult,
    PredictedStep,
    PredictionCheck,
    RunResult,
    StepTiming,
    Timeline,
)
from buildpilot.status import Status

DATA = Path(__file__).parent / "data" / "ci"
T0 = datetime(2026, 11, 21, 5, 20, 0, tzinfo=UTC)
DIGEST = "sha256:" + "0123456789abcdef" * 4

STT_DOCKERFILE = """\
# syntax=docker/dockerfile:1
FROM base AS deps
COPY services/stt/requirements.txt /tmp/requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip \\
    pip install -r /tmp/requirements.txt

FROM deps
COPY services/stt/app /app
RUN python -m compileall /app
"""
STT_PIP = "RUN --mount=type=cache,target=/root/.cache/pip     pip install -r /tmp/requirements.txt"
STT_TAIL = [
    "Collecting torch==2.9.0",
    "\x1b[31mERROR: No matching distribution found for torch==2.9.0\x1b[0m",
    "50% done <&> 'quoted' | piped",
]


def step(
    stage: str | None,
    index: int | None,
    instruction: str,
    duration: float,
    *,
    cached: bool = False,
    error: str | None = None,
) -> StepTiming:
    """A BuildKit vertex as the progress parser records it."""
    name = f"[{stage} {index}/9] {instruction}" if stage else f"[internal] {instruction}"
    return StepTiming(
        name=name,
        stage=stage,
        index=index,
        total=9 if stage else None,
        instruction=instruction if stage else None,
        started=T0,
        completed=T0 + timedelta(seconds=duration),
        duration=duration,
        cached=cached,
        error=error,
    )


def make_run() -> RunResult:
    """A run with one image of each outcome: built, failed, aborted, skipped."""
    base = ImageResult(
        name="base",
        status=Status.SUCCESS,
        duration=42.25,
        timeline=Timeline(
            steps=[
                step(None, None, "load build definition from Dockerfile", 0.1),
                step("stage-0", 1, "COPY requirements.txt /tmp/", 0.0, cached=True),
                step("stage-0", 2, "WORKDIR /srv", 0.01),
                step("stage-0", 3, "RUN apt-get update && apt-get install -y python3", 30.5),
                step("stage-0", 4, "COPY | tee `weird` name", 0.4),
                step("stage-0", 5, "RUN pip install -r /tmp/requirements.txt", 8.25),
            ]
        ),
        digest=DIGEST,
        prediction=PredictionCheck(
            since="origin/main",
            affected=True,
            reasons=["images/base/requirements.txt changed"],
            steps=[
                PredictedStep(
                    stage="stage-0",
                    line=2,
                    instruction="COPY",
                    predicted_cached=True,
                    actual_cached=True,
                ),
                PredictedStep(
                    stage="stage-0",
                    line=3,
                    instruction="RUN apt",
                    predicted_cached=True,
                    actual_cached=False,
                ),
                PredictedStep(
                    stage="stage-0",
                    line=4,
                    instruction="RUN pip",
                    predicted_cached=False,
                    actual_cached=False,
                ),
            ],
        ),
    )
    stt = ImageResult(
        name="stt",
        status=Status.FAILED,
        duration=65.5,
        timeline=Timeline(
            steps=[
                step(
                    "deps",
                    1,
                    "COPY services/stt/requirements.txt /tmp/requirements.txt",
                    0.0,
                    cached=True,
                ),
                step(
                    "deps",
                    2,
                    STT_PIP,
                    61.0,
                    error='process "/bin/sh -c pip install" did not '
                    "complete successfully: exit code: 1",
                ),
            ],
            failed_step=f"[deps 2/9] {STT_PIP}",
            log_tail=STT_TAIL,
        ),
        reason=f"step failed: [deps 2/9] {STT_PIP}",
        prediction=PredictionCheck(
            since="origin/main",
            affected=True,
            steps=[
                PredictedStep(
                    stage="deps",
                    line=3,
                    instruction="COPY",
                    predicted_cached=True,
                    actual_cached=True,
                ),
                PredictedStep(
                    stage="deps",
                    line=4,
                    instruction="RUN",
                    predicted_cached=False,
                    actual_cached=False,
                ),
            ],
        ),
    )
    tts = ImageResult(
        name="tts", status=Status.ABORTED, reason="not built: dependency 'stt' failed"
    )
    gateway = ImageResult(
        name="gateway",
        status=Status.SKIPPED,
        reason="unchanged since origin/main",
        prediction=PredictionCheck(
            since="origin/main",
            affected=False,
            steps=[
                PredictedStep(stage="runtime", line=9, instruction="COPY", predicted_cached=True)
            ],
        ),
    )
    return RunResult(
        id="20261121T052000-ab12cd",
        started=T0,
        completed=T0 + timedelta(seconds=108),
        config="/repo/buildpilot.yaml",
        images=[base, stt, tts, gateway],
        branch="feature/vad",
        commit="f" * 40,
        since="origin/main",
    )


# --- GitHub ------------------------------------------------------------------------------------


def test_groups() -> None:
    assert ci_output.github_group_start("build stt\n(2 of 4)") == "::group::build stt%0A(2 of 4)"
    assert ci_output.github_group_end() == "::endgroup::"


def test_escaping() -> None:
    assert ci_output.escape_data("100%\r\nok: a,b") == "100%25%0D%0Aok: a,b"
    assert ci_output.escape_property("100%\r\nok: a,b") == "100%25%0D%0Aok%3A a%2Cb"


def test_annotation_at_the_failed_instruction() -> None:
    path = "examples/speech/services/stt/Dockerfile"
    annotations = ci_output.github_annotations(
        make_run(), {"stt": path, "base": "images/base/Dockerfile"}, texts={path: STT_DOCKERFILE}
    )
    message = "%0A".join(
        [
            f"step failed: [deps 2/9] {STT_PIP}",
            "Collecting torch==2.9.0",
            "ERROR: No matching distribution found for torch==2.9.0",
            "50%25 done <&> 'quoted' | piped",
        ]
    )
    assert annotations == [
        f"::error file={path},line=4,title=stt failed::{message}",
    ]


def test_annotation_properties_are_escaped() -> None:
    run = make_run()
    annotations = ci_output.github_annotations(run, {"stt": "odd,dir/Docker:file"})
    assert annotations[0].startswith("::error file=odd%2Cdir/Docker%3Afile,title=stt failed::")


def test_annotation_line_from_buildx_error_text() -> None:
    image = ImageResult(
        name="api",
        status=Status.FAILED,
        reason="ERROR: failed to solve: dockerfile parse error on line 7: unknown instruction: RUNN",
    )
    run = make_run().model_copy(update={"images": [image]})
    assert ci_output.github_annotations(run, {"api": "api/Dockerfile"}) == [
        "::error file=api/Dockerfile,line=7,title=api failed::ERROR: failed to solve: dockerfile "
        "parse error on line 7: unknown instruction: RUNN"
    ]


def test_annotation_without_a_known_dockerfile() -> None:
    image = ImageResult(name="api", status=Status.FAILED)
    run = make_run().model_copy(update={"images": [image]})
    assert ci_output.github_annotations(run, {}) == ["::error title=api failed::the build failed"]


def test_failed_line_prefers_the_failed_steps_stage() -> None:
    dockerfile = (
        "FROM scratch AS a\nRUN make\n\nFROM scratch AS b\nRUN make\n\nFROM scratch\nRUN make\n"
    )

    def failed(stage: str) -> ImageResult:
        return ImageResult(
            name="x",
            status=Status.FAILED,
            timeline=Timeline(steps=[step(stage, 1, "RUN make", 1.0, error="exit code: 2")]),
        )

    assert ci_output.failed_line(failed("a"), dockerfile) == 2
    assert ci_output.failed_line(failed("b"), dockerfile) == 5
    assert ci_output.failed_line(failed("stage-2"), dockerfile) == 8
    assert ci_output.failed_line(failed("gone"), dockerfile) == 2  # any stage, first line
    assert ci_output.failed_line(failed("a"), "RUNN\n") is None  # unparsable
    assert ci_output.failed_line(failed("a"), None) is None


def test_failed_line_skips_cancelled_steps() -> None:
    image = ImageResult(
        name="x",
        status=Status.FAILED,
        timeline=Timeline(
            steps=[
                step("a", 1, "RUN make", 1.0, error="exit code: 2"),
                step("b", 1, "RUN sleep 9", 1.0, error="exit code: 137: context canceled"),
            ]
        ),
    )
    dockerfile = "FROM scratch AS a\nRUN make\nFROM scratch AS b\nRUN sleep 9\n"
    assert ci_output.failed_line(image, dockerfile) == 2


def test_summary_matches_the_recorded_file() -> None:
    expected = (DATA / "github_summary.md").read_text(encoding="utf-8")
    assert ci_output.github_summary(make_run()) == expected


def test_summary_rows() -> None:
    rows = [
        line for line in ci_output.github_summary(make_run()).splitlines() if line.startswith("| `")
    ]
    assert [row.split(" | ")[1] for row in rows] == [
        "✅ success",
        "❌ failed",
        "⛔ aborted",
        "⏭️ skipped",
    ]
    base = rows[0].split(" | ")
    assert base[3:5] == ["1/5", "1 / 2 (1 disagree)"]
    assert base[5].count("<br>") == 2  # three slowest steps, the cached one not among them
    assert base[6] == "`sha256:0123456789ab` |"


def test_misses_figure() -> None:
    assert ci_output.misses_figure(None) == "-"
    not_built = PredictionCheck(
        since="main",
        affected=True,
        steps=[PredictedStep(stage="s", line=1, instruction="RUN", predicted_cached=False)],
    )
    assert ci_output.misses_figure(not_built) == "1 / -"


# --- GitLab ------------------------------------------------------------------------------------


def test_sections() -> None:
    start = ci_output.gitlab_section_start("build stt/gpu", "Build stt\n(gpu)", now=1763702400.9)
    assert (
        start
        == "\x1b[0Ksection_start:1763702400:build_stt_gpu[collapsed=true]\r\x1b[0KBuild stt (gpu)"
    )
    expanded = ci_output.gitlab_section_start("a.b-c_d", "A", collapsed=False, now=T0)
    assert expanded == f"\x1b[0Ksection_start:{int(T0.timestamp())}:a.b-c_d\r\x1b[0KA"
    assert ci_output.gitlab_section_end("build stt/gpu", now=T0) == (
        f"\x1b[0Ksection_end:{int(T0.timestamp())}:build_stt_gpu\r\x1b[0K"
    )
    assert ci_output.section_name("§§") == "_"
    assert ci_output.section_name("") == "section"


def test_junit() -> None:
    text = ci_files.junit_xml(make_run())
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    suite = ET.fromstring(text)  # noqa: S314 - our own output
    assert suite.tag == "testsuite"
    assert suite.attrib == {
        "name": "buildpilot",
        "tests": "4",
        "failures": "1",
        "errors": "0",
        "skipped": "2",
        "time": "108.000",
        "timestamp": "2026-11-21T05:20:00+00:00",
    }
    cases = suite.findall("testcase")
    assert [(c.get("name"), c.get("classname"), c.get("time")) for c in cases] == [
        ("base", "buildpilot.images", "42.250"),
        ("stt", "buildpilot.images", "65.500"),
        ("tts", "buildpilot.images", "0.000"),
        ("gateway", "buildpilot.images", "0.000"),
    ]
    base, stt = cases[:2]
    assert base.find("failure") is None
    assert base.findtext("system-out") == f"digest: {DIGEST}"
    failure = stt.find("failure")
    assert failure is not None
    assert failure.get("message") == f"step failed: [deps 2/9] {STT_PIP}"
    assert failure.text == "\n".join(
        [
            f"failed step: [deps 2/9] {STT_PIP}",
            "",
            "Collecting torch==2.9.0",
            "ERROR: No matching distribution found for torch==2.9.0",
            "50% done <&> 'quoted' | piped",
        ]
    )
    skipped = [case.find("skipped") for case in cases]
    assert [s.get("message") if s is not None else None for s in skipped] == [
        None,
        None,
        "aborted: not built: dependency 'stt' failed",
        "skipped: unchanged since origin/main",
    ]


def test_junit_drops_what_xml_cannot_hold() -> None:
    image = ImageResult(
        name="api",
        status=Status.FAILED,
        reason="bell\x07 and \x1b[1mbold\x1b[0m",
        timeline=Timeline(log_tail=["nul\x00 here", "fine"]),
    )
    run = make_run().model_copy(update={"images": [image]})
    suite = ET.fromstring(ci_files.junit_xml(run))  # noqa: S314 - our own output
    failure = suite.find("testcase/failure")
    assert failure is not None
    assert failure.get("message") == "bell and bold"
    assert failure.text == "nul here\nfine"


def test_dotenv() -> None:
    reused = ImageResult(name="gateway.web", status=Status.SKIPPED, digest="sha256:" + "e" * 64)
    run = make_run()
    run = run.model_copy(update={"images": [*run.images, reused]})
    assert ci_files.dotenv(run) == (
        f"BUILDPILOT_DIGEST_BASE={DIGEST}\nBUILDPILOT_DIGEST_GATEWAY_WEB=sha256:{'e' * 64}\n"
    )


def test_dotenv_names_that_collide() -> None:
    images = [
        ImageResult(name=name, status=Status.SUCCESS, digest=f"sha256:{n}")
        for n, name in enumerate(["stt-gpu", "stt.gpu", "stt_gpu"])
    ]
    run = make_run().model_copy(update={"images": images})
    assert ci_files.dotenv(run).splitlines() == [
        "BUILDPILOT_DIGEST_STT_GPU=sha256:0",
        "BUILDPILOT_DIGEST_STT_GPU_2=sha256:1",
        "BUILDPILOT_DIGEST_STT_GPU_3=sha256:2",
    ]


@pytest.mark.parametrize(
    ("image", "variable"),
    [("stt", "BUILDPILOT_DIGEST_STT"), ("a-b.c_d", "BUILDPILOT_DIGEST_A_B_C_D")],
)
def test_digest_variable(image: str, variable: str) -> None:
    assert ci_files.digest_variable(image) == variable
