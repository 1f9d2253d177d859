"""What the terminal shows: plain progress lines for CI, the live view, messages and errors."""

from __future__ import annotations

import io
import re
import threading
from datetime import UTC, datetime

import pytest
from rich.table import Table

from buildpilot.console import Terminal, detect_plain
from buildpilot.results import ImageResult, StepTiming, Timeline
from buildpilot.status import Status

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PIP = "RUN pip install -r requirements.txt"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class TTY(io.StringIO):
    """A captured stream that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def step(
    index: int,
    instruction: str,
    duration: float,
    *,
    cached: bool = False,
    stage: str = "stage-0",
    error: str | None = None,
) -> StepTiming:
    """A Dockerfile step named the way BuildKit names it."""
    prefix = f"{index}/5" if stage == "stage-0" else f"{stage} {index}/5"
    return StepTiming(
        name=f"[{prefix}] {instruction}",
        stage=stage,
        index=index,
        total=5,
        instruction=instruction,
        started=T0,
        completed=T0,
        duration=duration,
        cached=cached,
        error=error,
    )


def finished(
    name: str,
    status: Status,
    steps: list[StepTiming],
    *,
    duration: float = 0.0,
    reason: str | None = None,
    cache_export_failed: bool = False,
) -> ImageResult:
    """The result of one image with the given steps."""
    timeline = Timeline(steps=steps, cache_export_failed=cache_export_failed)
    return ImageResult(
        name=name, status=status, duration=duration, timeline=timeline, reason=reason
    )


def stt_steps() -> list[StepTiming]:
    """Five steps, four from cache."""
    return [
        step(1, "FROM python:3.11-slim", 0.0, cached=True),
        step(2, "WORKDIR /app", 0.0, cached=True),
        step(3, PIP, 2.14),
        step(4, "COPY . .", 0.0, cached=True),
        step(5, "CMD python -m stt", 0.0, cached=True),
    ]


def plain_terminal() -> tuple[Terminal, io.StringIO, io.StringIO]:
    """A plain terminal writing to captured stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    return Terminal(plain=True, stream=out, err_stream=err), out, err


@pytest.fixture
def interactive_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment that does not by itself ask for plain output or no colour."""
    for name in ("CI", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")


# --- plain mode ----------------------------------------------------------------------------


def test_plain_progress_lines_are_exact() -> None:
    term, out, err = plain_terminal()
    term.image_started("stt")
    for timing in stt_steps():
        term.step_completed("stt", timing)
    term.image_finished(finished("stt", Status.SUCCESS, stt_steps(), duration=12.34))
    assert out.getvalue().splitlines() == [
        "[stt] started",
        "[stt] #1 FROM python:3.11-slim  CACHED",
        "[stt] #2 WORKDIR /app  CACHED",
        f"[stt] #3 {PIP}  2.1s",
        "[stt] #4 COPY . .  CACHED",
        "[stt] #5 CMD python -m stt  CACHED",
        "[stt] success in 12.3s (4/5 cached)",
    ]
    assert err.getvalue() == ""


def test_plain_line_of_a_named_stage_and_a_failed_step() -> None:
    term, out, _ = plain_terminal()
    term.step_completed("api", step(2, "RUN make test", 3.0, stage="builder", error="exit code: 2"))
    assert out.getvalue() == "[api] builder #2 RUN make test  3.0s  ERROR: exit code: 2\n"


def test_plain_line_of_an_internal_step_is_its_vertex_name() -> None:
    term, out, _ = plain_terminal()
    vertex = StepTiming(
        name="[internal] load metadata for docker.io/library/python:3.11",
        stage=None,
        index=None,
        total=None,
        instruction=None,
        started=None,
        completed=None,
        duration=1.5,
        cached=False,
    )
    term.step_completed("api", vertex)
    assert (
        out.getvalue() == "[api] [internal] load metadata for docker.io/library/python:3.11  1.5s\n"
    )


def test_plain_lines_for_images_that_failed_or_never_ran() -> None:
    term, out, _ = plain_terminal()
    failing = [step(1, "FROM golang", 0.0, cached=True), step(2, "RUN make", 3.0, error="exit 2")]
    term.image_finished(
        finished("api", Status.FAILED, failing, duration=3.2, reason="RUN make: exit code 2")
    )
    term.image_finished(finished("web", Status.ABORTED, [], reason="dependency api failed"))
    term.image_finished(finished("docs", Status.SKIPPED, [], reason="nothing to do"))
    assert out.getvalue().splitlines() == [
        "[api] failed in 3.2s (1/2 cached): RUN make: exit code 2",
        "[web] aborted: dependency api failed",
        "[docs] skipped: nothing to do",
    ]


def test_plain_finish_warns_about_a_failed_cache_export() -> None:
    term, out, _ = plain_terminal()
    result = finished("stt", Status.SUCCESS, stt_steps(), duration=12.3, cache_export_failed=True)
    term.image_finished(result)
    assert out.getvalue().splitlines() == [
        "[stt] success in 12.3s (4/5 cached)",
        "[stt] warning: cache export failed",
    ]


def test_plain_lines_are_never_wrapped_and_collapse_newlines() -> None:
    term, out, _ = plain_terminal()
    command = "RUN apt-get update \\\n    && apt-get install -y " + " ".join(["curl"] * 15)
    term.step_completed("api", step(3, command, 20.0))
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("[api] #3 RUN apt-get update \\ && apt-get install -y curl curl")
    assert lines[0].endswith("  20.0s")


def test_plain_lines_are_literal_not_markup() -> None:
    term, out, _ = plain_terminal()
    term.step_completed("api", step(1, "RUN echo [bold]hi[/bold]", 1.0))
    term.info("[red]literal[/red]")
    assert out.getvalue().splitlines() == [
        "[api] #1 RUN echo [bold]hi[/bold]  1.0s",
        "[red]literal[/red]",
    ]


def test_plain_live_is_a_no_op() -> None:
    term, out, _ = plain_terminal()
    with term.live():
        term.image_started("stt")
    assert out.getvalue() == "[stt] started\n"


def test_concurrent_workers_never_interleave_lines() -> None:
    term, out, _ = plain_terminal()
    names = [f"img{n}" for n in range(8)]
    barrier = threading.Barrier(len(names))

    def build(name: str) -> None:
        barrier.wait()
        term.image_started(name)
        for index in range(1, 51):
            term.step_completed(name, step(index, f"RUN step {index} of {name}", 0.5))
        term.image_finished(finished(name, Status.SUCCESS, [], duration=1.0))

    threads = [threading.Thread(target=build, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = {
        f"[{name}] #{i} RUN step {i} of {name}  0.5s" for name in names for i in range(1, 51)
    }
    expected |= {f"[{name}] started" for name in names}
    expected |= {f"[{name}] success in 1.0s (- cached)" for name in names}
    lines = out.getvalue().splitlines()
    assert len(lines) == len(expected)
    assert set(lines) == expected


# --- messages ------------------------------------------------------------------------------


def test_errors_and_warnings_go_to_stderr_info_to_stdout() -> None:
    term, out, err = plain_terminal()
    term.info("building 3 images")
    term.warn("no cache configured")
    term.error("docker is not running")
    assert out.getvalue() == "building 3 images\n"
    assert err.getvalue() == "warning: no cache configured\nerror: docker is not running\n"


def test_print_renders_tables_at_a_readable_width_in_plain_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    term, out, _ = plain_terminal()
    table = Table("image", "slowest step")
    table.add_row("api", "x" * 100)
    term.print(table)
    assert "x" * 100 in out.getvalue()
    assert "\x1b[" not in out.getvalue()


def test_tracebacks_never_show_local_variables() -> None:
    term, out, err = plain_terminal()

    def push(password: str) -> None:
        token = f"Bearer {password}"
        raise RuntimeError("push refused " + str(len(token)))

    try:
        push("hunter" + str(2 * 1000))
    except RuntimeError:
        term.exception()
    assert "RuntimeError: push refused 21" in err.getvalue()
    assert "in push" in err.getvalue()
    assert "hunter2000" not in err.getvalue()
    assert out.getvalue() == ""


# --- mode detection ------------------------------------------------------------------------


def test_plain_when_the_stream_is_not_a_tty(interactive_env: None) -> None:
    assert detect_plain(io.StringIO())
    assert not detect_plain(TTY())
    assert Terminal(stream=io.StringIO()).plain
    assert not Terminal(stream=TTY()).plain


def test_plain_in_ci_or_on_a_dumb_terminal(
    interactive_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    assert Terminal(stream=TTY()).plain
    monkeypatch.delenv("CI")
    monkeypatch.setenv("TERM", "dumb")
    assert Terminal(stream=TTY()).plain


def test_explicit_plain_wins_over_detection(interactive_env: None) -> None:
    assert Terminal(plain=True, stream=TTY()).plain
    assert not Terminal(plain=False, stream=io.StringIO()).plain


def test_colour_on_a_tty_unless_no_color(
    interactive_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    err = TTY()
    Terminal(stream=TTY(), err_stream=err).error("boom")
    assert "\x1b[" in err.getvalue()
    assert "error: boom" in err.getvalue()

    monkeypatch.setenv("NO_COLOR", "1")
    err = TTY()
    Terminal(stream=TTY(), err_stream=err).error("boom")
    assert "error: boom" in err.getvalue()
    assert "\x1b[1;31m" not in err.getvalue()
    assert "\x1b[31m" not in err.getvalue()


# --- live view -----------------------------------------------------------------------------


def test_live_view_shows_images_in_progress_with_step_and_elapsed(
    interactive_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    out, clock = TTY(), Clock()
    term = Terminal(stream=out, err_stream=TTY(), clock=clock)
    assert not term.plain
    with term.live():
        term.image_started("stt")
        term.step_completed("stt", step(3, PIP, 2.14))
        clock.now += 7.5
        term.step_completed("stt", step(4, "COPY . .", 0.0, cached=True))
        text = ANSI.sub("", out.getvalue())
        term.image_finished(finished("stt", Status.SUCCESS, stt_steps(), duration=12.34))
    spinner = "[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]"  # a spinner on a terminal
    assert re.search(f"{spinner} stt    7.5s  2 steps \\(1 cached\\)  #4 COPY . .  CACHED", text)
    assert f"#3 {PIP}  2.1s" in text
    assert "[stt] success in 12.3s (4/5 cached)" in out.getvalue()


def test_live_view_prints_no_step_lines(interactive_env: None) -> None:
    out = TTY()
    term = Terminal(stream=out, err_stream=TTY())
    term.step_completed("stt", step(3, PIP, 2.14))
    assert out.getvalue() == ""


def test_live_view_on_a_pipe_prints_only_finished_lines(interactive_env: None) -> None:
    out, clock = io.StringIO(), Clock()
    term = Terminal(plain=False, stream=out, err_stream=io.StringIO(), clock=clock)
    with term.live():
        term.image_started("stt")
        term.step_completed("stt", step(3, PIP, 2.14))
        term.image_finished(finished("stt", Status.SUCCESS, stt_steps(), duration=12.34))
    text = out.getvalue()
    assert text == "[stt] success in 12.3s (4/5 cached)\n"
