"""Engine faults beyond the ones tests/test_cli.py and tests/engine/ already cover (no docker
CLI, a DOCKER_HOST that does not exist, buildx missing or too old for `build`): each as a
real process, one paragraph that says what to run, exit 2, nothing recorded."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.conftest import Repo, assert_one_message, buildpilot
from tests.faults.netfaults import free_port

pytestmark = pytest.mark.engine

EnvMaker = Callable[[Path], dict[str, str]]


def dead_socket(tmp: Path) -> dict[str, str]:
    """A unix socket file nobody listens on any more, as a crashed engine leaves it."""
    path = tmp / "docker.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
    return {"DOCKER_HOST": f"unix://{path}"}


def closed_port(tmp: Path) -> dict[str, str]:
    return {"DOCKER_HOST": f"tcp://127.0.0.1:{free_port()}"}


def missing_context(tmp: Path) -> dict[str, str]:
    return {"DOCKER_CONTEXT": "buildpilot-no-such-context"}


def shim(tmp: Path, script: str) -> dict[str, str]:
    """A `docker` earlier on PATH that runs `script` first (it may exit), then the real one."""
    real = subprocess.run(
        ["sh", "-c", "command -v docker"], capture_output=True, text=True, check=True
    ).stdout.strip()
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(f'#!/bin/sh\n{script}\nexec {real} "$@"\n')
    docker.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def socket_permission_denied(tmp: Path) -> dict[str, str]:
    return shim(
        tmp,
        'echo "permission denied while trying to connect to the Docker daemon socket at '
        "unix:///var/run/docker.sock: dial unix /var/run/docker.sock: connect: permission "
        'denied" >&2; exit 1',
    )


def buildx_crashes(tmp: Path) -> dict[str, str]:
    return shim(
        tmp,
        'if [ "$1" = buildx ]; then echo "panic: runtime error: invalid memory address" >&2; '
        "exit 2; fi",
    )


def buildx_too_old(tmp: Path) -> dict[str, str]:
    return shim(
        tmp,
        'if [ "$1" = buildx ] && [ "$2" = version ]; then '
        'echo "github.com/docker/buildx v0.12.1 30feaa1"; exit 0; fi',
    )


@dataclass(frozen=True)
class Fault:
    id: str
    env: EnvMaker
    message: str
    hint: str  # a command to run, quoted in backticks
    command: tuple[str, ...] = ("build",)


FAULTS = [
    Fault(
        "dead-socket", dead_socket, "The Docker engine does not answer", "`systemctl start docker`"
    ),
    Fault("closed-port", closed_port, "Cannot connect to the Docker daemon", "`dockerd &`"),
    Fault("missing-context", missing_context, "does not answer", "`docker context ls`"),
    Fault(
        "socket-permission",
        socket_permission_denied,
        "permission denied",
        "`sudo usermod -aG docker $USER`",
    ),
    Fault(
        "buildx-crashes",
        buildx_crashes,
        "buildx is installed but does not work: panic: runtime error",
        "`apt-get install",
    ),
    Fault(
        "buildx-too-old-release",
        buildx_too_old,
        "buildx 0.12 is too old: buildpilot needs 0.13 or newer",
        "Upgrade the docker-buildx package",
        ("release", "--version", "1.0.0"),
    ),
    Fault(
        "unknown-builder",
        lambda tmp: {},
        "buildx builder 'buildpilot-nope' cannot be used",
        "`docker buildx ls`",
        ("build", "--builder", "buildpilot-nope"),
    ),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_engine_fault_says_what_to_run(
    repo: Repo, namespace: str, tmp_path: Path, fault: Fault
) -> None:
    repo.write({"buildpilot.yaml": _config(namespace)})
    repo.commit()
    done = buildpilot(repo.root / "buildpilot.yaml", *fault.command, env=fault.env(tmp_path))
    assert done.code == 2, done.output
    assert_one_message(done)
    message = done.stderr.split("error: ", 1)[1]
    assert len(message.strip().splitlines()) == 2, message  # what is wrong; what to run
    assert fault.message in message
    assert fault.hint in message
    assert not (repo.root / ".buildpilot/runs").exists()


def test_a_dry_run_needs_no_engine(repo: Repo, namespace: str, tmp_path: Path) -> None:
    repo.write({"buildpilot.yaml": _config(namespace)})
    repo.commit()
    done = buildpilot(
        repo.root / "buildpilot.yaml", "build", "--dry-run", env=dead_socket(tmp_path)
    )
    assert done.code == 0, done.output
    assert "docker buildx build --progress=rawjson" in done.stdout


def _config(namespace: str) -> dict[str, object]:
    return {"version": 1, "registry": namespace, "images": {"base": {"context": "base"}}}
