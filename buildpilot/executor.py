"""Runs a plan over a backend: bases first, independent images in parallel, failures contained."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from buildpilot import cachemounts
from buildpilot.backend import Backend, BuildOutcome
from buildpilot.console import Terminal
from buildpilot.errors import BuildpilotError
from buildpilot.plan import Plan
from buildpilot.progress import ProgressTracker
from buildpilot.redact import Redactor, secret_values
from buildpilot.registry import RegistryError
from buildpilot.request import DEFAULT_JOBS, BuildRequest, pinned_ref
from buildpilot.results import ImageResult, PhaseTiming, StepTiming, Timeline
from buildpilot.status import Status
from buildpilot.tags import image_name, tag_name

Clock = Callable[[], datetime]
# A push that failed on a transient registry error (5xx, a timeout, a reset connection), or
# an export that lost a race for a tag in the local image store to a concurrent build, is
# built again (from cache) up to this many times, after 1 s, 2 s, 4 s.
PUSH_RETRIES = 3
PUSH_BACKOFF = 1.0
_PUSH_CONTEXT = re.compile(r"failed to push|pushing|exporting to image", re.IGNORECASE)
_TRANSIENT = re.compile(
    r"\b5\d\d [A-Z]|timeout|timed out|deadline exceeded|connection reset|broken pipe|"
    r"unexpected EOF",
    re.IGNORECASE,
)
_PUSH_FAILURE = re.compile(r"failed to push (\S+?): (?:.*: )?(.+)$")
_STORE_RACE = re.compile(r'image "[^"]+": already exists')


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
    speculative: Mapping[str, str] | None = None,
    clock: Clock = utcnow,
) -> Execution:
    """Build every image of `plan` once its dependencies have succeeded.

    Images in `reused` are not built: their results stand, and their pinned refs reach their
    dependents as if they had just been built. `speculative` maps a base to the pinned ref of
    an existing image built from the same inputs (same fingerprint): its dependents start at
    once on that ref instead of waiting for the base's (cached) rebuild, and are built again
    should the rebuilt base come out with another digest. A base being built releases its
    dependents the same way as soon as BuildKit has exported its image, before its cache
    export and the end of its build.
    """
    scheduler = _Scheduler(plan, backend, terminal, options, clock)
    for name, item in (reused or {}).items():
        scheduler.finish(name, item.result, item.pinned)
    scheduler.speculative.update(speculative or {})
    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool, _signals_interrupt():
        scheduler.run(pool)
    return Execution(
        images=[scheduler.results[n] for n in plan.order], interrupted=scheduler.interrupted
    )


class _Scheduler:
    """The ready-set loop of one run: what is pending, running, done, and pinned."""

    def __init__(
        self,
        plan: Plan,
        backend: Backend,
        terminal: Terminal,
        options: ExecuteOptions,
        clock: Clock,
    ) -> None:
        self.plan = plan
        self.backend = backend
        self.terminal = terminal
        self.tools = _Tools(
            backend, terminal, clock, cachemounts.Injections(), plan.bases, self._exported
        )
        self.jobs = max(1, options.jobs)
        self.fail_fast = options.fail_fast
        self.results: dict[str, ImageResult] = {}
        self.pinned: dict[str, str] = {}  # image -> the ref its dependents use
        self.speculative: dict[str, str] = {}  # base -> ref of an image with its fingerprint
        self.used: dict[str, dict[str, str]] = {}  # image -> the base refs it was built on
        self.pending = list(plan.order)
        self.running: dict[Future[tuple[ImageResult, str | None]], str] = {}
        self.redo: set[str] = set()  # running images to build again when they finish
        self.stop_reason: str | None = None
        self.interrupted = False
        self.lock = threading.Lock()  # guards `early` and `wake`, which build threads set
        self.early: list[tuple[str, str]] = []  # (base, pinned ref) exported, still building
        self.wake: Future[None] = Future()

    def run(self, pool: ThreadPoolExecutor) -> None:
        """Schedule until every image has a result."""
        while self.pending or self.running:
            self._take_exports()
            self._abort_blocked()
            self._start_ready(pool)
            if not self.running:
                continue
            try:
                waiting: list[Future[Any]] = [*self.running, self.wake]
                done, _ = wait(waiting, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                _ignore_further_signals()
                self.interrupted = True
                self.stop_reason = "not started: the run was interrupted"
                self.tools.stop.set()
                self.backend.interrupt()
                continue
            for future in done - {self.wake}:
                name = self.running.pop(future)
                result, ref = future.result()
                self.finish(name, result, ref)

    def _exported(self, base: str, ref: str) -> None:
        """From a build thread: `base` is exported as `ref`; its dependents may start."""
        with self.lock:
            self.early.append((base, ref))
            if not self.wake.done():
                self.wake.set_result(None)

    def _take_exports(self) -> None:
        with self.lock:
            early, self.early = self.early, []
            if self.wake.done():
                self.wake = Future()
        self.speculative.update((base, ref) for base, ref in early if base not in self.results)

    def finish(self, name: str, result: ImageResult, ref: str | None) -> None:
        """Record a result; dependents built on a ref that turned out stale are built again."""
        if name in self.redo and not self.interrupted:
            self.redo.discard(name)
            self.pending.append(name)
            return
        self.results[name] = result
        if ref is not None:
            self.pinned[name] = ref
        self.speculative.pop(name, None)
        if name in self.pending:
            self.pending.remove(name)
        self.terminal.image_finished(result)
        if result.status is Status.SUCCESS:
            self._invalidate_stale(name)
        elif self.fail_fast and self.stop_reason is None and result.status is Status.FAILED:
            self.stop_reason = f"not started: --fail-fast after {name} failed"

    def _invalidate_stale(self, base: str) -> None:
        for image, refs in self.used.items():
            if base in refs and refs[base] != self.pinned.get(base):
                self.terminal.warn(
                    f"{image}: built on {refs[base]}, but {base} came out as "
                    f"{self.pinned.get(base)}; building {image} again"
                )
                refs.pop(base)
                if image in self.results:
                    del self.results[image]
                    self.pending.append(image)
                else:
                    self.redo.add(image)

    def _abort_blocked(self) -> None:
        for name in list(self.pending):
            blocked = _failed_dependency(self.plan.requests[name], self.results)
            if blocked is not None or self.stop_reason is not None:
                self.pending.remove(name)
                self.results[name] = ImageResult(
                    name=name, status=Status.ABORTED, reason=blocked or self.stop_reason
                )
                self.terminal.image_finished(self.results[name])

    def _start_ready(self, pool: ThreadPoolExecutor) -> None:
        for name in [n for n in self.plan.order if n in self.pending]:
            if len(self.running) >= self.jobs:
                return
            refs = self._base_refs(self.plan.requests[name])
            if refs is None:
                continue
            self.pending.remove(name)
            self.used[name] = refs
            request = self.plan.requests[name]
            future = pool.submit(_build, request, refs, self.tools)
            self.running[future] = name

    def _base_refs(self, request: BuildRequest) -> dict[str, str] | None:
        """The refs to build on, or None while a dependency is neither done nor speculated."""
        bases = set(request.image_contexts.values())
        refs: dict[str, str] = {}
        for dep in request.dependencies:
            if dep in self.results and self.results[dep].status in _USABLE:
                if dep in bases:
                    refs[dep] = self.pinned[dep]
            elif dep in bases and dep in self.speculative and dep not in self.results:
                refs[dep] = self.speculative[dep]
            else:
                return None
        return refs


_USABLE = (Status.SUCCESS, Status.SKIPPED)


def _failed_dependency(request: BuildRequest, results: dict[str, ImageResult]) -> str | None:
    for dep in request.dependencies:
        if dep in results and results[dep].status not in _USABLE:
            return f"not built: dependency '{dep}' {results[dep].status.value}"
    return None


@dataclass(frozen=True)
class _Tools:
    """What every build of a run shares."""

    backend: Backend
    terminal: Terminal
    clock: Clock
    injections: cachemounts.Injections
    bases: frozenset[str] = frozenset()  # images that dependents build on
    exported: Callable[[str, str], None] = lambda base, ref: None  # a base's early pinned ref
    stop: threading.Event = field(default_factory=threading.Event)  # set on interrupt


def _build(
    request: BuildRequest, base_refs: dict[str, str], tools: _Tools
) -> tuple[ImageResult, str | None]:
    """Build one image; return its result and the pinned ref its dependents should use."""
    backend, terminal, clock, injections = (
        tools.backend,
        tools.terminal,
        tools.clock,
        tools.injections,
    )
    tracker = ProgressTracker()
    argv = request.argv(base_refs)
    redact = Redactor(secret_values(request))
    terminal.image_started(request.image)
    started = clock()
    early: dict[str, str] = {}  # digest -> pinned ref, once exported (bases only)

    def on_status(status: dict[str, Any]) -> None:
        for step in tracker.feed(status):
            terminal.step_completed(request.image, redact.model(step, StepTiming))
        if request.image in tools.bases and not early and (digest := tracker.exported_digest):
            early[digest] = pin(request, digest, backend)
            tools.exported(request.image, early[digest])

    phases, warnings, retries = [], [], []
    if request.persist_dir is not None:
        phase, problems = injections.inject(
            request.persist_mounts, request.persist_dir, base_refs, backend, builder=request.builder
        )
        phases += [phase] if phase else []
        warnings += problems
    outcome = backend.build(argv, on_status=on_status)
    started = outcome.since or started  # the warm path started it (`prebuild`)
    for attempt in range(1, PUSH_RETRIES + 1):
        transient = _transient_error(request, outcome, tracker.timeline())
        if transient is None:
            break
        delay = _backoff(attempt)
        what, cause = transient
        retries.append(_retry_note(request.image, what, cause, attempt, delay))
        terminal.warn(redact.text(retries[-1]))
        if tools.stop.wait(delay):
            outcome = replace(outcome, interrupted=True)
            break
        tracker = ProgressTracker()
        outcome = backend.build(argv, on_status=on_status)
    after, problems, tag_error = _after_build(request, outcome, base_refs, tools, retries)
    if tag_error is not None and tools.stop.is_set():  # cut short while a tag retry waited
        outcome = replace(outcome, interrupted=True)
    phases += after
    warnings += problems
    completed = clock()
    timeline = tracker.timeline()
    if phases:
        timeline = timeline.model_copy(update={"phases": [*timeline.phases, *phases]})
    status, reason = _status(outcome, timeline, tag_error)
    if (
        status is Status.SUCCESS
    ):  # errors BuildKit tolerated (a cache miss on import) are no failure
        timeline = timeline.model_copy(update={"failed_step": None, "log_tail": []})
    pinned = None
    if status is Status.SUCCESS and outcome.digest and request.image in tools.bases:
        pinned = early.get(outcome.digest) or pin(request, outcome.digest, backend)
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
        warnings=[*retries, *_warnings(request, timeline, warnings)],
    )
    result = redact.model(result, ImageResult)
    for warning in result.warnings[len(retries) :]:  # retries were shown as they came
        terminal.warn(warning)
    return result, pinned


def _after_build(
    request: BuildRequest,
    outcome: BuildOutcome,
    base_refs: dict[str, str],
    tools: _Tools,
    retries: list[str],
) -> tuple[list[PhaseTiming], list[str], str | None]:
    """What follows a build that succeeded: its cache mounts exported, the tags a push adds
    (each retry noted in `retries`). Returns the phases, the warnings, and why tagging
    failed (which fails the image)."""
    if outcome.returncode != 0:
        return [], [], None
    phases: list[PhaseTiming] = []
    warnings: list[str] = []
    if request.persist_dir is not None:
        phase, warnings = cachemounts.export(
            request.persist_mounts,
            request.persist_dir,
            base_refs,
            tools.backend,
            builder=request.builder,
        )
        phases += [phase] if phase else []
    if outcome.digest and request.added_tags:
        phases.append(_add_tags(request, outcome.digest, tools, retries))
        return phases, warnings, phases[-1].error
    return phases, warnings, None


def _add_tags(request: BuildRequest, digest: str, tools: _Tools, retries: list[str]) -> PhaseTiming:
    """Put the pushed manifest under the request's `added_tags`, timed as a phase; its error
    says which tags are missing."""
    names = ", ".join(name for tag in request.added_tags if (name := tag_name(tag)))
    started = time.monotonic()
    error: str | None = None
    try:
        retag_retried(
            tools.backend,
            f"{image_name(request.tags[0])}@{digest}",
            request.added_tags,
            image=request.image,
            warn=tools.terminal.warn,
            notes=retries,
            stop=tools.stop,
        )
    except BuildpilotError as exc:
        error = f"pushed as {request.tags[0]}, but tagging it {names} failed: {exc}"
    duration = time.monotonic() - started
    return PhaseTiming(kind="export", name=f"tagging {names}", duration=duration, error=error)


def retag_retried(
    backend: Backend,
    source: str,
    tags: Sequence[str],
    *,
    image: str,
    warn: Callable[[str], None],
    notes: list[str],
    stop: threading.Event | None = None,
) -> None:
    """`backend.retag_remote`, a transient registry error (5xx, a timeout, a reset) retried
    as a push is, each retry warned and noted in `notes`. Raises the error that would fail
    again, the last one, or the one whose retry `stop` cut short."""
    stop = stop or threading.Event()
    for attempt in range(1, PUSH_RETRIES + 2):  # the first try, then the retries
        try:
            backend.retag_remote(source, tags)
            return
        except BuildpilotError as exc:
            status = exc.status if isinstance(exc, RegistryError) else None
            transient = (status or 0) >= 500 or _TRANSIENT.search(str(exc)) is not None
            if not transient or attempt > PUSH_RETRIES:
                raise
            delay = _backoff(attempt)
            notes.append(_retry_note(image, "tagging", str(exc), attempt, delay))
            warn(notes[-1])
            if stop.wait(delay):
                raise


def _backoff(retry: int) -> float:
    """Seconds to wait before retry number `retry` (1-based) of a push or a tag."""
    return float(PUSH_BACKOFF * 2 ** (retry - 1))


def _retry_note(image: str, what: str, cause: str, attempt: int, delay: float) -> str:
    return f"{image}: {what} failed ({cause}); retry {attempt}/{PUSH_RETRIES} in {delay:g}s"


def _warnings(request: BuildRequest, timeline: Timeline, problems: list[str]) -> list[str]:
    """What to tell about a build that did not fail it: cache mount problems, a failed
    cache export."""
    warnings = [f"{request.image}: {problem}" for problem in problems]
    if timeline.cache_export_failed:
        refs = ", ".join(r.split("ref=", 1)[-1].split(",", 1)[0] for r in request.cache.cache_to)
        warnings.append(f"{request.image}: cache export to {refs} failed; the image itself is fine")
    return warnings


def _status(
    outcome: BuildOutcome, timeline: Timeline, tag_error: str | None
) -> tuple[Status, str | None]:
    if outcome.interrupted:
        return Status.INTERRUPTED, f"interrupted: {tag_error}" if tag_error else "interrupted"
    if outcome.returncode != 0:
        return Status.FAILED, _failure_reason(timeline)
    if tag_error is not None:
        return Status.FAILED, tag_error
    return Status.SUCCESS, None


def _failure_reason(timeline: Timeline) -> str | None:
    """`step failed: <step>` for a Dockerfile step (its log tail says why); a phase such as
    the push names what failed and the registry's answer, e.g. `push of host/a:1 failed: 503
    Service Unavailable`."""
    step = next((s for s in timeline.steps if s.name == timeline.failed_step), None)
    if step is None:
        return None
    if step.stage is not None or not step.error:
        return f"step failed: {step.name}"
    push = _PUSH_FAILURE.search(step.error)
    if push is not None:
        return f"push of {push.group(1)} failed: {push.group(2)}"
    return f"{step.name} failed: {step.error}"


def _transient_error(
    request: BuildRequest, outcome: BuildOutcome, timeline: Timeline
) -> tuple[str, str] | None:
    """(what, why) when a build failed on what may pass: a push on the registry's 5xx, a
    timeout or a reset; an export on a tag another build stored at the same moment."""
    if outcome.returncode == 0 or outcome.interrupted:
        return None
    step = next((s for s in timeline.steps if s.name == timeline.failed_step), None)
    if step is not None and step.stage is not None:
        return None  # a Dockerfile step failed: building again would fail again
    texts = [step.error or ""] if step is not None else []
    texts += [line for line in outcome.text_lines if line.startswith("ERROR")]
    for text in texts:
        race = _STORE_RACE.search(text)
        if race is not None:
            return "export", f"{race.group(0)}: another build stored it at the same moment"
        if request.output != "load" and _PUSH_CONTEXT.search(text) and _TRANSIENT.search(text):
            push = _PUSH_FAILURE.search(text)
            return "push", push.group(2) if push else text.removeprefix("ERROR: ").strip()
    return None


def _error_text(outcome: BuildOutcome) -> str:
    errors = [line for line in outcome.text_lines if line.startswith("ERROR")]
    lines = errors or [line for line in outcome.text_lines if line.strip()]
    return lines[-1].strip() if lines else f"buildx exited with code {outcome.returncode}"


def pin(request: BuildRequest, digest: str, backend: Backend, tags: Collection[str] = ()) -> str:
    """`request.pinned_ref`, tagging a loaded base with its digest tag (unless it is among
    the image's `tags` already)."""
    ref = pinned_ref(request, digest)
    if request.output == "load" and ref not in tags:
        backend.tag(digest, ref)
    return ref


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Make SIGTERM behave like Ctrl-C while builds run (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous_int = signal.getsignal(signal.SIGINT)
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        interrupted = ignored and previous_int is not signal.SIG_IGN
        # Once interrupted, signals stay ignored: the run is recorded and the process ends.
        if not interrupted:
            signal.signal(signal.SIGTERM, previous)
            if previous_int is not None:  # None: not installed from Python
                signal.signal(signal.SIGINT, previous_int)


def _ignore_further_signals() -> None:
    """After the first interrupt, an impatient second Ctrl-C (or SIGTERM) must not cut
    short the ending of the builds and the recording of the run."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
