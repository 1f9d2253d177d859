"""Builds started by the warm path before the full CLI loaded, each handed once to the backend.

A warm `build` (`warmbuild`) that finds an image missing declines, and the full CLI takes
about 0.3 s to load before it starts that image's build. Where the warm path can make the
very request the full path will make (`request.request_from_data`), it starts the build at
once (`start`). The backend's build of exactly that command takes the running process
(`take`) instead of starting another; BuildKit's progress waits in the pipe meanwhile.
A started build that the full path asks for with any other command is ended before the
full path's own build of that image starts, so two builds never race to write one image's
tags; one nobody takes is ended at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from buildpilot.request import LABEL_IMAGE

METADATA = "metadata.json"  # buildx's --metadata-file, in the build's own folder


@dataclass(frozen=True)
class Started:
    """A running build: its process (stdout and stderr piped) and its folder."""

    process: subprocess.Popen[bytes]
    since: datetime  # when it started
    folder: tempfile.TemporaryDirectory[str]  # holds its metadata file

    @property
    def metadata_file(self) -> Path:
        """The file buildx writes the build's metadata to."""
        return Path(self.folder.name) / METADATA


def spawn(command: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start a build process as buildpilot starts every build: output piped, in a session
    of its own (a terminal's Ctrl-C reaches buildpilot, which ends the build).

    buildx runs seven `git` commands before every build to describe the commit in the
    provenance attestation (16 ms of CPU and 18 ms of wall time a build here). A build
    without provenance (`--provenance=false`) gets `BUILDX_GIT_INFO=false` unless the
    environment sets it: the image comes out the same, digest and all."""
    env = None
    if "--provenance=false" in command and "BUILDX_GIT_INFO" not in os.environ:
        env = {**os.environ, "BUILDX_GIT_INFO": "false"}
    return subprocess.Popen(
        list(command),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=env,
    )


_started: dict[tuple[str, ...], Started] = {}


def start(command: Sequence[str]) -> bool:
    """Start `command` (a buildx build without `--metadata-file`) for `take`; False when it
    cannot start (the full path then runs it, and reports why)."""
    folder = tempfile.TemporaryDirectory(prefix="buildpilot-")
    try:
        process = spawn([*command, "--metadata-file", str(Path(folder.name) / METADATA)])
    except OSError:
        folder.cleanup()
        return False
    _started[tuple(command)] = Started(process, datetime.now(UTC), folder)
    return True


def take(command: Sequence[str]) -> Started | None:
    """The started build of exactly `command`, once. Without one, any started build of the
    same image (another command) is ended first: the caller builds that image itself."""
    found = _started.pop(tuple(command), None)
    if found is None and (image := _image(command)) is not None:
        for key in [key for key in _started if _image(key) == image]:
            end(_started.pop(key))
    return found


def end(started: Started) -> None:
    """End a started build: its whole process group, at once; then its files."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(started.process.pid, signal.SIGKILL)
    started.process.communicate()
    started.folder.cleanup()


def discard() -> None:
    """End every build nobody took (at exit, too)."""
    while _started:
        end(_started.popitem()[1])


atexit.register(discard)


def _image(command: Sequence[str]) -> str | None:
    """The image a build command is of, from its `dev.buildpilot.image` label."""
    labels = (v for flag, v in itertools.pairwise(command) if flag == "--label")
    return next((v.split("=", 1)[1] for v in labels if v.startswith(f"{LABEL_IMAGE}=")), None)
