"""Retries of a push that failed on a transient registry error, bounded at three: the
executor over a backend that fails as buildx does (the engine test in
test_registry_faults.py shows one retry against a real registry)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pytest

from buildpilot import executor
from buildpilot.backend import BuildOutcome, StatusCallback
from buildpilot.console import Terminal
from buildpilot.executor import ExecuteOptions, execute
from buildpilot.plan import Plan
from buildpilot.request import BuildRequest, Output
from buildpilot.results import ImageResult
from buildpilot.status import Status
from tests.quiet_backend import QuietBackend

PUSH_503 = (
    "ERROR: failed to solve: failed to push localhost:5999/x/a:latest: failed commit on ref "
    '"manifest-sha256:00": unexpected status from PUT request to '
    "http://localhost:5999/v2/x/a/manifests/latest: 503 Service Unavailable"
)
PUSH_TIMEOUT = (
    "ERROR: failed to solve: failed to push localhost:5999/x/a:latest: failed to do request: "
    'Put "http://localhost:5999/v2/x/a/blobs/uploads/1": net/http: TLS handshake timeout'
)
PUSH_403 = PUSH_503.replace("503 Service Unavailable", "403 Forbidden")
STEP_FAILED = 'ERROR: failed to solve: process "/bin/sh -c false" did not complete: exit 1'


class FailingBackend(QuietBackend):
    """Fails the first `failures` builds with `error`, then succeeds."""

    def __init__(self, error: str, failures: int) -> None:
        self.error = error
        self.failures = failures
        self.builds = 0

    def build(self, argv: Sequence[str], *, on_status: StatusCallback) -> BuildOutcome:
        self.builds += 1
        if self.builds <= self.failures:
            return BuildOutcome(returncode=1, text_lines=["#5 exporting to image", self.error])
        return BuildOutcome(returncode=0, metadata={"containerimage.digest": "sha256:" + "a" * 64})


def run(backend: FailingBackend, output: Output = "push") -> tuple[ImageResult, str]:
    request = BuildRequest(
        image="a",
        repository="localhost:5999/x/a",
        dependencies=(),
        context=Path(),
        dockerfile=Path("Dockerfile"),
        output=output,
        tags=("localhost:5999/x/a:latest",),
    )
    errors = io.StringIO()
    terminal = Terminal(plain=True, stream=io.StringIO(), err_stream=errors)
    done = execute(
        Plan(requests={"a": request}, waves=[["a"]]), backend, terminal, ExecuteOptions()
    )
    return done.images[0], errors.getvalue()


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "PUSH_BACKOFF", 0.001)


def test_a_registry_that_keeps_failing_is_tried_four_times_in_all() -> None:
    backend = FailingBackend(PUSH_503, failures=100)
    image, stderr = run(backend)
    assert backend.builds == 1 + executor.PUSH_RETRIES == 4
    assert image.status is Status.FAILED
    retries = [w for w in image.warnings if "retry" in w]
    assert retries == [
        f"a: push failed (503 Service Unavailable); retry {n}/3 in {0.001 * 2 ** (n - 1):g}s"
        for n in (1, 2, 3)
    ]
    assert stderr.count("retry") == 3
    assert image.reason == PUSH_503


def test_a_timeout_is_retried_until_the_push_goes_through() -> None:
    backend = FailingBackend(PUSH_TIMEOUT, failures=2)
    image, _ = run(backend)
    assert backend.builds == 3
    assert image.status is Status.SUCCESS
    assert [w.split(";")[0] for w in image.warnings] == [
        "a: push failed (TLS handshake timeout)"
    ] * 2


def test_an_export_that_lost_a_race_for_its_tag_is_built_again() -> None:
    race = 'ERROR: failed to solve: image "localhost:5999/x/a:latest": already exists'
    backend = FailingBackend(race, failures=1)
    image, _ = run(backend, "load")
    assert backend.builds == 2
    assert image.status is Status.SUCCESS
    assert image.warnings == [
        'a: export failed (image "localhost:5999/x/a:latest": already exists: another build '
        "stored it at the same moment); retry 1/3 in 0.001s"
    ]


@pytest.mark.parametrize(
    ("error", "output"),
    [(PUSH_403, "push"), (STEP_FAILED, "push"), (PUSH_503, "load")],
    ids=["refused", "step-failed", "no-push"],
)
def test_what_would_fail_again_is_not_retried(error: str, output: Output) -> None:
    backend = FailingBackend(error, failures=100)
    image, stderr = run(backend, output)
    assert backend.builds == 1
    assert image.status is Status.FAILED
    assert image.warnings == []
    assert "retry" not in stderr
