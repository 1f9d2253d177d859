"""The only module that drives Docker: python-on-whales for queries, owned processes for builds,
the engine's API (`engineapi`) for the local-store lookups and tags asked on every run.

Builds run as child processes that buildpilot owns (not through python-on-whales' streaming
build) so that every flag buildx has is reachable (several --ssh and --cache-to), stdout and
stderr stay apart (rawjson arrives on stderr), and an interrupt can end each build's process
group. The argv starts with python-on-whales' docker command, so its client config applies.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from buildpilot import buildx_plugin, handoff, prebuild, prestart
from buildpilot.engineapi import Engine, EngineApiError, image_id
from buildpilot.errors import EngineError

if TYPE_CHECKING:
    from python_on_whales import DockerClient
    from python_on_whales.exceptions import DockerException
from buildpilot.rawjson import RawJsonStream
from buildpilot.registry import (
    DOCKER_HUB,
    RegistryError,
    Repository,
    manifest_digest,
    tag_digest,
)
from buildpilot.tags import tag_name

MIN_BUILDX = (0, 13)  # --progress=rawjson and `buildx ls --format json`
SETUP_HINT = "On Debian, `bash ci/engine-up.sh` from a buildpilot checkout installs and starts one."
StatusCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class BuildOutcome:
    """What one buildx process left behind."""

    returncode: int
    metadata: dict[str, Any] = field(default_factory=dict)
    text_lines: list[str] = field(default_factory=list)  # stderr lines that were not JSON
    interrupted: bool = False
    since: datetime | None = None  # when the build started, had it started before it was asked

    @property
    def digest(self) -> str | None:
        """The image's manifest digest, from buildx's metadata file."""
        value = self.metadata.get("containerimage.digest")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Found:
    """An image that exists: its manifest digest and, in the local store, its tags."""

    digest: str
    tags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class EngineInfo:
    """The buildx and builder a run will use."""

    buildx_version: str
    driver: str


class Backend(Protocol):
    """What the executor needs from Docker; tests may pass another implementation."""

    def check(self, *, builder: str | None) -> EngineInfo:
        """Verify docker, the engine and buildx; raise EngineError saying what to run."""
        ...

    def build(self, argv: Sequence[str], *, on_status: StatusCallback) -> BuildOutcome:
        """Run one buildx build to the end, feeding each rawjson status to `on_status`."""
        ...

    def tag(self, source: str, target: str) -> None:
        """Tag a local image."""
        ...

    def find(self, refs: Sequence[str], *, registry: bool) -> dict[str, Found]:
        """Those of `refs` that exist in the registry or the local store."""
        ...

    def retag_remote(self, source: str, tags: Sequence[str]) -> None:
        """Add `tags` to a registry image (by digest), without pulling it."""
        ...

    def interrupt(self) -> None:
        """End every running build: SIGINT to its process group, SIGKILL after a grace period."""
        ...

    def save(self, ref: str, path: Path) -> None:
        """Write image `ref` to `path` as a `docker save` archive (pulled first if not local)."""
        ...


_INSPECT_CHUNK = 5  # refs per `docker image inspect` process


class DockerBackend:
    """The real backend: the docker CLI with buildx."""

    def __init__(self, client: DockerClient | None = None, *, grace_seconds: float = 4.0) -> None:
        self._given = client
        self._grace = grace_seconds
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._interrupted = False

    def check(self, *, builder: str | None) -> EngineInfo:
        """Verify docker, the engine and buildx; raise EngineError saying what to run.

        The usual case costs two concurrent CLI calls; the slower diagnosis runs only when
        one of them shows a problem, to name it precisely.
        """
        run = self._buildx
        with ThreadPoolExecutor(max_workers=2) as pool:
            version = pool.submit(_capture, [*run, "version"])
            inspect = pool.submit(_capture, [*run, "inspect", *([builder] if builder else [])])
        buildx, details = version.result(), inspect.result()
        found = _version_tuple(buildx.stdout)
        if buildx.returncode == 0 and found < MIN_BUILDX:
            raise EngineError(
                f"buildx {'.'.join(map(str, found))} is too old: buildpilot needs "
                f"{'.'.join(map(str, MIN_BUILDX))} or newer for --progress=rawjson.",
                hint="Upgrade the docker-buildx package or plugin.",
            )
        driver = _field(details.stdout, "Driver")
        if (
            buildx.returncode != 0
            or details.returncode != 0
            or not driver
            or _field(details.stdout, "Error")
        ):
            self._diagnose(builder)
        return EngineInfo(buildx_version=buildx.stdout.strip(), driver=driver or "docker")

    def _diagnose(self, builder: str | None) -> None:
        """Name what is wrong with the engine, buildx or the builder, and what to run."""
        from python_on_whales.exceptions import DockerException  # noqa: PLC0415

        try:
            self._client.version()
        except DockerException as exc:
            raise EngineError(
                "The Docker engine does not answer: " + _last_line(exc),
                hint=_engine_hint(_last_line(exc)),
            ) from None
        try:
            self._client.buildx.version()
        except DockerException as exc:
            problem = _last_line(exc)
            missing = "is not a docker command" in problem or "unknown command" in problem
            raise EngineError(
                "docker buildx is not installed, and buildpilot builds through it."
                if missing
                else f"docker buildx is installed but does not work: {problem}",
                hint="Install the buildx plugin (Debian: `apt-get install docker-buildx`). "
                + SETUP_HINT,
            ) from None
        try:
            self._client.buildx.inspect(builder)
        except DockerException as exc:
            raise EngineError(
                f"buildx builder '{builder or 'default'}' cannot be used: " + _last_line(exc),
                hint="See `docker buildx ls`; make one with `docker buildx create`.",
            ) from None
        raise EngineError(
            f"buildx builder '{builder or 'default'}' is not running or has no driver."
        )

    def build(self, argv: Sequence[str], *, on_status: StatusCallback) -> BuildOutcome:
        """Run one buildx build to the end, feeding each rawjson status to `on_status`."""
        command = [*self._buildx, *argv[1:]]  # argv: buildx …
        early = prebuild.take(command)  # the warm path's start of this very build
        folder = early.folder if early else tempfile.TemporaryDirectory(prefix="buildpilot-")
        with folder:
            metadata_file = Path(folder.name) / prebuild.METADATA
            process = self._start([*command, "--metadata-file", str(metadata_file)], early)
            if process is None:
                return BuildOutcome(returncode=130, interrupted=True)
            stream = RawJsonStream()
            stdout = threading.Thread(target=_drain, args=(process.stdout,), daemon=True)
            stdout.start()
            try:
                assert process.stderr is not None  # noqa: S101 - Popen was given PIPE
                for raw in _lines(bytes(early.head) if early else b"", process.stderr):
                    for status in stream.feed(raw.decode("utf-8", errors="replace")):
                        on_status(status)
            finally:
                returncode = process.wait()
                stdout.join()
                for pipe in (process.stdout, process.stderr):
                    if pipe is not None:
                        pipe.close()
                with self._lock:
                    self._running.discard(process)
            metadata = _read_json(metadata_file) if returncode == 0 else {}
            return BuildOutcome(
                returncode=returncode,
                metadata=metadata,
                text_lines=stream.text_lines,
                interrupted=self._interrupted,
                since=early.since if early else None,
            )

    def tag(self, source: str, target: str) -> None:
        """Tag a local image (on every base's path to its dependents: kept light)."""
        if self._engine is not None:
            try:
                self._engine.tag(source, target)
            except EngineApiError:
                pass  # the CLI says what is wrong, in its own words
            else:
                return
        done = _capture([*self._docker_cmd(), "tag", source, target])
        if done.returncode != 0:
            raise EngineError(f"cannot tag {source} as {target}: {done.stderr.strip()}")

    def find(self, refs: Sequence[str], *, registry: bool) -> dict[str, Found]:
        """Those of `refs` that exist: in the registry, one HEAD request each, in parallel;
        in the local store, the engine's API (else `docker image inspect`, a few refs per
        process)."""
        if not refs:
            return {}
        if registry:
            digests, ask = handoff.take(handoff.REGISTRY, refs)
            with ThreadPoolExecutor(max_workers=8) as pool:
                digests.update(zip(ask, pool.map(self._registry_digest, ask), strict=True))
            return {ref: Found(digest) for ref, digest in digests.items() if digest}
        if self._engine is not None:
            answers, ask = handoff.take(handoff.ENGINE, refs)
            try:
                with ThreadPoolExecutor(max_workers=8) as pool:
                    answers.update(zip(ask, pool.map(self._engine.inspect, ask), strict=True))
            except EngineApiError:
                pass  # the CLI below says what is wrong, in its own words
            else:
                return {ref: item for ref, image in answers.items() if (item := _found(image, ref))}
        # `docker image inspect` costs a round trip per ref (a listing would walk every image
        # in the store): a few refs per process, processes in parallel.
        chunks = [refs[i : i + _INSPECT_CHUNK] for i in range(0, len(refs), _INSPECT_CHUNK)]
        with ThreadPoolExecutor(max_workers=4) as pool:
            found = pool.map(self._inspect_local, chunks)
        return {ref: item for part in found for ref, item in part.items()}

    def _inspect_local(self, refs: Sequence[str]) -> dict[str, Found]:
        done = _capture([*self._docker_cmd(), "image", "inspect", "--format", "{{json .}}", *refs])
        found: dict[str, Found] = {}
        for line in done.stdout.splitlines():  # one line per image found; missing ones: stderr
            try:
                image = json.loads(line)
            except ValueError:
                continue
            found.update({ref: item for ref in refs if (item := _found(image, ref))})
        return found

    def _registry_digest(self, ref: str) -> str | None:
        """The registry's digest for `ref`; through `imagetools inspect` (which honours the
        builder's registry settings) when the registry cannot be asked directly."""
        try:
            return manifest_digest(ref)
        except RegistryError:
            pass
        inspect = ["buildx", "imagetools", "inspect", ref, "--format", "{{json .Manifest}}"]
        done = _capture([*self._docker_cmd(), *inspect])
        try:
            value = json.loads(done.stdout).get("digest") if done.returncode == 0 else None
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) and value.startswith("sha256:") else None

    def retag_remote(self, source: str, tags: Sequence[str]) -> None:
        """Add `tags` to a registry image (`repo@digest`), keeping its digest.

        Tags in the image's own repository get the very manifest (see registry.py); tags in
        other repositories go through `imagetools create`, which copies the blobs.
        """
        repository = Repository.parse(source)
        digest = source.rsplit("@", 1)[1]
        own = [t for t in tags if Repository.parse(t) == repository and tag_name(t)]
        other = [t for t in tags if t not in own]
        tag_digest(repository, digest, [name for t in own if (name := tag_name(t))])
        if other:
            command = [*self._docker_cmd(), "buildx", "imagetools", "create"]
            for tag in other:
                command += ["--tag", tag]
            done = _capture([*command, source])
            if done.returncode != 0:
                raise EngineError(f"cannot tag {source} in the registry: {done.stderr.strip()}")

    def interrupt(self) -> None:
        """End every running build: SIGINT to its process group, SIGKILL after a grace period."""
        with self._lock:
            self._interrupted = True
            running = list(self._running)
        for process in running:
            _signal_group(process, signal.SIGINT)
        for process in running:
            try:
                process.wait(timeout=self._grace)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)

    @functools.cached_property
    def _buildx(self) -> list[str]:
        """What runs `docker buildx` (`buildx_plugin`), found once per backend."""
        return buildx_plugin.command(self._docker_cmd())

    @functools.cached_property
    def _engine(self) -> Engine | None:
        """The engine's API, when the docker command is the plain one on a local socket."""
        return Engine.local() if self._given is None else None

    @functools.cached_property
    def _client(self) -> DockerClient:
        # Imported on first use: only diagnosis and tagging need python-on-whales, and the
        # package costs ~0.1 s of start-up on every run otherwise.
        from python_on_whales import DockerClient  # noqa: PLC0415

        return self._given or DockerClient()

    def save(self, ref: str, path: Path) -> None:
        """Write image `ref` to `path` as a `docker save` archive (pulled first if not local).

        No timeout: a large image takes as long as its layers take to write.
        """
        command = [*self._docker_cmd(), "save", "--output", str(path), ref]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 and Repository.parse(ref).host != DOCKER_HUB:
            pulled = _capture([*self._docker_cmd(), "pull", "--quiet", ref])
            if pulled.returncode == 0:
                done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise EngineError(f"cannot save {ref}: {done.stderr.strip() or done.returncode}")

    def _docker_cmd(self) -> list[str]:
        """The docker command: the given client's (with its global flags), else `docker`."""
        if self._given is None:
            command = ["docker"]  # python-on-whales' own default client call
        else:
            from python_on_whales.client_config import ClientNotFoundError  # noqa: PLC0415

            try:
                command = list(self._given.client_config.docker_cmd)
            except ClientNotFoundError:  # python-on-whales: no docker binary on PATH
                command = []
        if not command or shutil.which(command[0]) is None:
            raise EngineError(
                "The docker CLI is not on PATH, so buildpilot cannot run builds.",
                hint="Install Docker with buildx. " + SETUP_HINT,
            )
        return command

    def _start(
        self, command: list[str], early: prebuild.Started | None
    ) -> subprocess.Popen[bytes] | None:
        with self._lock:
            if self._interrupted:
                if early is not None:
                    prebuild.end(early)
                return None
            process = early.process if early else prebuild.spawn(command)
            self._running.add(process)
            return process


def _capture(command: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a short docker command (or take it already running, `prestart`); one that hangs
    (an engine that stopped answering) ends as a failure with a message, not an exception."""
    process = prestart.take(command) or subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        message = f"`{' '.join(command[:3])}` did not answer within {timeout:.0f} s"
        return subprocess.CompletedProcess(command, 124, "", message)
    except BaseException:  # an interrupt: end it, as subprocess.run would
        process.kill()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _found(image: object, ref: str) -> Found | None:
    """`ref` as found in the engine's answer about one image (`docker image inspect`'s JSON)."""
    digest = image_id(image)
    tags = frozenset(image.get("RepoTags") or ()) if isinstance(image, dict) else frozenset()
    return Found(digest, tags) if digest is not None and ref in tags else None


def _field(text: str, name: str) -> str:
    """The value of the first `Name:  value` line of `docker buildx inspect` output."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return ""


def _drain(pipe: Any) -> None:
    for _ in pipe:
        pass


def _lines(head: bytes, pipe: Iterable[bytes]) -> Iterator[bytes]:
    """A build's stderr line by line: `head` (read before, by `prebuild.settle`), then the
    pipe's; a line `head` cut in two is whole again."""
    *lines, partial = head.split(b"\n")
    for line in lines:
        yield line + b"\n"
    for raw in pipe:
        yield partial + raw
        partial = b""
    if partial:
        yield partial


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _version_tuple(text: str) -> tuple[int, ...]:
    match = re.search(r"v?(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _engine_hint(problem: str) -> str:
    """What to run when the engine does not answer, by what the docker CLI said."""
    if "permission denied" in problem:
        return (
            "Your user may not use the engine's socket: add it to the docker group "
            "(`sudo usermod -aG docker $USER`, then log in again), or run buildpilot as a user "
            "that may."
        )
    if "context not found" in problem or "resolve docker endpoint" in problem:
        return (
            "DOCKER_CONTEXT, or the current docker context, names no context that exists: "
            "see `docker context ls`, then `docker context use default` or unset DOCKER_CONTEXT."
        )
    return (
        "Start it (`systemctl start docker`, or `dockerd &`), or point DOCKER_HOST at a "
        "running one. " + SETUP_HINT
    )


def _last_line(exc: DockerException) -> str:
    stderr = exc.stderr if isinstance(exc.stderr, str) else ""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {exc.return_code}"
