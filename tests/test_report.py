"""What a user reads in the run report: summary rows, image details and the JSON record."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console, RenderableType

from buildpilot.report import image_detail, plain_summary, run_json, run_report, summary_table
from buildpilot.results import (
    ImageResult,
    PhaseTiming,
    RunResult,
    StageTiming,
    StepTiming,
    Timeline,
)
from buildpilot.status import Status
from buildpilot.texttable import format_duration, short_digest, truncate

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DIGEST = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
PIP = "RUN pip install -r requirements.txt"


def step(
    index: int,
    instruction: str,
    duration: float,
    *,
    cached: bool = False,
    stage: str = "stage-0",
    total: int = 5,
    error: str | None = None,
) -> StepTiming:
    """A Dockerfile step named the way BuildKit names it."""
    prefix = f"{index}/{total}" if stage == "stage-0" else f"{stage} {index}/{total}"
    return StepTiming(
        name=f"[{prefix}] {instruction}",
        stage=stage,
        index=index,
        total=total,
        instruction=instruction,
        started=T0,
        completed=T0 + timedelta(seconds=duration),
        duration=duration,
        cached=cached,
        error=error,
    )


def internal(name: str, duration: float) -> StepTiming:
    """An internal BuildKit vertex, outside the Dockerfile's steps."""
    return StepTiming(
        name=name,
        stage=None,
        index=None,
        total=None,
        instruction=None,
        started=T0,
        completed=T0,
        duration=duration,
        cached=False,
    )


def api_image() -> ImageResult:
    """A success: 4 of 5 steps cached, pip is the slowest, and the cache export failed."""
    steps = [
        internal("[internal] load build definition from Dockerfile", 0.1),
        step(1, "FROM docker.io/library/python:3.11-slim", 0.0, cached=True),
        step(2, "WORKDIR /app", 0.0, cached=True),
        step(3, "COPY requirements.txt .", 0.0, cached=True),
        step(4, PIP, 8.04),
        step(5, "COPY . .", 0.0, cached=True),
    ]
    phases = [
        PhaseTiming(kind="context", name="load build context", duration=0.4),
        PhaseTiming(kind="cache-import", name="importing cache manifest", duration=1.2),
        PhaseTiming(kind="export", name="exporting to image", duration=2.0),
        PhaseTiming(
            kind="cache-export",
            name="exporting cache to registry",
            duration=3.1,
            error="unexpected status: 401 Unauthorized",
        ),
    ]
    stage = StageTiming(name="stage-0", started=T0, completed=T0, duration=8.5, steps=5, cached=4)
    timeline = Timeline(steps=steps, stages=[stage], phases=phases, cache_export_failed=True)
    return ImageResult(
        name="api",
        status=Status.SUCCESS,
        duration=12.3,
        timeline=timeline,
        digest=DIGEST,
        tags=["registry.local/api:main"],
    )


def worker_image() -> ImageResult:
    """A failure in the builder stage, with the last lines of its log."""
    steps = [
        step(1, "FROM golang:1.22", 0.0, cached=True, stage="builder", total=3),
        step(2, "RUN make test", 2.9, stage="builder", total=3, error="exit code: 2"),
    ]
    stage = StageTiming(name="builder", started=T0, completed=T0, duration=2.9, steps=2, cached=1)
    timeline = Timeline(
        steps=steps,
        stages=[stage],
        failed_step="[builder 2/3] RUN make test",
        log_tail=[
            "FAIL: TestParse (0.00s)",
            "parse_test.go:12: got 1, want 2",
            "make: *** Error 2",
        ],
    )
    return ImageResult(
        name="worker",
        status=Status.FAILED,
        duration=3.2,
        timeline=timeline,
        reason="step RUN make test failed: exit code 2",
    )


def web_image() -> ImageResult:
    """Never built: its dependency failed."""
    return ImageResult(name="web", status=Status.ABORTED, reason="dependency worker failed")


def docs_image() -> ImageResult:
    """Never built: nothing to do."""
    return ImageResult(name="docs", status=Status.SKIPPED, reason="no changes since last build")


def make_run() -> RunResult:
    """A run of four images: success, failed, aborted and skipped."""
    return RunResult(
        id="20240501-1200-abcd",
        started=T0,
        completed=T0 + timedelta(seconds=62),
        config="buildpilot.yaml",
        images=[api_image(), worker_image(), web_image(), docs_image()],
        branch="main",
    )


def render(*renderables: RenderableType) -> str:
    """The plain text a user sees at 120 columns, without colour."""
    console = Console(width=120, no_color=True, record=True, file=io.StringIO())
    for renderable in renderables:
        console.print(renderable)
    return console.export_text()


def cells(text: str, first_cell: str) -> list[str]:
    """The stripped cells of the table row whose first cell is `first_cell`."""
    for line in text.splitlines():
        row = [cell.strip() for cell in re.split("[│┃]", line.strip().strip("│┃"))]
        if row and row[0] == first_cell:
            return row
    raise AssertionError(f"no row starting with {first_cell!r} in:\n{text}")


# --- helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.0, "0.0s"), (12.34, "12.3s"), (59.94, "59.9s"), (62.0, "1m02s"), (3725.0, "1h02m")],
)
def test_format_duration(seconds: float, expected: str) -> None:
    assert format_duration(seconds) == expected


def test_short_digest_keeps_12_hex_digits() -> None:
    assert short_digest(DIGEST) == "0123456789ab"
    assert short_digest(None) == "-"


def test_truncate_collapses_whitespace_and_marks_the_cut() -> None:
    assert truncate("RUN apt-get update \\\n    && apt-get install -y curl", 200) == (
        "RUN apt-get update \\ && apt-get install -y curl"
    )
    assert truncate("RUN " + "x" * 100, 10) == "RUN xxxxx…"
    assert len(truncate("RUN " + "x" * 100, 10)) == 10


# --- summary -------------------------------------------------------------------------------


def test_summary_title_names_the_run_and_its_wall_time() -> None:
    text = render(summary_table(make_run()))
    assert "run 20240501-1200-abcd: 4 images in 1m02s" in text
    assert "1 success, 1 failed, 1 aborted, 1 skipped" in text


def test_summary_title_says_when_the_run_was_interrupted() -> None:
    run = make_run().model_copy(update={"interrupted": True})
    assert "4 images in 1m02s (interrupted)" in render(summary_table(run))


def test_summary_rows() -> None:
    text = render(summary_table(make_run()))
    assert cells(text, "image") == [
        "image",
        "status",
        "duration",
        "cached",
        "slowest step",
        "digest",
    ]
    assert cells(text, "api") == ["api", "success", "12.3s", "4/5", f"{PIP} 8.0s", "0123456789ab"]
    assert cells(text, "worker") == ["worker", "failed", "3.2s", "1/2", "RUN make test 2.9s", "-"]
    assert cells(text, "web") == ["web", "aborted", "-", "-", "-", "-"]
    assert cells(text, "docs") == ["docs", "skipped", "-", "-", "-", "-"]


def long_step_image() -> ImageResult:
    """An image whose slowest step is too long for its summary cell."""
    long_run = "RUN " + " && ".join(f"apt-get install -y package{n}" for n in range(20))
    return ImageResult(
        name="big",
        status=Status.SUCCESS,
        duration=90.0,
        timeline=Timeline(steps=[step(1, long_run, 80.0)]),
    )


@pytest.mark.parametrize("width", [120, 200])
def test_the_summary_reads_the_same_in_a_pipe_without_rich(width: int) -> None:
    """A pipe or a CI log gets the summary laid out without rich: the very same text."""
    for run in (make_run(), make_run().model_copy(update={"images": [long_step_image()]})):
        console = Console(width=width, no_color=True, record=True, file=io.StringIO())
        console.print(summary_table(run))
        text = plain_summary(run, width)
        assert text is not None
        assert text == console.export_text()


def test_summary_row_order_follows_the_run() -> None:
    text = render(summary_table(make_run()))
    positions = [text.index(f"│ {name} ") for name in ("api", "worker", "web", "docs")]
    assert positions == sorted(positions)


def test_summary_truncates_a_long_slowest_step_on_one_line() -> None:
    run = make_run().model_copy(update={"images": [long_step_image()]})
    text = render(summary_table(run))
    row = cells(text, "big")
    assert row[4].startswith("RUN apt-get install -y package0")
    assert "…" in row[4]
    assert row[4].endswith("1m20s")
    assert all(len(line) <= 120 for line in text.splitlines())


# --- image detail --------------------------------------------------------------------------


def test_detail_of_a_success_shows_stages_steps_and_phases() -> None:
    text = render(*image_detail(api_image()))
    assert "api success in 12.3s (4/5 cached)" in text
    assert f"digest: {DIGEST}" in text
    assert "tags: registry.local/api:main" in text
    assert cells(text, "stage-0")[1:] == ["8.5s", "4/5"]
    assert cells(text, "1") == [
        "1",
        "stage-0",
        "FROM docker.io/library/python:3.11-slim",
        "0.0s",
        "CACHED",
    ]
    assert cells(text, "4") == ["4", "stage-0", PIP, "8.0s", "miss"]
    assert cells(text, "5") == ["5", "stage-0", "COPY . .", "0.0s", "CACHED"]
    assert "load build definition" not in text  # internal vertices are phases, not steps


def test_step_rows_of_cached_steps_say_cached() -> None:
    text = render(*image_detail(api_image()))
    for index in ("1", "2", "3", "5"):
        assert cells(text, index)[-1] == "CACHED"


def test_detail_shows_phase_durations_and_a_failed_cache_export() -> None:
    text = render(*image_detail(api_image()))
    assert cells(text, "context transfer") == [
        "context transfer",
        "load build context",
        "0.4s",
        "ok",
    ]
    assert cells(text, "cache import")[2:] == ["1.2s", "ok"]
    assert cells(text, "export") == ["export", "exporting to image", "2.0s", "ok"]
    assert cells(text, "cache export") == [
        "cache export",
        "exporting cache to registry",
        "3.1s",
        "FAILED: unexpected status: 401 Unauthorized",
    ]
    assert "cache export failed: the image was built, its cache was not saved" in text


def test_detail_of_a_failure_shows_the_failed_step_and_log_tail() -> None:
    text = render(*image_detail(worker_image()))
    assert "worker failed in 3.2s (1/2 cached)" in text
    assert "reason: step RUN make test failed: exit code 2" in text
    assert "failed step: [builder 2/3] RUN make test" in text
    assert "log tail (last 3 lines)" in text
    lines = text.splitlines()
    tail = ["FAIL: TestParse (0.00s)", "parse_test.go:12: got 1, want 2", "make: *** Error 2"]
    found = [next(i for i, line in enumerate(lines) if entry in line) for entry in tail]
    assert found == sorted(found)
    assert cells(text, "2") == ["2", "builder", "RUN make test", "2.9s", "ERROR"]
    assert "cache export failed" not in text


def test_detail_of_an_aborted_image_shows_its_reason_only() -> None:
    text = render(*image_detail(web_image()))
    assert "web aborted" in text
    assert "reason: dependency worker failed" in text
    assert " in " not in text.split("reason")[0]  # it never ran: no duration
    for absent in ("steps", "stages", "phases", "failed step", "log tail"):
        assert absent not in text


def test_detail_of_a_skipped_image_shows_its_reason() -> None:
    assert "reason: no changes since last build" in render(*image_detail(docs_image()))


def test_detail_truncates_long_instructions_to_one_line() -> None:
    heredoc = "RUN <<EOF\n" + "\n".join(f"echo line {n}" for n in range(40)) + "\nEOF"
    image = ImageResult(
        name="long",
        status=Status.SUCCESS,
        duration=1.0,
        timeline=Timeline(steps=[step(1, heredoc, 1.0)]),
    )
    text = render(*image_detail(image))
    row = cells(text, "1")
    assert row[2].startswith("RUN <<EOF echo line 0 echo line 1")
    assert row[2].endswith("…")
    assert row[3:] == ["1.0s", "miss"]
    assert all(len(line) <= 120 for line in text.splitlines())


def test_log_lines_are_shown_literally() -> None:
    image = worker_image()
    timeline = image.timeline.model_copy(update={"log_tail": ["[red]not markup[/red]"]})
    text = render(*image_detail(image.model_copy(update={"timeline": timeline})))
    assert "[red]not markup[/red]" in text


# --- whole run -----------------------------------------------------------------------------


def test_run_report_gives_details_then_the_summary() -> None:
    text = render(*run_report(make_run()))
    order = [
        text.index("api success in 12.3s"),
        text.index("failed step: [builder 2/3] RUN make test"),
        text.index("reason: dependency worker failed"),
        text.index("reason: no changes since last build"),
        text.index("run 20240501-1200-abcd: 4 images in 1m02s"),
    ]
    assert order == sorted(order)


def test_run_json_is_the_full_record_plus_computed_figures() -> None:
    run = make_run()
    data = json.loads(run_json(run))
    assert data["duration"] == 62.0
    api, worker, web, _docs = data["images"]
    assert (api["steps_total"], api["steps_cached"], api["duration"]) == (5, 4, 12.3)
    assert (worker["steps_total"], worker["steps_cached"]) == (2, 1)
    assert (web["steps_total"], web["steps_cached"], web["duration"]) == (0, 0, 0.0)
    assert worker["timeline"]["log_tail"][-1] == "make: *** Error 2"
    assert api["timeline"]["phases"][3]["error"] == "unexpected status: 401 Unauthorized"
    assert run_json(run).startswith('{\n  "id": "20240501-1200-abcd",')


def test_run_json_without_computed_figures_is_the_record() -> None:
    run = make_run()
    data = json.loads(run_json(run))
    del data["duration"]
    for image in data["images"]:
        del image["steps_total"], image["steps_cached"]
    assert RunResult.model_validate(data) == run
