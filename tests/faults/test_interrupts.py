"""Interrupts during a parallel build that pushes: every buildx child ends within 5 s, no
process is left, the run is recorded as interrupted, the history stays valid JSON lines,
and buildpilot exits 130; an impatient second signal changes none of that."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from buildpilot.runs import load_run
from buildpilot.status import Status
from tests.faults.conftest import Repo, buildpilot, history_lines, start

pytestmark = pytest.mark.engine


def buildx_processes(marker: str) -> list[str]:
    ps = subprocess.run(
        ["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in ps.splitlines() if "buildx" in line and marker in line]


def slow_repo(repo: Repo, namespace: str) -> None:
    slow = {"context": "slow", "contexts": {"base": "image:base"}}
    repo.write(
        {
            "slow/Dockerfile": "FROM base\nARG N\nRUN sleep 120\n",
            "buildpilot.yaml": {
                "version": 1,
                "registry": namespace,
                "images": {
                    "base": {"context": "base"},
                    "one": {**slow, "args": {"N": "1"}},
                    "two": {**slow, "args": {"N": "2"}},
                    "after": {"context": "slow", "contexts": {"base": "image:one"}},
                },
            },
        }
    )
    repo.commit()


def interrupt(repo: Repo, namespace: str, signals: list[signal.Signals]) -> tuple[int, str, float]:
    """Start a pushing build, wait for the two slow builds, send `signals` 0.2 s apart;
    return the exit code, the output and the seconds from the first signal to the end."""
    process = start(repo.root / "buildpilot.yaml", "build", "--push", "--jobs", "2")
    try:
        deadline = time.monotonic() + 90
        while not all(
            any(f"N={n}" in line for line in buildx_processes(namespace)) for n in (1, 2)
        ):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the two slow builds never started"
            time.sleep(0.2)
        time.sleep(1)
        sent = time.monotonic()
        for sig in signals:
            process.send_signal(sig)
            time.sleep(0.2)
        stdout, stderr = process.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        process.kill()
        process.wait()
    return process.returncode, stdout + stderr, took


@pytest.mark.parametrize(
    "signals",
    [[signal.SIGTERM], [signal.SIGINT, signal.SIGINT]],
    ids=["sigterm", "sigint-twice"],
)
def test_interrupted_push_ends_everything_and_keeps_the_history_valid(
    repo: Repo, namespace: str, signals: list[signal.Signals]
) -> None:
    slow_repo(repo, namespace)
    first = buildpilot(repo.root / "buildpilot.yaml", "build", "base", "--push")
    assert first.code == 0, first.output
    code, output, took = interrupt(repo, namespace, signals)
    assert took < 5, output
    assert code == 130, output
    assert "Traceback" not in output
    assert buildx_processes(namespace) == []
    run = load_run(repo.root)
    assert run.interrupted
    statuses = {image.name: image.status for image in run.images}
    # The base the first run pushed has the same fingerprint: it is reused, and one and two
    # start on it at once.
    assert statuses.pop("base") is Status.SKIPPED
    assert statuses == {
        "one": Status.INTERRUPTED,
        "two": Status.INTERRUPTED,
        "after": Status.ABORTED,
    }
    lines = history_lines(repo.root)
    assert len(lines) == 2
    assert lines[-1]["id"] == run.id
    assert lines[-1]["interrupted"] is True
    report = buildpilot(repo.root / "buildpilot.yaml", "report", run.id)
    assert report.code == 0, report.output
    assert "interrupted" in report.stdout
