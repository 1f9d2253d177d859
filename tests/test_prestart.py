"""The engine probe started before the heavy imports, and handed to the backend."""

from __future__ import annotations

import subprocess

import pytest

from buildpilot import backend, buildx_plugin, prestart


def test_probe_commands_follow_the_command_line() -> None:
    buildx = buildx_plugin.command(["docker"])  # what DockerBackend.check runs
    assert prestart.probe_commands(["build", "stt"]) == [
        [*buildx, "version"],
        [*buildx, "inspect"],
    ]
    assert prestart.probe_commands(["release", "--builder", "ci"])[1][-1] == "ci"
    assert prestart.probe_commands(["build", "--builder=ci"])[1][-1] == "ci"
    assert prestart.probe_commands(["build", "--dry-run"]) == []  # builds nothing
    assert prestart.probe_commands(["plan", "--since", "main"]) == []


def test_the_backend_takes_a_started_probe_once(monkeypatch: pytest.MonkeyPatch) -> None:
    command = ["sh", "-c", "echo started early; echo note >&2"]
    prestart.start([command])
    started: list[list[str]] = []
    real = subprocess.Popen

    def counting(args: list[str], **kwargs: object) -> subprocess.Popen[str]:
        started.append(args)
        return real(args, **kwargs)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(subprocess, "Popen", counting)
    first = backend._capture(command)
    assert (first.returncode, first.stdout, first.stderr) == (0, "started early\n", "note\n")
    assert started == []  # the process started before was used
    second = backend._capture(command)
    assert second.stdout == "started early\n"
    assert started == [command]  # taken once: the next call runs it anew


def test_a_probe_nobody_takes_is_ended() -> None:
    prestart.start([["sleep", "30"]])
    process = prestart._started[("sleep", "30")]
    prestart.discard()
    assert process.returncode is not None
    assert prestart.take(["sleep", "30"]) is None


def test_a_missing_program_starts_nothing() -> None:
    prestart.start([["/nonexistent/docker", "buildx", "version"]])
    assert prestart.take(["/nonexistent/docker", "buildx", "version"]) is None
