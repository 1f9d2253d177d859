"""Builds started by the warm path before the full CLI loaded, each handed once to the backend.

A warm `build` (`warmbuild`) that finds an image missing declines, and the full CLI takes
about 0.3 s to load before it starts that image's build. Where the warm path can make the
very request the full path will make (`request.request_from_data`), it starts the build at
once (`start`). The backend's build of exactly that command takes the running process
(`take`) instead of starting another; BuildKit's progress waits in the pipe meanwhile.
A started build that the full path asks for with any other command is ended before the
full path's own build of that image starts, so two builds never race to write one image's
tags; one nobody takes is ended at exit.

A build starts with a burst of work for buildx and BuildKit (the definition, the context and
the cache manifests loaded, each step's cache key found, the first step's container
started), and on two cores 0.1 s of CPU beside that burst makes the build ~0.07 s slower.
So the warm path waits (`settle`) until each build it started is past that burst before it
goes on (more lookups, the full CLI's 0.3 s of loading), reading the progress meanwhile
into the build's `head`, which the backend reads first.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import select
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from buildpilot.rawjson import RawJsonStream, past_start
from buildpilot.request import LABEL_IMAGE

METADATA = "metadata.json"  # buildx's --metadata-file, in the build's own folder
SETTLE_LIMIT = 0.5  # seconds: the longest `settle` waits for a build
STEP_GRACE = 0.15  # seconds `settle` waits past a build's start: a RUN's container starting


@dataclass
class Started:
    """A running build: its process (stdout and stderr piped) and its folder."""

    process: subprocess.Popen[bytes]
    since: datetime  # when it started
    folder: tempfile.TemporaryDirectory[str]  # holds its metadata file
    head: bytearray = field(default_factory=bytearray)  # stderr read by `settle`, not yet used
    settled: bool = False

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


def settle(limit: float = SETTLE_LIMIT) -> None:
    """Wait until each started build is past its start (`rawjson.past_start`) by
    `STEP_GRACE`, has ended, or has been waited for `limit` seconds; keep what it wrote to
    stderr meanwhile in its `head`."""
    reading = {
        started.process.stderr.fileno(): _Settling(started, time.monotonic() + limit)
        for started in _started.values()
        if not started.settled and started.process.stderr is not None
    }
    while reading:
        left = min(build.deadline for build in reading.values()) - time.monotonic()
        ready, _, _ = select.select(list(reading), [], [], max(left, 0))
        for fd in ready:
            if not reading[fd].read(fd):
                del reading[fd]
        for fd in [fd for fd, build in reading.items() if build.deadline <= time.monotonic()]:
            del reading[fd]
    for started in _started.values():
        started.settled = True


@dataclass
class _Settling:
    """A started build being read by `settle`."""

    started: Started
    deadline: float  # time.monotonic()
    stream: RawJsonStream = field(default_factory=RawJsonStream)
    partial: bytes = b""  # a line not yet whole
    past_start: bool = False

    def read(self, fd: int) -> bool:
        """Read what is there; False at the end of the stream."""
        chunk = os.read(fd, 1 << 16)
        self.started.head += chunk
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        if not self.past_start:
            events = (e for line in lines for e in self.stream.feed(line.decode(errors="replace")))
            if any(past_start(event) for event in events):
                self.past_start = True
                self.deadline = min(self.deadline, time.monotonic() + STEP_GRACE)
        return bool(chunk)


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
