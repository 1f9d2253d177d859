"""The engine probe of a `build` or `release`, started before the heavy imports.

`DockerBackend.check` asks `docker buildx version` and `docker buildx inspect [BUILDER]`
(through the plugin itself where it can, `buildx_plugin`)
before any build, and no build starts until both have answered. The console entry
(`entry.py`) starts them as soon as it sees such a command, so that they run while Python
loads typer, pydantic and rich instead of after. `take` hands over a started process whose
command is exactly the one asked for; the caller runs any other command itself. A process
nobody takes (a warm run, a config naming another builder) is ended at exit.
"""

from __future__ import annotations

import atexit
import subprocess
from collections.abc import Sequence

from buildpilot import buildx_plugin

_started: dict[tuple[str, ...], subprocess.Popen[str]] = {}


def probe_commands(argv: Sequence[str]) -> list[list[str]]:
    """The probe `DockerBackend.check` will run for `buildpilot ARGV`, as far as the command
    line tells (`--builder`); none for a command that checks no engine."""
    if argv[:1] not in (["build"], ["release"]) or {"--dry-run", "--help"} & set(argv):
        return []
    builder: list[str] = []
    for word, following in zip(argv, [*argv[1:], ""], strict=True):
        if word == "--builder" and following:
            builder = [following]
        elif word.startswith("--builder="):
            builder = [word.partition("=")[2]]
    buildx = buildx_plugin.command(["docker"])
    return [[*buildx, "version"], [*buildx, "inspect", *builder]]


def start(commands: Sequence[Sequence[str]]) -> None:
    """Start `commands`, their output kept for `take`."""
    for command in commands:
        try:
            process = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        except OSError:  # no docker on PATH: DockerBackend says so, in its words
            return
        _started[tuple(command)] = process
    if _started:
        atexit.register(discard)


def take(command: Sequence[str]) -> subprocess.Popen[str] | None:
    """The started process of exactly `command`, once; None when there is none."""
    return _started.pop(tuple(command), None)


def discard() -> None:
    """End every process nobody took."""
    while _started:
        _, process = _started.popitem()
        process.kill()
        process.communicate()
