"""Pure planning: the ordered buildx invocations that `build` runs and `--dry-run` prints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from buildpilot import graph
from buildpilot.cache import cache_refs
from buildpilot.config import Project
from buildpilot.errors import ConfigError
from buildpilot.mirrors import mirror_inputs
from buildpilot.request import LABEL_IMAGE, BuildOptions, BuildRequest
from buildpilot.tags import Fields, missing_field, render, tag_fields


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
