"""Pure planning: the ordered buildx invocations that `build` runs and `--dry-run` prints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from buildpilot import graph
from buildpilot.cache import CacheRefs, cache_refs
from buildpilot.cachemounts import PersistedMount
from buildpilot.config import Project
from buildpilot.errors import ConfigError
from buildpilot.fingerprint import Fingerprint
from buildpilot.mirrors import mirror_inputs
from buildpilot.tags import Fields, missing_field, render, tag_fields

Output = Literal["load", "push", "digest"]  # digest: pushed by digest only, under no tag
LABEL_IMAGE = "dev.buildpilot.image"
LABEL_FINGERPRINT = "dev.buildpilot.fingerprint"


@dataclass(frozen=True)
class BuildOptions:
    """What the caller decided for the whole run."""

    output: Output = "load"
    branch: str = "main"
    default_branch: str = "main"
    target_branch: str | None = None  # a pull request's target: its cache is read too
    git_sha: str | None = None
    write_cache: bool = True
    no_cache: bool = False
    builder: str | None = None


@dataclass(frozen=True)
class BuildRequest:
    """One `docker buildx build` of one image; base images are filled in at run time."""

    image: str
    repository: str
    dependencies: tuple[str, ...]
    context: Path
    dockerfile: Path
    output: Output
    tags: tuple[str, ...]
    target: str | None = None
    args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    platforms: tuple[str, ...] = ()
    ssh: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()  # buildx --secret values: id=..,src=.. or id=..,env=..
    named_contexts: Mapping[str, str] = field(default_factory=dict)
    image_contexts: Mapping[str, str] = field(default_factory=dict)  # context name -> image
    cache: CacheRefs = field(default_factory=CacheRefs)
    attestations: bool = False
    no_cache: bool = False
    builder: str | None = None
    fingerprint: str | None = None
    fingerprint_tag: str | None = None  # e.g. "registry/name:fp-…", also pushed/loaded
    persist_mounts: tuple[PersistedMount, ...] = ()
    persist_dir: Path | None = None

    def with_fingerprint(self, fingerprint: Fingerprint) -> BuildRequest:
        """This request, labelled with its input fingerprint and tagged `fp-…` for reuse."""
        if fingerprint.value is None or fingerprint.tag is None:
            return self
        ref = f"{self.repository}:{fingerprint.tag}"
        return replace(
            self,
            labels={**self.labels, LABEL_FINGERPRINT: fingerprint.value},
            tags=(*self.tags, ref),
            fingerprint=fingerprint.value,
            fingerprint_tag=ref,
        )

    def argv(self, base_refs: Mapping[str, str]) -> list[str]:
        """The buildx argv (after `docker`); `base_refs` maps an image to its pinned ref."""
        contexts = {
            **self.named_contexts,
            **{
                name: f"docker-image://{base_refs[image]}"
                for name, image in self.image_contexts.items()
            },
        }
        options: list[tuple[str, list[str]]] = [
            ("--builder", [self.builder] if self.builder else []),
            ("--file", [str(self.dockerfile)]),
            ("--target", [self.target] if self.target else []),
            ("--build-arg", [f"{key}={value}" for key, value in self.args.items()]),
            ("--label", [f"{key}={value}" for key, value in self.labels.items()]),
            ("--build-context", [f"{key}={value}" for key, value in contexts.items()]),
            ("--platform", [",".join(self.platforms)] if self.platforms else []),
            ("--ssh", list(self.ssh)),
            ("--secret", list(self.secrets)),
            ("--cache-from", list(self.cache.cache_from)),
            ("--cache-to", list(self.cache.cache_to)),
        ]
        argv = ["buildx", "build", "--progress=rawjson"]
        for flag, values in options:
            for value in values:
                argv += [flag, value]
        if not self.attestations:
            argv.append("--provenance=false")
        if self.no_cache:
            argv.append("--no-cache")
        for tag in self.tags:
            argv += ["--tag", tag]
        if self.output == "digest":
            argv += [
                "--output",
                f"type=image,name={self.repository},push-by-digest=true,name-canonical=true,push=true",
            ]
        else:
            argv.append("--push" if self.output == "push" else "--load")
        argv.append(str(self.context))
        return argv


@dataclass(frozen=True)
class Plan:
    """Build requests for the selected images and their dependencies, in waves."""

    requests: Mapping[str, BuildRequest]
    waves: Sequence[Sequence[str]]

    @property
    def order(self) -> list[str]:
        """Every image, bases first."""
        return [name for wave in self.waves for name in wave]

    @property
    def bases(self) -> frozenset[str]:
        """The images others are built on (through `image:` contexts)."""
        return frozenset(b for r in self.requests.values() for b in r.image_contexts.values())


def dependency_graph(project: Project) -> dict[str, list[str]]:
    """image -> the images it depends on."""
    return {name: image.dependencies() for name, image in project.config.images.items()}


def make_plan(project: Project, selected: Sequence[str], options: BuildOptions) -> Plan:
    """The build requests for `selected` (default: all) and everything they depend on."""
    deps = dependency_graph(project)
    names = graph.closure(deps, selected or list(deps))
    return Plan(
        requests={name: _request(project, name, options) for name in names},
        waves=graph.waves(deps, names),
    )


def _request(project: Project, name: str, options: BuildOptions) -> BuildRequest:
    config = project.config
    image = project.image(name)
    fields = tag_fields(config.registry, name, options.git_sha, options.branch)
    tags = tuple(_render_tag(project, name, t, fields) for t in image.tags)
    mirrors = mirror_inputs(project, name)
    return BuildRequest(
        image=name,
        repository=f"{config.registry}/{name}",
        dependencies=tuple(image.dependencies()),
        context=project.context_dir(name),
        dockerfile=project.dockerfile(name),
        output=options.output,
        tags=tags,
        target=image.target,
        args={**mirrors.args, **image.args},
        labels={**image.labels, LABEL_IMAGE: name},
        platforms=tuple(image.platforms),
        ssh=tuple(image.ssh),
        secrets=tuple(
            f"id={s.id},src={(project.root / s.src).resolve()}"
            if s.src
            else f"id={s.id},env={s.env}"
            for s in image.secrets
        )
        + mirrors.secrets,
        named_contexts={
            key: _resolve_context(project, value)
            for key, value in image.contexts.items()
            if key not in image.image_contexts()
        },
        image_contexts=image.image_contexts(),
        cache=cache_refs(
            project.cache_settings(name),
            registry=config.registry,
            image=name,
            branch=options.branch,
            default_branch=options.default_branch,
            target_branch=options.target_branch,
            write=options.write_cache,
        ),
        attestations=config.attestations,
        no_cache=options.no_cache,
        builder=options.builder or config.builder,
    )


def _render_tag(project: Project, name: str, template: str, fields: Fields) -> str:
    missing = missing_field(template, fields)
    if missing:
        raise ConfigError(
            [
                f"{project.path}: images.{name}.tags: '{template}' needs {{{missing}}}, "
                "but the config is not in a git repository with a commit"
            ]
        )
    return render(template, fields)


def _resolve_context(project: Project, value: str) -> str:
    """A local named context becomes an absolute path; URLs and image refs pass through."""
    if "://" in value:
        return value
    return str((project.root / value).resolve())


def dry_run_refs(plan: Plan) -> dict[str, str]:
    """Placeholder pinned refs for showing commands before any base is built."""
    return {name: f"{req.repository}@<digest of {name}>" for name, req in plan.requests.items()}
