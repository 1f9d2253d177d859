"""Interrupts and engine problems, with buildpilot as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from buildpilot.status import Status
from tests.engine.conftest import Repo, config


def start(repo: Repo, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "buildpilot", *args, "--config", str(repo.root / "buildpilot.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def buildx_processes(marker: str) -> list[str]:
    ps = subprocess.run(
        ["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in ps.splitlines() if "buildx" in line and marker in line]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_ends_every_build_and_records_the_run(
    repo: Repo, namespace: str, sig: signal.Signals
) -> None:
    repo.write(
        {
            "slow/Dockerfile": "FROM base\nRUN sleep 120\n",
            "buildpilot.yaml": config(
                namespace,
                {
                    "base": {"context": "base"},
                    "one": {
                        "context": "slow",
                        "contexts": {"base": "image:base"},
                        "args": {"N": "1"},
                    },
                    "two": {
                        "context": "slow",
                        "contexts": {"base": "image:base"},
                        "args": {"N": "2"},
                    },
                    "after": {"context": "slow", "contexts": {"base": "image:one"}},
                },
            ),
        }
    )
    repo.commit()
    process = start(repo, "build", "--jobs", "2")
    try:
        deadline = time.monotonic() + 60
        while not all(
            any(f"{namespace}/{name}:" in line for line in buildx_processes(namespace))
            for name in ("one", "two")
        ):
            assert time.monotonic() < deadline, "the two slow builds never started"
            time.sleep(0.2)
        time.sleep(1)
        process.send_signal(sig)
        sent = time.monotonic()
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert time.monotonic() - sent < 5, output
    assert process.returncode == 130, output
    assert buildx_processes(namespace) == []
    run = repo.last_run()
    assert run.interrupted
    statuses = {image.name: image.status for image in run.images}
    assert statuses == {
        "base": Status.SUCCESS,
        "one": Status.INTERRUPTED,
        "two": Status.INTERRUPTED,
        "after": Status.ABORTED,
    }
    assert "Traceback" not in output


def fake_docker(tmp_path: Path, buildx_script: str) -> dict[str, str]:
    """A docker CLI whose buildx plugin answers as `buildx_script` says; the rest is real."""
    real = subprocess.run(
        ["sh", "-c", "command -v docker"], capture_output=True, text=True, check=True
    ).stdout.strip()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "docker"
    shim.write_text(
        f'#!/bin/sh\nif [ "$1" = buildx ]; then\n{buildx_script}\nfi\nexec {real} "$@"\n'
    )
    shim.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_buildx_missing_says_what_to_install(repo: Repo, namespace: str, tmp_path: Path) -> None:
    repo.write({"buildpilot.yaml": config(namespace, {"base": {"context": "base"}})})
    repo.commit()
    env = fake_docker(tmp_path, "echo \"docker: 'buildx' is not a docker command.\" >&2; exit 1")
    code, output = repo.buildpilot("build", env=env)
    assert code == 2
    assert "docker buildx is not installed" in output
    assert "apt-get install docker-buildx" in output


def test_buildx_too_old_is_refused(repo: Repo, namespace: str, tmp_path: Path) -> None:
    repo.write({"buildpilot.yaml": config(namespace, {"base": {"context": "base"}})})
    repo.commit()
    env = fake_docker(tmp_path, 'echo "github.com/docker/buildx v0.10.4 c513d34"; exit 0')
    code, output = repo.buildpilot("build", env=env)
    assert code == 2
    assert "buildx 0.10 is too old: buildpilot needs 0.13 or newer" in output
