"""Input fingerprints: a hash of everything an image's build reads, from content, not history.

An image's fingerprint covers its Dockerfile's instructions (the stages its target builds),
the content and mode of every context file those instructions read (after the ignore file),
its args (with the mirror args it gets), target, platforms, labels, the ids of its secrets
and SSH mounts (never values), and the fingerprints of the images it is built on. File
hashes come from the git index where the working copy is clean; only dirty and untracked
files are hashed here, with git's own blob hash, so both kinds compare alike. The result
does not depend on commits, branches or clone depth.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from buildpilot.errors import GitError
from buildpilot.git import index_entries, toplevel
from buildpilot.ignore import IgnoreMatcher, ignore_file_for, source_reads

VERSION = "1"  # bump when what goes into a fingerprint changes


@dataclass(frozen=True)
class Fingerprint:
    """An image's input hash, or why it has none."""

    value: str | None
    unknown: str | None = None  # e.g. "ADD <url>": such an image is always built

    @property
    def tag(self) -> str | None:
        """The registry tag that marks an image built from these inputs."""
        return f"fp-{self.value[:32]}" if self.value else None


class FileIndex:
    """Every file under a repository with git's blob hash and mode; sorted for prefix scans.

    Clean tracked files take their hash from the git index; dirty and untracked ones are
    hashed on first use, so a large ignored folder costs a listing, not a read.
    """

    def __init__(self, top: Path, entries: Mapping[str, tuple[str, str] | None]) -> None:
        self.top = top.resolve()
        self._entries = dict(entries)  # None: hash from disk when asked
        self._paths = sorted(self._entries)

    @classmethod
    def scan(cls, root: Path, within: Sequence[Path] = ()) -> FileIndex:
        """Index the repository holding `root` (or, outside git, every file below `root`),
        only below the directories `within` when given (the build contexts: an ignored
        virtualenv elsewhere in the repository is never listed)."""
        try:
            top = toplevel(root).resolve()
        except GitError:
            return cls(root, dict.fromkeys(p.relative_to(root).as_posix() for p in _walk(root)))
        return cls(top, index_entries(top, _pathspecs(top, within)))

    def under(self, directory: Path) -> list[str]:
        """Files below `directory`, relative to it."""
        prefix = self._prefix(directory)
        if prefix == ".":
            return list(self._paths)
        start = bisect.bisect_left(self._paths, prefix + "/")
        end = bisect.bisect_left(self._paths, prefix + "0")  # "0" sorts right after "/"
        return [p[len(prefix) + 1 :] for p in self._paths[start:end]]

    def entry(self, directory: Path, rel: str) -> tuple[str, str]:
        """(mode, blob sha) of `rel` under `directory`; ("deleted", "") when it is gone."""
        prefix = self._prefix(directory)
        key = rel if prefix == "." else f"{prefix}/{rel}"
        value = self._entries[key]
        if value is None:
            path = self.top / key
            value = _hash_file(path) if path.is_file() else ("deleted", "")
            self._entries[key] = value
        return value

    def _prefix(self, directory: Path) -> str:
        return directory.resolve().relative_to(self.top).as_posix()


def _pathspecs(top: Path, within: Sequence[Path]) -> list[str]:
    """Git pathspecs for the directories, or [] (everything) when one is outside `top`."""
    specs = []
    for directory in within:
        try:
            specs.append(directory.resolve().relative_to(top).as_posix())
        except ValueError:
            return []
    return sorted(set(specs)) if "." not in specs else []


class ReadSpec(TypedDict):
    """Files one context of a build reads: its directory, the source patterns of the steps
    that read it, and the Dockerfile whose own ignore file applies (the build context only)."""

    context: str  # "" for the build context, else the named context
    directory: str
    patterns: list[str]
    dockerfile: str | None


class Spec(TypedDict):
    """An image's fingerprint inputs apart from file contents, as plain data: what a warm
    run keeps of the config and the Dockerfile (`fingerprint_inputs.spec` makes it)."""

    dependencies: list[str]
    unknown: str | None  # why the image has no fingerprint, if it has none
    payload: dict[str, Any]  # everything hashed but the files and the dependencies
    reads: list[ReadSpec]


def compute(spec: Spec, index: FileIndex, done: Mapping[str, Fingerprint]) -> Fingerprint:
    """The fingerprint of an image from its spec, the files of `index`, and the fingerprints
    of the images it depends on (`done`)."""
    deps = {}
    for dep in spec["dependencies"]:
        if done[dep].value is None:
            return Fingerprint(None, f"image {dep} has no fingerprint: {done[dep].unknown}")
        deps[dep] = done[dep].value
    if spec["unknown"]:
        return Fingerprint(None, spec["unknown"])
    files: dict[str, list[tuple[str, str, str]]] = {}
    for read in spec["reads"]:
        directory = Path(read["directory"])
        # Named contexts read only their own .dockerignore, never <Dockerfile>.dockerignore.
        own = Path(read["dockerfile"]) if read["dockerfile"] else None
        matcher = IgnoreMatcher.from_file(ignore_file_for(directory, own))
        patterns = read["patterns"]
        found = [
            rel
            for rel in index.under(directory)
            if any(source_reads(p, rel) for p in patterns) and not matcher.ignored(rel)
        ]
        files[read["context"]] = [(rel, *index.entry(directory, rel)) for rel in found]
    payload = {**spec["payload"], "files": files, "dependencies": deps}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return Fingerprint(digest)


def _hash_file(path: Path) -> tuple[str, str]:
    """(git mode, git blob sha1) of a file on disk."""
    data = path.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
    mode = "100755" if path.stat().st_mode & stat.S_IXUSR else "100644"
    return mode, blob


def _walk(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and ".git" not in p.parts]
