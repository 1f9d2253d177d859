"""`buildpilot release`: every image or none, tagged only once all of them have succeeded.

Images are built and pushed under no release tag: by digest alone where the builder can
(the docker driver cannot: there they go under their content-addressed `fp-` tag, which no
one deploys). Unaffected images are reused by their fingerprint, unbuilt. Only when every
image has succeeded are the release tags applied, with `buildx imagetools create`, which
tags a digest without pulling or pushing layers; if any image fails, no release tag is
written anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path

from buildpilot.backend import Backend
from buildpilot.cache import slug
from buildpilot.config import Project
from buildpilot.console import Terminal
from buildpilot.errors import BuildpilotError, GitError
from buildpilot.executor import Clock, retag_retried, utcnow
from buildpilot.git import GitInfo, run_git
from buildpilot.plan import Plan
from buildpilot.results import RunResult
from buildpilot.runlog import STATE_DIR
from buildpilot.status import Status
from buildpilot.workflow import BuildSettings, Prepared, run_build

LATEST = "latest"


@dataclass(frozen=True)
class ReleaseEntry:
    """One image of a release."""

    image: str
    digest: str
    tags: list[str]
    fingerprint: str | None
    commit: str | None
    source: str  # built | reused


@dataclass(frozen=True)
class ReleaseManifest:
    """What a release published."""

    version: str
    commit: str | None
    branch: str
    created: str
    run: str
    images: list[ReleaseEntry]

    def to_json(self) -> str:
        """The manifest as JSON."""
        return json.dumps(asdict(self), indent=2)


def release_version(root: Path, given: str | None) -> str:
    """`--version`, else the tag on HEAD; an error says how to give one."""
    if given:
        return given
    try:
        return run_git(root, "describe", "--tags", "--exact-match", "HEAD")
    except GitError:
        raise BuildpilotError(
            "no release version: HEAD carries no git tag and --version was not given",
            hint="Tag the commit (`git tag v1.2.3`) or pass --version 1.2.3.",
        ) from None


def release_tags(
    project: Project, name: str, *, version: str, git: GitInfo, branch: str, default_branch: str
) -> list[str]:
    """The release tags of one image, evaluated once per release; `latest` only on the
    default branch."""
    fields = {
        "registry": project.config.registry,
        "name": name,
        "version": version,
        "git_sha": git.sha or "",
        "short_sha": (git.sha or "")[:12],
        "branch": slug(branch),
    }
    tags = [template.format(**fields) for template in project.config.release.tags]
    on_default = branch == default_branch
    return [tag for tag in tags if on_default or tag.rsplit(":", 1)[-1] != LATEST]


def staging(prepared: Prepared, *, driver: str) -> Prepared:
    """The plan with every image pushed under no release tag: by digest alone, or (docker
    driver) under its `fp-` tag."""
    requests = {}
    for name, request in prepared.plan.requests.items():
        if driver != "docker":
            requests[name] = replace(request, output="digest", tags=())
        else:
            staging_tag = request.fingerprint_tag or f"{request.repository}:staging-{name}"
            requests[name] = replace(request, output="push", tags=(staging_tag,))
    return replace(prepared, plan=Plan(requests=requests, waves=prepared.plan.waves))


def failures(run: RunResult) -> list[str]:
    """`image: why` for every image that did not succeed."""
    ok = (Status.SUCCESS, Status.SKIPPED)
    return [
        f"{i.name}: {i.status.value} ({i.reason or 'see the run report'})"
        for i in run.images
        if i.status not in ok
    ]


def publish(
    project: Project,
    run: RunResult,
    prepared: Prepared,
    backend: Backend,
    *,
    version: str,
    git: GitInfo,
    branch: str,
    default_branch: str,
    now: datetime,
    warn: Callable[[str], None],
) -> ReleaseManifest:
    """Tag every image of a successful run (a transient registry error retried, each retry
    warned), then write the manifest under .buildpilot/."""
    entries = []
    for image in run.images:
        if image.digest is None:
            raise BuildpilotError(f"{image.name} has no digest; nothing was tagged")
        tags = release_tags(
            project,
            image.name,
            version=version,
            git=git,
            branch=branch,
            default_branch=default_branch,
        )
        entries.append(
            ReleaseEntry(
                image=image.name,
                digest=image.digest,
                tags=tags,
                fingerprint=image.fingerprint,
                commit=git.sha,
                source="built" if image.status is Status.SUCCESS else "reused",
            )
        )
    for entry in entries:
        repository = prepared.plan.requests[entry.image].repository
        source = f"{repository}@{entry.digest}"
        retag_retried(backend, source, entry.tags, image=entry.image, warn=warn, notes=[])
    manifest = ReleaseManifest(
        version=version,
        commit=git.sha,
        branch=branch,
        created=now.isoformat(timespec="seconds"),
        run=run.id,
        images=entries,
    )
    directory = project.root / STATE_DIR / "releases"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{slug(version)}.json").write_text(manifest.to_json() + "\n", encoding="utf-8")
    return manifest


@dataclass(frozen=True)
class ReleaseOutcome:
    """The run behind a release, and its manifest when every image succeeded."""

    run: RunResult
    manifest: ReleaseManifest | None
    failed: list[str]


def run_release(
    project: Project,
    prepared: Prepared,
    settings: BuildSettings,
    *,
    backend: Backend,
    terminal: Terminal,
    git: GitInfo,
    version: str,
    branch: str,
    default_branch: str,
    clock: Clock = utcnow,
) -> ReleaseOutcome:
    """Build or reuse every image under no release tag; tag them all only if all succeeded."""
    engine = backend.check(builder=settings.builder or project.config.builder)
    staged = staging(prepared, driver=engine.driver)
    run = run_build(
        project,
        staged,
        settings,
        backend=backend,
        terminal=terminal,
        git=git,
        branch=branch,
        clock=clock,
    )
    failed = failures(run)
    if failed or run.interrupted:
        return ReleaseOutcome(run=run, manifest=None, failed=failed or ["interrupted"])
    manifest = publish(
        project,
        run,
        staged,
        backend,
        version=version,
        git=git,
        branch=branch,
        default_branch=default_branch,
        now=clock(),
        warn=terminal.warn,
    )
    return ReleaseOutcome(run=run, manifest=manifest, failed=[])
