"""The program's only terminal output: messages, build progress and rendered reports.

Every other module returns data or renderables; `Terminal` prints them. In plain mode
(not a TTY, `CI` set, or `TERM=dumb`) progress is one stable, greppable line per event:

    [stt] started
    [stt] #3 RUN pip install -r requirements.txt  2.1s
    [stt] #4 COPY . .  CACHED
    [stt] success in 12.3s (4/5 cached)

On an interactive terminal a rich Live view shows one line per image in progress instead.
Tracebacks never show local variables: they may hold credentials.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from buildpilot.rawjson import DEFAULT_STAGE  # not repeated in progress lines
from buildpilot.report import (
    STATUS_STYLES,
    cache_figure,
    has_run,
    step_instruction,
)
from buildpilot.results import ImageResult, StepTiming
from buildpilot.status import Status
from buildpilot.texttable import PLAIN_WIDTH, format_duration, truncate

LINE_INSTRUCTION_WIDTH = 100  # characters of an instruction in a plain progress line
LIVE_INSTRUCTION_WIDTH = 50  # characters of an instruction in the live view


def detect_plain(stream: TextIO) -> bool:
    """Whether output should be plain: the stream is no TTY, `CI` is set, or `TERM=dumb`."""
    if os.environ.get("CI"):
        return True
    if os.environ.get("TERM", "").lower() == "dumb":
        return True
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def _no_color(plain: bool) -> bool:
    return plain or bool(os.environ.get("NO_COLOR"))


# --- plain progress lines: keep them stable, CI logs grep them ------------------------------


def step_label(step: StepTiming) -> str:
    """`#3 RUN …` for a Dockerfile step (`builder #3 RUN …` in a named stage), else the vertex."""
    if step.stage is None:
        return truncate(step.name, LINE_INSTRUCTION_WIDTH)
    instruction = truncate(step_instruction(step), LINE_INSTRUCTION_WIDTH)
    number = "" if step.index is None else f"#{step.index} "
    stage = "" if step.stage == DEFAULT_STAGE else f"{step.stage} "
    return f"{stage}{number}{instruction}"


def step_line(image: str, step: StepTiming) -> str:
    """`[image] #3 RUN …  2.1s`, `[image] #3 COPY . .  CACHED`, with `  ERROR: …` on failure."""
    outcome = "CACHED" if step.cached else format_duration(step.duration)
    line = f"[{image}] {step_label(step)}  {outcome}"
    if step.error is not None:
        line += f"  ERROR: {truncate(step.error, LINE_INSTRUCTION_WIDTH)}"
    return line


def finished_line(result: ImageResult) -> str:
    """`[image] success in 12.3s (4/5 cached)`, `[image] aborted: <reason>` and the like."""
    line = f"[{result.name}] {result.status.value}"
    if has_run(result):
        line += f" in {format_duration(result.duration)} ({cache_figure(result)} cached)"
    if result.reason and result.status is not Status.SUCCESS:
        line += f": {truncate(result.reason, LINE_INSTRUCTION_WIDTH * 2)}"
    return line


# --- the live view ---------------------------------------------------------------------------


@dataclass
class _Building:
    """What the live view knows of one image in progress."""

    name: str
    started: float
    spinner: Spinner | None
    last_step: StepTiming | None = None
    steps: int = 0
    cached: int = 0


@dataclass
class _Progress:
    """Images in progress, in start order; guarded by `lock` as workers update it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    building: dict[str, _Building] = field(default_factory=dict)

    def snapshot(self) -> list[_Building]:
        with self.lock:
            return list(self.building.values())


class Terminal:
    """The program's one place that writes to the terminal; safe to call from worker threads."""

    def __init__(
        self,
        *,
        plain: bool | None = None,
        stream: TextIO | None = None,
        err_stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Print to `stream` (stdout) and `err_stream` (stderr); `plain=None` detects the mode."""
        self.plain = (
            detect_plain(stream if stream is not None else sys.stdout) if plain is None else plain
        )
        self._clock = clock
        self._out = self._console(stream, stderr=False)
        self._err = self._console(err_stream, stderr=True)
        self._progress = _Progress()
        self._live: Live | None = None
        self._live_lock = threading.RLock()  # taken before Live's own lock, never after

    def _console(self, stream: TextIO | None, *, stderr: bool) -> Console:
        # A None file follows sys.stdout/sys.stderr, so Live can redirect it above its view.
        width = PLAIN_WIDTH if self.plain and "COLUMNS" not in os.environ else None
        return Console(
            file=stream,
            stderr=stderr,
            no_color=_no_color(self.plain),
            highlight=not self.plain,
            emoji=False,
            markup=False,
            width=width,
            force_interactive=False if self.plain else None,
        )

    # --- messages ---------------------------------------------------------------------------

    def info(self, msg: str) -> None:
        """Print an informational message to stdout."""
        self._out.print(Text(msg), soft_wrap=self.plain)

    def warn(self, msg: str) -> None:
        """Print `warning: <msg>` to stderr."""
        self._err.print(Text(f"warning: {msg}", style="yellow"), soft_wrap=self.plain)

    def error(self, msg: str) -> None:
        """Print `error: <msg>` to stderr."""
        self._err.print(Text(f"error: {msg}", style="bold red"), soft_wrap=self.plain)

    def raw(self, line: str) -> None:
        """Print one line to stdout exactly as given (CI workflow commands, section markers)."""
        self._out.print(Text(line), soft_wrap=True, highlight=False)

    def print(self, *renderables: RenderableType) -> None:
        """Print renderables (tables, report parts, text) to stdout."""
        self._out.print(*renderables)

    def show(self, text: Callable[[int], str | None], *renderables: RenderableType) -> None:
        """Print `renderables`, or where the output takes no escape codes (a pipe, a file, a
        CI log) `text(width)`: the same characters, laid out without rich (None: by rich)."""
        out = self._out
        plain = not out.is_terminal and out.encoding.startswith("utf") and not out.legacy_windows
        laid_out = text(out.width) if plain else None
        if laid_out is None:
            out.print(*renderables)
        else:
            out.file.write(laid_out)
            out.file.flush()

    def exception(self) -> None:
        """Print the exception being handled to stderr, without any local variable."""
        self._err.print_exception(show_locals=False)

    # --- build progress, called from worker threads ------------------------------------------

    def image_started(self, name: str) -> None:
        """An image's build began."""
        spinner = None if self.plain or not self._out.is_interactive else Spinner("dots")
        with self._progress.lock:
            self._progress.building[name] = _Building(name, self._clock(), spinner)
        if self.plain:
            self._line(f"[{name}] started")
        self._refresh()

    def step_completed(self, image: str, step: StepTiming) -> None:
        """A BuildKit vertex of `image` completed (or came from cache, or failed)."""
        with self._progress.lock:
            building = self._progress.building.get(image)
            if building is not None and step.stage is not None:
                building.last_step = step
                building.steps += 1
                building.cached += int(step.cached)
        if self.plain:
            self._line(step_line(image, step))
        self._refresh()

    def image_finished(self, result: ImageResult) -> None:
        """An image ended: built, failed, aborted, skipped or interrupted."""
        with self._progress.lock:
            self._progress.building.pop(result.name, None)
        self._line(finished_line(result), style=STATUS_STYLES.get(result.status, ""))
        if result.timeline.cache_export_failed:
            self._line(f"[{result.name}] warning: cache export failed", style="yellow")
        self._refresh()

    def _refresh(self) -> None:
        # Never called with the progress lock held: Live takes its own lock, then that one.
        # Under the live lock, so no frame is drawn after the view stopped and cleared itself.
        with self._live_lock:
            if self._live is not None:
                self._live.refresh()

    def _line(self, line: str, style: str = "") -> None:
        # One print per line: the console's own lock keeps concurrent lines whole.
        self._out.print(Text(line, style=style), soft_wrap=True)

    @contextmanager
    def live(self) -> Iterator[Terminal]:
        """Show images in progress in a Live view while inside; plain mode prints lines instead."""
        if self.plain or self._live is not None:
            yield self
            return
        live = Live(
            get_renderable=self._render,
            console=self._out,
            transient=True,
            refresh_per_second=8,
        )
        with self._live_lock:
            self._live = live
            live.start(refresh=True)
        try:
            yield self
        finally:
            with self._live_lock:
                live.stop()
                self._live = None

    def _render(self) -> RenderableType:
        building = self._progress.snapshot()
        name_width = max((len(b.name) for b in building), default=0)
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True, width=1)  # spinner
        grid.add_column(overflow="ellipsis")  # the Text is no_wrap: cut, never wrapped
        now = self._clock()
        for image in building:
            marker: RenderableType = image.spinner if image.spinner is not None else "-"
            grid.add_row(marker, _live_line(image, now, name_width))
        return grid


def _live_line(image: _Building, now: float, name_width: int) -> Text:
    """`stt   1m05s  3 steps (2 cached)  #3 RUN pip install …  2.1s`, cut at the screen edge."""
    elapsed = format_duration(max(now - image.started, 0.0))
    counts = f"{image.steps} steps ({image.cached} cached)"
    current = "starting" if image.last_step is None else _live_step(image.last_step)
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(image.name.ljust(name_width), style="bold")
    line.append(f"  {elapsed:>6}  {counts}  {current}")
    return line


def _live_step(step: StepTiming) -> str:
    label = truncate(step_label(step), LIVE_INSTRUCTION_WIDTH)
    outcome = "CACHED" if step.cached else format_duration(step.duration)
    return f"{label}  {outcome}"
