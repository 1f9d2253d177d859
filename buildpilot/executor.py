"""Runs a plan over a backend: bases first, independent images in parallel, failures contained."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from buildpilot.backend import Backend, BuildOutcome
from buildpilot.console import Terminal
from buildpilot.plan import BuildRequest, Plan
from buildpilot.progress import ProgressTracker
from buildpilot.results import ImageResult, Status

Clock = Callable[[], datetime]
# Builds mostly wait on BuildKit, which throttles steps itself; a few buildx clients at once
# keep independent images overlapping without crowding two cores.
DEFAULT_JOBS = 4


def utcnow() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class ExecuteOptions:
    """How to schedule the builds of a plan."""

    jobs: int = DEFAULT_JOBS
    fail_fast: bool = False


@dataclass(frozen=True)
class Execution:
    """The results of every planned image, in plan order."""

    images: list[ImageResult]
    interrupted: bool


@dataclass(frozen=True)
class Reused:
    """An image that is not built in this run: its result, and the ref dependents pin."""

    result: ImageResult
    pinned: str | None = None


def execute(
    plan: Plan,
    backend: Backend,
    terminal: Terminal,
    options: ExecuteOptions,
    *,
    reused: Mapping[str, Reused] | None = None,
    clock: Clock = utcnow,
) -> Execution:
    """Build every image of `plan` once its dependencies have succeeded.

    Images in `reused` are not built: their results stand, and their pinned refs reach
    their dependents as if they had just been built.
    """
    results: dict[str, ImageResult] = {n: r.result for n, r in (reused or {}).items()}
    pinned = {n: r.pinned for n, r in (reused or {}).items() if r.pinned is not None}
    for result in results.values():
        terminal.image_finished(result)
    pending = [name for name in plan.order if name not in results]
    running: dict[Future[tuple[ImageResult, str | None]], str] = {}
    stop_reason: str | None = None
    interrupted = False
    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool, _signals_interrupt():
        while pending or running:
            for name in list(pending):
                blocked = _failed_dependency(plan.requests[name], results)
                if blocked is not None or stop_reason is not None:
                    pending.remove(name)
                    results[name] = ImageResult(
                        name=name, status=Status.ABORTED, reason=blocked or stop_reason
                    )
                    terminal.image_finished(results[name])
            for name in [n for n in pending if _ready(plan.requests[n], results)]:
                if len(running) >= max(1, options.jobs):
                    break
                pending.remove(name)
                request = plan.requests[name]
                refs = {dep: pinned[dep] for dep in request.image_contexts.values()}
                future = pool.submit(_build, request, refs, backend, terminal, clock)
                running[future] = name
            if not running:
                continue
            try:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                interrupted = True
                stop_reason = "not started: the run was interrupted"
                backend.interrupt()
                continue
            for future in done:
                name = running.pop(future)
                result, ref = future.result()
                results[name] = result
                if ref is not None:
                    pinned[name] = ref
                if (
                    result.status is not Status.SUCCESS
                    and options.fail_fast
                    and stop_reason is None
                ):
                    stop_reason = f"not started: --fail-fast after {name} failed"
    return Execution(images=[results[n] for n in plan.order], interrupted=interrupted)


_USABLE = (Status.SUCCESS, Status.SKIPPED)


def _ready(request: BuildRequest, results: dict[str, ImageResult]) -> bool:
    return all(dep in results and results[dep].status in _USABLE for dep in request.dependencies)


def _failed_dependency(request: BuildRequest, results: dict[str, ImageResult]) -> str | None:
    for dep in request.dependencies:
        if dep in results and results[dep].status not in _USABLE:
            return f"not built: dependency '{dep}' {results[dep].status.value}"
    return None


def _build(
    request: BuildRequest,
    base_refs: dict[str, str],
    backend: Backend,
    terminal: Terminal,
    clock: Clock,
) -> tuple[ImageResult, str | None]:
    """Build one image; return its result and the pinned ref its dependents should use."""
    tracker = ProgressTracker()
    argv = request.argv(base_refs)
    terminal.image_started(request.image)
    started = clock()

    def on_status(status: dict[str, Any]) -> None:
        for step in tracker.feed(status):
            terminal.step_completed(request.image, step)

    outcome = backend.build(argv, on_status=on_status)
    completed = clock()
    timeline = tracker.timeline()
    status, reason = _status(outcome, timeline.failed_step)
    if (
        status is Status.SUCCESS
    ):  # errors BuildKit tolerated (a cache miss on import) are no failure
        timeline = timeline.model_copy(update={"failed_step": None, "log_tail": []})
    warnings = []
    if timeline.cache_export_failed:
        refs = ", ".join(r.split("ref=", 1)[-1].split(",", 1)[0] for r in request.cache.cache_to)
        warnings.append(f"{request.image}: cache export to {refs} failed; the image itself is fine")
    pinned = None
    if status is Status.SUCCESS and outcome.digest:
        pinned = pin(request, outcome.digest, backend)
    result = ImageResult(
        name=request.image,
        status=status,
        started=started,
        completed=completed,
        duration=(completed - started).total_seconds(),
        timeline=timeline,
        digest=outcome.digest,
        tags=list(request.tags),
        reason=reason or (_error_text(outcome) if status is Status.FAILED else None),
        command=["docker", *argv],
        warnings=warnings,
    )
    for warning in warnings:
        terminal.warn(warning)
    terminal.image_finished(result)
    return result, pinned


def _status(outcome: BuildOutcome, failed_step: str | None) -> tuple[Status, str | None]:
    if outcome.interrupted:
        return Status.INTERRUPTED, "interrupted"
    if outcome.returncode != 0:
        return Status.FAILED, f"step failed: {failed_step}" if failed_step else None
    return Status.SUCCESS, None


def _error_text(outcome: BuildOutcome) -> str:
    errors = [line for line in outcome.text_lines if line.startswith("ERROR")]
    lines = errors or [line for line in outcome.text_lines if line.strip()]
    return lines[-1].strip() if lines else f"buildx exited with code {outcome.returncode}"


def pin(request: BuildRequest, digest: str, backend: Backend) -> str:
    """A ref that names exactly this build: by digest in a registry, by a digest tag locally.

    The local image store resolves tags only, so a loaded base gets the tag `sha256-<hex>`.
    """
    if request.output == "push":
        repository = _repository_of(request.tags[0]) if request.tags else request.repository
        return f"{repository}@{digest}"
    local = f"{request.repository}:{digest.replace(':', '-')}"
    backend.tag(digest, local)
    return local


def _repository_of(tag: str) -> str:
    """`host:5000/a/b:v1` -> `host:5000/a/b`."""
    name, _, last = tag.rpartition("/")
    return f"{name}/{last.split(':', 1)[0]}" if name else last.split(":", 1)[0]


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Make SIGTERM behave like Ctrl-C while builds run (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
