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
from typing import Any

from buildpilot.config import Project
from buildpilot.dockerfile import DockerfileModel
from buildpilot.errors import GitError
from buildpilot.git import dirty_files, toplevel, tracked_blobs
from buildpilot.ignore import IgnoreMatcher, ignore_file_for, source_reads
from buildpilot.mirrors import mirror_inputs

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
        specs = _pathspecs(top, within)
        entries: dict[str, tuple[str, str] | None] = dict(tracked_blobs(top, specs))
        for rel in dirty_files(top, specs):
            entries[rel] = None
        return cls(top, entries)

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


def context_dirs(project: Project, order: Sequence[str]) -> list[Path]:
    """Every local directory the images of `order` read: contexts and local named contexts."""
    dirs = []
    for name in order:
        dirs.append(project.context_dir(name))
        for value in project.image(name).contexts.values():
            if not value.startswith("image:") and "://" not in value:
                dirs.append((project.root / value).resolve())
    return dirs


def fingerprints(
    project: Project, order: Sequence[str], index: FileIndex
) -> dict[str, Fingerprint]:
    """The fingerprint of every image of `order` (bases first)."""
    result: dict[str, Fingerprint] = {}
    for name in order:
        result[name] = _fingerprint(project, name, index, result)
    return result


def _fingerprint(
    project: Project, name: str, index: FileIndex, done: Mapping[str, Fingerprint]
) -> Fingerprint:
    image = project.image(name)
    dockerfile = project.dockerfile(name)
    model = project.dockerfile_model(name)
    deps = {}
    for dep in image.dependencies():
        if done[dep].value is None:
            return Fingerprint(None, f"image {dep} has no fingerprint: {done[dep].unknown}")
        deps[dep] = done[dep].value
    instructions, reads, unknown = _inputs(model, image.target)
    if unknown:
        return Fingerprint(None, unknown)
    files: dict[str, list[tuple[str, str, str]]] = {}
    for context_name, patterns in reads.items():
        directory = _directory(project, name, context_name)
        if directory is None:
            continue
        # Named contexts read only their own .dockerignore, never <Dockerfile>.dockerignore.
        own = dockerfile if context_name == "" else None
        matcher = IgnoreMatcher.from_file(ignore_file_for(directory, own))
        read = [
            rel
            for rel in index.under(directory)
            if any(source_reads(p, rel) for p in patterns) and not matcher.ignored(rel)
        ]
        files[context_name] = [(rel, *index.entry(directory, rel)) for rel in read]
    mirrors = mirror_inputs(project, name, model)  # build args like any other
    payload: dict[str, Any] = {
        "version": VERSION,
        "instructions": instructions,
        "files": files,
        "args": dict(sorted({**mirrors.args, **image.args}.items())),
        "target": image.target,
        "platforms": image.platforms,
        "labels": dict(sorted(image.labels.items())),
        "contexts": dict(sorted(image.contexts.items())),
        "secrets": sorted([*(s.id for s in image.secrets), *mirrors.secret_ids]),
        "ssh": sorted(s.split("=", 1)[0] for s in image.ssh),
        "attestations": project.config.attestations,
        "dependencies": deps,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return Fingerprint(digest)


def _inputs(
    model: DockerfileModel, target: str | None
) -> tuple[list[str], dict[str, set[str]], str | None]:
    """Instruction texts, the paths read per context ("" = the build context), and why not."""
    instructions: list[str] = []
    reads: dict[str, set[str]] = {}
    for stage in model.needed_stages(target):
        instructions.append(stage.key)
        for instruction in stage.instructions:
            instructions.append(instruction.key or " ".join(instruction.original.split()))
            if instruction.unpredictable:
                return [], {}, instruction.unpredictable
            for source in instruction.sources:
                if source.kind == "context":
                    reads.setdefault("", set()).update(source.paths)
                elif source.kind == "named" and source.ref is not None:
                    reads.setdefault(source.ref, set()).update(source.paths)
                elif source.kind in ("url", "git"):
                    return [], {}, f"{instruction.cmd} {source.ref}: a remote source"
    return instructions, reads, None


def _directory(project: Project, name: str, context_name: str) -> Path | None:
    """The local directory behind a context name; None for image and remote contexts."""
    if context_name == "":
        return project.context_dir(name)
    value = project.image(name).contexts.get(context_name, "")
    if value.startswith("image:") or "://" in value or not value:
        return None  # an image context is covered by that image's fingerprint
    return (project.root / value).resolve()


def _hash_file(path: Path) -> tuple[str, str]:
    """(git mode, git blob sha1) of a file on disk."""
    data = path.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
    mode = "100755" if path.stat().st_mode & stat.S_IXUSR else "100644"
    return mode, blob


def _walk(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and ".git" not in p.parts]
