"""The planning snapshot of a loaded config: what a forecast needs of it, as plain data.

Made after a full `plan` from the project, with the predictor's own code: per image its
Dockerfile and context (paths from the repository's top level), its ignore file's text, and
the stages its target builds, each with its FROM and its steps (line, text, why it cannot be
predicted, and what it reads: context paths, a stage, another image, a local named context
with its own ignore file, a remote source). Also the dependency graph, and the "guards": the
config, every Dockerfile and every ignore file that applies or could, whose change needs the
full predictor (it reads them at the ref). `warmpredict.py` forecasts from it.

A config with a path that goes through a symlink or `..` (or leaves the config's directory)
gets no snapshot, nor does one whose builds would read the snapshot itself (a context at
the config's directory copied whole, with no ignore file leaving `.buildpilot/` out):
those always take the full path.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from buildpilot import plancache, warmpredict
from buildpilot.changes import image_model, meta_reasons, short_instruction, stage_name
from buildpilot.config import IMAGE_CONTEXT_PREFIX, ImageConfig, Project
from buildpilot.dockerfile import DockerfileModel, Instruction, Source, Stage
from buildpilot.git import toplevel
from buildpilot.ignore import (
    DOCKERIGNORE,
    IgnoreMatcher,
    ignore_file_for,
    source_reads,
    source_root,
)
from buildpilot.plan import dependency_graph

if TYPE_CHECKING:
    from buildpilot.selection import Forecast


def remember(project: Project, forecast: Forecast, *, read_since: int) -> None:
    """Keep the snapshot of `project` for the next `plan`, after a full one made `forecast`
    from files read no earlier than `read_since` (`time.time_ns()`). Best effort: a snapshot
    that cannot be made or written costs the next run time, never this one."""
    try:
        made = snapshot(project, toplevel(project.root).resolve())
        if made is None:  # and none left from an earlier config
            plancache.forget(project.path)
            return
        body, watched = made
        prediction = forecast.prediction
        if prediction is not None and not set(body["guards"]) & set(prediction.changed_files):
            again = warmpredict.predict(
                body,
                forecast.order,
                since=prediction.since,
                base=prediction.base,
                changed=frozenset(prediction.changed_files),
            )
            if again != prediction:  # the two predictors disagree: the warm one is not used
                plancache.forget(project.path)
                return
        plancache.save(project.path, body, watched, read_since=read_since)
    except Exception:  # noqa: BLE001 - the plan is done; a snapshot is an extra
        return


def snapshot(project: Project, top: Path) -> tuple[dict[str, Any], list[tuple[str, str]]] | None:
    """The snapshot of `project` in the repository whose top level is `top` (a real path),
    and the paths it watches, each with how (a plancache kind); None when a path
    of the config is too unusual to vouch for (or paths are not `/`-separated)."""
    if os.sep != "/":
        return None
    try:
        return _Snapshot(project, top).make()
    except _UnusualPathError:
        return None


MAX_PATHSPECS = 64  # git matches every path against each of them


def _pathspecs(paths: set[str] | None) -> list[str] | None:
    """At most MAX_PATHSPECS paths that cover `paths`: none inside another, and each cut to
    fewer components if that is what it takes (a wider net still catches every change);
    None for the whole repository."""
    if paths is None:
        return None
    for depth in (None, 3, 2, 1):
        cut = sorted({tuple(path.split("/")[:depth]) for path in paths})
        kept: list[tuple[str, ...]] = []
        for parts in cut:
            if not kept or parts[: len(kept[-1])] != kept[-1]:
                kept.append(parts)
        if len(kept) <= MAX_PATHSPECS:
            return ["/".join(parts) for parts in kept]
    return None


class _UnusualPathError(Exception):
    """A path through a symlink or `..`, or outside the config's directory or the repository."""


class _Snapshot:
    def __init__(self, project: Project, top: Path) -> None:
        self.project = project
        self.root = project.root
        self.top = top
        self.root_text = str(project.root)
        self.top_text = str(top)
        self.watched: dict[str, str] = {}
        self.guards: set[str] = set()

    def make(self) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        config = self.project.config
        self.watch(self.plain(self.project.path), plancache.CONTENT)
        self.guards.add(self.rel(self.project.path))
        if config.mirrors.ca_bundle is not None:
            self.watch(self.plain(self.root / config.mirrors.ca_bundle), plancache.NODE)
        images = {name: self.image(name, image) for name, image in config.images.items()}
        if self.reads_the_cache(images):
            raise _UnusualPathError(plancache.location(self.project.path))
        body = {
            "top": str(self.top),
            "guards": sorted(self.guards),
            "reads": _pathspecs(self.reads(images)),
            "deps": dependency_graph(self.project),
            "images": images,
        }
        return body, list(self.watched.items())

    def reads(self, images: dict[str, dict[str, Any]]) -> set[str] | None:
        """Every path, from the top level, a forecast looks at: what the images' steps read
        and the guards; None when that is the whole repository."""
        paths = set(self.guards)
        for image in images.values():
            for step in (step for stage in image["stages"] for step in stage["steps"]):
                for source in step["sources"]:
                    if source["kind"] not in ("context", "dir"):
                        continue
                    directory = image["context"] if source["kind"] == "context" else source["dir"]
                    for pattern in source["paths"]:
                        root = source_root(pattern)
                        if root is None:
                            continue
                        path = "/".join(p for p in (directory, root) if p and p != ".")
                        if not path or "\\" in path:
                            return None
                        paths.add(path)
        return paths

    def reads_the_cache(self, images: dict[str, dict[str, Any]]) -> bool:
        """Whether a build would send the snapshot to BuildKit (a context that holds it, and
        a step that reads it past the ignore file): writing it would then change what the
        build reads, and the fingerprints, behind git's back."""
        snapshot = plancache.location(self.project.path)
        cache = [snapshot.parent, snapshot, snapshot.parent / ".gitignore"]
        cache.append(snapshot.with_name(f".{snapshot.name}.0.tmp"))
        paths = [self.rel(path) for path in cache]
        for image in images.values():
            for step in (step for stage in image["stages"] for step in stage["steps"]):
                for source in step["sources"]:
                    where = image if source["kind"] == "context" else source
                    if source["kind"] in ("context", "dir") and any(
                        _reads(where, source["paths"], path) for path in paths
                    ):
                        return True
        return False

    def image(self, name: str, image: ImageConfig) -> dict[str, Any]:
        context = self.plain(self.root / image.context)
        dockerfile = self.plain(self.project.dockerfile(name))
        self.watch(context, plancache.NODE)
        self.watch(dockerfile, plancache.CONTENT)
        dockerfile_rel = self.rel(dockerfile)
        self.guards.add(dockerfile_rel)
        for secret in image.secrets:  # only checked to be inside the repository
            if secret.src is not None:
                self.watch(self.plain(self.root / secret.src), plancache.NODE)
        model, _ = image_model(self.project, name, dockerfile_rel)
        stages = model.needed_stages(image.target)
        return {
            "dockerfile": dockerfile_rel,
            "context": self.rel(context),
            "ignore": self.ignore_text(context, dockerfile),
            "stages": [self.stage(stage, model, image) for stage in stages],
            "config_only": [asdict(r) for r in meta_reasons(stages, model, dockerfile_rel)],
        }

    def stage(self, stage: Stage, model: DockerfileModel, image: ImageConfig) -> dict[str, Any]:
        return {
            "index": stage.index,
            "name": stage_name(stage),
            "line": stage.line,
            "from": f"FROM {stage.base}",
            "parent": stage.base_stage if stage.base_kind == "stage" else None,
            "named": stage.base_kind == "named",
            "image": image.image_contexts().get(stage.base) if stage.base_kind == "named" else None,
            "steps": [self.step(i, model, image) for i in stage.instructions if i.step],
        }

    def step(
        self, instruction: Instruction, model: DockerfileModel, image: ImageConfig
    ) -> dict[str, Any]:
        sources = [] if instruction.unpredictable else instruction.sources
        return {
            "line": instruction.line,
            "text": short_instruction(instruction.original),
            "unpredictable": instruction.unpredictable,
            "sources": [
                found
                for source in sources
                if (found := self.source(source, model, image)) is not None
            ],
        }

    def source(
        self, source: Source, model: DockerfileModel, image: ImageConfig
    ) -> dict[str, Any] | None:
        """What changes._StagePredictor._source_reasons looks at (None: it finds nothing)."""
        if source.kind == "context":
            return {"kind": "context", "paths": list(source.paths)}
        if source.kind == "stage" and source.ref is not None:
            read = model.stage(source.ref)
            return None if read is None else {"kind": "stage", "stage": read.index}
        if source.kind == "named" and source.ref is not None:
            return self.named(source.ref, source.paths, image)
        if source.kind in ("url", "git"):
            return {
                "kind": "remote",
                "file": source.ref or "-",
                "detail": f"cannot predict: {source.kind} source",
            }
        return None

    def named(self, name: str, paths: tuple[str, ...], image: ImageConfig) -> dict[str, Any] | None:
        """changes._StagePredictor._named_reasons: another image, remote, or a directory."""
        value = image.contexts.get(name, "")
        if value.startswith(IMAGE_CONTEXT_PREFIX):
            return {"kind": "image", "image": image.image_contexts().get(name)}
        if "://" in value:
            return None
        directory = self.plain(self.root / value)
        self.watch(directory, plancache.NODE)
        return {
            "kind": "dir",
            "dir": self.rel(directory),
            "paths": list(paths),
            "ignore": self.ignore_text(directory, None),
        }

    def ignore_text(self, context: Path, dockerfile: Path | None) -> str | None:
        """The text of the ignore file a build uses (ignore.ignore_file_for), every file it
        could be watched and guarded."""
        candidates = [context / DOCKERIGNORE]
        if dockerfile is not None:
            candidates.insert(0, dockerfile.with_name(dockerfile.name + DOCKERIGNORE))
        for candidate in candidates:
            self.watch(self.plain(candidate), plancache.CONTENT)
            self.guards.add(self.rel(candidate))
        path = ignore_file_for(context, dockerfile)
        if path is None:
            return None
        text = path.read_bytes().decode("utf-8", "surrogateescape")
        IgnoreMatcher.from_text(text)  # a pattern BuildKit refuses: the full path says so
        return text

    def plain(self, path: Path) -> Path:
        """`path` itself, when it is its own real path inside the config's directory."""
        text = str(path)
        if not _inside(text, self.root_text) or ".." in text.split("/"):
            raise _UnusualPathError(path)
        if self.project.real_path(path) != path:
            raise _UnusualPathError(path)
        return path

    def rel(self, path: Path) -> str:
        """A real path from the repository's top level, `/`-separated."""
        text = str(path)
        if text == self.top_text:
            return "."
        if not _inside(text, self.top_text):
            raise _UnusualPathError(path)
        return text[len(self.top_text.rstrip("/")) + 1 :]

    def watch(self, path: Path, kind: str) -> None:
        """Watch `path`, and every directory from it up to the config's directory."""
        text = str(path)
        self.watched.setdefault(text, kind)
        while text != self.root_text:
            text = text.rpartition("/")[0] or "/"
            if text in self.watched or not _inside(text, self.root_text):
                break  # its parents are watched already, or outside
            self.watched[text] = plancache.NODE


def _reads(where: dict[str, Any], patterns: list[str], path: str) -> bool:
    """Whether a step reading `patterns` from the context or directory `where` (its top-level
    path and ignore text) reads the top-level `path`."""
    directory = where["context"] if "context" in where else where["dir"]
    if directory != "." and not path.startswith(directory + "/"):
        return False
    rel = path if directory == "." else path[len(directory) + 1 :]
    if not any(source_reads(pattern, rel) for pattern in patterns):
        return False
    return not (where["ignore"] and IgnoreMatcher.from_text(where["ignore"]).ignored(rel))


def _inside(path: str, directory: str) -> bool:
    """Whether `path` is `directory` or below it (both absolute and normalized)."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")
