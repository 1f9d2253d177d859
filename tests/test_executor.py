"""The scheduler against a fake backend: order, parallel limits, failures, speculation."""

from __future__ import annotations

import io
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from buildpilot import executor
from buildpilot.backend import BuildOutcome, StatusCallback
from buildpilot.console import Terminal
from buildpilot.executor import ExecuteOptions, execute
from buildpilot.plan import Plan
from buildpilot.registry import RegistryError
from buildpilot.request import BuildRequest
from buildpilot.status import Status
from tests.quiet_backend import QuietBackend


class FakeBackend(QuietBackend):
    """Builds take `delay` seconds; images in `failing` fail; digests are `sha256:<name><n>`."""

    def __init__(
        self,
        *,
        failing: Sequence[str] = (),
        delay: float = 0.05,
        digests: dict[str, str] | None = None,
        exported: dict[str, str] | None = None,
    ) -> None:
        self.failing = set(failing)
        self.delay = delay
        self.digests = digests or {}
        self.exported = exported or {}  # image -> digest BuildKit reports exported at once
        self.spans: dict[str, tuple[float, float]] = {}  # image -> its last build's start, end
        self.started: list[str] = []
        self.argvs: dict[str, list[list[str]]] = {}
        self.running = 0
        self.most_running = 0
        self.lock = threading.Lock()

    def build(self, argv: Sequence[str], *, on_status: StatusCallback) -> BuildOutcome:
        name = (
            argv[argv.index("--tag") + 1].split("/")[-1].split(":")[0]
            if "--tag" in argv
            else "helper"
        )
        with self.lock:
            self.started.append(name)
            self.argvs.setdefault(name, []).append(list(argv))
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        start = time.monotonic()
        if name in self.exported:  # the image is out; its cache export takes the delay
            for event in export_events(self.exported[name]):
                on_status(event)
        time.sleep(self.delay)
        with self.lock:
            self.running -= 1
            self.spans[name] = (start, time.monotonic())
        if name in self.failing:
            return BuildOutcome(returncode=1, text_lines=[f"ERROR: {name} broke"])
        digest = self.digests.get(name, f"sha256:{name}")
        return BuildOutcome(returncode=0, metadata={"containerimage.digest": digest})


def export_events(digest: str) -> list[dict[str, Any]]:
    """BuildKit's events for an image export that finished and named `digest`."""
    vertex = {"digest": "sha256:x", "name": "exporting to image"}
    stamp = "2026-01-01T00:00:00Z"
    return [
        {"vertexes": [{**vertex, "started": stamp}]},
        {"statuses": [{"id": f"exporting manifest {digest}", "vertex": "sha256:x"}]},
        {"vertexes": [{**vertex, "started": stamp, "completed": stamp}]},
    ]


def request(name: str, *bases: str) -> BuildRequest:
    return BuildRequest(
        image=name,
        repository=f"r/{name}",
        dependencies=bases,
        context=Path("/ctx"),
        dockerfile=Path("/ctx/Dockerfile"),
        output="load",
        tags=(f"r/{name}:latest",),
        image_contexts={base: base for base in bases},
    )


def plan(*requests: BuildRequest, waves: list[list[str]]) -> Plan:
    return Plan(requests={r.image: r for r in requests}, waves=waves)


def terminal() -> Terminal:
    return Terminal(plain=True, stream=io.StringIO(), err_stream=io.StringIO())


DIAMOND = plan(
    request("base"),
    request("stt", "base"),
    request("tts", "base"),
    request("edge", "stt", "tts"),
    waves=[["base"], ["stt", "tts"], ["edge"]],
)


def statuses(images: Any) -> dict[str, Status]:
    return {i.name: i.status for i in images}


def test_bases_first_and_dependents_pinned_to_what_was_built() -> None:
    backend = FakeBackend()
    result = execute(DIAMOND, backend, terminal(), ExecuteOptions(jobs=4))
    assert statuses(result.images) == dict.fromkeys(["base", "stt", "tts", "edge"], Status.SUCCESS)
    assert backend.started[0] == "base"
    assert backend.started[-1] == "edge"
    assert "base=docker-image://r/base:sha256-base" in backend.argvs["stt"][0]
    assert backend.most_running == 2  # stt and tts together


def test_jobs_limit_parallel_builds() -> None:
    backend = FakeBackend()
    execute(DIAMOND, backend, terminal(), ExecuteOptions(jobs=1))
    assert backend.most_running == 1


def test_a_failure_aborts_only_its_dependents() -> None:
    backend = FakeBackend(failing=["stt"])
    result = execute(DIAMOND, backend, terminal(), ExecuteOptions(jobs=4))
    assert statuses(result.images) == {
        "base": Status.SUCCESS,
        "stt": Status.FAILED,
        "tts": Status.SUCCESS,
        "edge": Status.ABORTED,
    }
    edge = next(i for i in result.images if i.name == "edge")
    assert edge.reason == "not built: dependency 'stt' failed"
    assert "edge" not in backend.started


def test_fail_fast_starts_nothing_more() -> None:
    backend = FakeBackend(failing=["base"])
    independent = plan(
        request("base"), request("other"), request("late"), waves=[["base", "other", "late"]]
    )
    result = execute(independent, backend, terminal(), ExecuteOptions(jobs=1, fail_fast=True))
    assert statuses(result.images)["base"] is Status.FAILED
    assert backend.started == ["base"]
    assert {i.reason for i in result.images if i.status is Status.ABORTED} == {
        "not started: --fail-fast after base failed"
    }


def test_speculation_starts_dependents_at_once() -> None:
    backend = FakeBackend(delay=0.2)
    result = execute(
        DIAMOND,
        backend,
        terminal(),
        ExecuteOptions(jobs=4),
        speculative={"base": "r/base:sha256-base"},
    )
    assert statuses(result.images) == dict.fromkeys(["base", "stt", "tts", "edge"], Status.SUCCESS)
    assert set(backend.started[:3]) == {"base", "stt", "tts"}  # not waiting for base
    assert len(backend.argvs["stt"]) == 1  # the speculated digest was right: built once


def test_a_stale_speculation_builds_the_dependents_again() -> None:
    backend = FakeBackend(delay=0.1)
    out = io.StringIO()
    result = execute(
        DIAMOND,
        backend,
        Terminal(plain=True, stream=out, err_stream=out),
        ExecuteOptions(jobs=4),
        speculative={"base": "r/base:sha256-stale"},
    )
    assert statuses(result.images) == dict.fromkeys(["base", "stt", "tts", "edge"], Status.SUCCESS)
    assert len(backend.argvs["stt"]) == 2
    assert "base=docker-image://r/base:sha256-base" in backend.argvs["stt"][-1]
    assert "building stt again" in out.getvalue()


def test_a_cache_mount_is_seeded_once_per_run(tmp_path: Path) -> None:
    from buildpilot.cachemounts import Injections, PersistedMount

    (tmp_path / "pip").mkdir()
    backend = FakeBackend()
    injections = Injections()
    mounts = (PersistedMount("pip", runner_image="r/base:1"),)
    first, _ = injections.inject(mounts, tmp_path, {}, backend, builder=None)
    again, _ = injections.inject(mounts, tmp_path, {}, backend, builder=None)
    assert first is not None
    assert again is not None
    assert first.name.startswith("injected 1 cache mount(s)")
    assert again.name == f"{first.name} (earlier in this run)"
    assert len(backend.started) == 1  # one seeding build, not two


BASE = "sha256:" + "b" * 64


def test_an_exported_base_releases_its_dependents_before_its_build_ends() -> None:
    backend = FakeBackend(delay=0.3, digests={"base": BASE}, exported={"base": BASE})
    result = execute(DIAMOND, backend, terminal(), ExecuteOptions(jobs=4))
    assert statuses(result.images) == dict.fromkeys(["base", "stt", "tts", "edge"], Status.SUCCESS)
    base_end = backend.spans["base"][1]
    assert backend.spans["stt"][0] < base_end  # started during the base's cache export
    assert backend.spans["tts"][0] < base_end
    assert len(backend.argvs["stt"]) == 1  # the exported digest was the final one
    assert f"base=docker-image://r/base:{BASE.replace(':', '-')}" in backend.argvs["stt"][0]


def test_dependents_of_an_export_that_came_out_otherwise_are_built_again() -> None:
    backend = FakeBackend(
        delay=0.2, digests={"base": BASE}, exported={"base": "sha256:" + "0" * 64}
    )
    result = execute(DIAMOND, backend, terminal(), ExecuteOptions(jobs=4))
    assert statuses(result.images) == dict.fromkeys(["base", "stt", "tts", "edge"], Status.SUCCESS)
    assert len(backend.argvs["stt"]) == 2
    assert f"base=docker-image://r/base:{BASE.replace(':', '-')}" in backend.argvs["stt"][-1]


def test_an_export_does_not_release_an_ordering_only_dependent() -> None:
    """`depends_on` without an `image:` context orders builds: it waits for the whole build."""
    after = replace(request("after"), dependencies=("base",))
    backend = FakeBackend(delay=0.2, digests={"base": BASE}, exported={"base": BASE})
    ordered = plan(request("base"), after, waves=[["base"], ["after"]])
    result = execute(ordered, backend, terminal(), ExecuteOptions(jobs=4))
    assert statuses(result.images) == {"base": Status.SUCCESS, "after": Status.SUCCESS}
    assert backend.spans["after"][0] >= backend.spans["base"][1]


class TaggingBackend(FakeBackend):
    """Records the tags added in the registry; the first `refusals` attempts get `refuse`
    with HTTP `status`."""

    def __init__(self, refuse: str = "", *, status: int = 503, refusals: int = 100) -> None:
        super().__init__()
        self.refuse, self.status, self.refusals = refuse, status, refusals
        self.attempts = 0
        self.retagged: list[tuple[str, list[str]]] = []

    def retag_remote(self, source: str, tags: Sequence[str]) -> None:
        self.attempts += 1
        if self.refuse and self.attempts <= self.refusals:
            raise RegistryError(self.refuse, status=self.status)
        self.retagged.append((source, list(tags)))


def pushed(name: str, *tags: str) -> Plan:
    return plan(replace(request(name), output="push", tags=tags), waves=[[name]])


def test_a_push_pushes_one_tag_per_repository_and_puts_the_others_by_manifest() -> None:
    backend = TaggingBackend()
    tags = ("r/stt:latest", "r/stt:fp-0123", "mirror.io/stt:latest", "r/stt:v1")
    result = execute(pushed("stt", *tags), backend, terminal(), ExecuteOptions())
    (stt,) = result.images
    assert stt.status is Status.SUCCESS
    argv = backend.argvs["stt"][0]
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--tag"] == [
        "r/stt:latest",
        "mirror.io/stt:latest",
    ]
    assert backend.retagged == [("r/stt@sha256:stt", ["r/stt:fp-0123", "r/stt:v1"])]
    assert stt.tags == list(tags)
    assert [p.name for p in stt.timeline.phases] == ["tagging fp-0123, v1"]


def test_a_load_writes_every_tag_itself() -> None:
    backend = TaggingBackend()
    load = plan(replace(request("stt"), tags=("r/stt:latest", "r/stt:fp-0123")), waves=[["stt"]])
    execute(load, backend, terminal(), ExecuteOptions())
    assert backend.argvs["stt"][0].count("--tag") == 2
    assert backend.retagged == []


def test_a_tag_the_registry_refuses_fails_the_image_and_names_the_tag() -> None:
    backend = TaggingBackend("HTTP 403 denied", status=403)
    result = execute(
        pushed("stt", "r/stt:latest", "r/stt:fp-0123"), backend, terminal(), ExecuteOptions()
    )
    (stt,) = result.images
    assert stt.status is Status.FAILED
    assert stt.reason == "pushed as r/stt:latest, but tagging it fp-0123 failed: HTTP 403 denied"
    assert stt.timeline.phases[0].error == stt.reason
    assert backend.attempts == 1  # what would fail again is not tried again


def test_a_tag_refused_for_a_while_is_retried_as_a_push_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "PUSH_BACKOFF", 0.001)
    backend = TaggingBackend("HTTP 503 busy", refusals=2)
    result = execute(
        pushed("stt", "r/stt:latest", "r/stt:fp-0123"), backend, terminal(), ExecuteOptions()
    )
    (stt,) = result.images
    assert stt.status is Status.SUCCESS
    assert backend.retagged == [("r/stt@sha256:stt", ["r/stt:fp-0123"])]
    assert stt.warnings == [
        f"stt: tagging failed (HTTP 503 busy); retry {n}/3 in {0.001 * 2 ** (n - 1):g}s"
        for n in (1, 2)
    ]
    always = TaggingBackend("HTTP 503 busy")
    (failed,) = execute(
        pushed("stt", "r/stt:latest", "r/stt:fp-0123"), always, terminal(), ExecuteOptions()
    ).images
    assert failed.status is Status.FAILED
    assert always.attempts == 1 + executor.PUSH_RETRIES


def test_an_interrupt_while_a_tag_retry_waits_records_the_image_as_interrupted() -> None:
    """The wait ends at once; the image is interrupted (not failed), and says which tags
    it lacks."""

    class InterruptedWhileTagging(TaggingBackend):
        def retag_remote(self, source: str, tags: Sequence[str]) -> None:
            if self.attempts == 0:
                # Ctrl-C, while the scheduler's thread waits on this build
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
            super().retag_remote(source, tags)

    backend = InterruptedWhileTagging("HTTP 503 busy")
    started = time.monotonic()
    result = execute(
        pushed("stt", "r/stt:latest", "r/stt:fp-0123"), backend, terminal(), ExecuteOptions()
    )
    assert time.monotonic() - started < executor.PUSH_BACKOFF  # the retry's wait was cut short
    assert result.interrupted
    (stt,) = result.images
    assert stt.status is Status.INTERRUPTED
    assert stt.reason == (
        "interrupted: pushed as r/stt:latest, but tagging it fp-0123 failed: HTTP 503 busy"
    )
    assert backend.attempts == 1
