"""The build pipeline: config -> plan -> pre-flight checks -> execute -> recorded run."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from buildpilot.backend import Backend
from buildpilot.config import Project
from buildpilot.console import Terminal
from buildpilot.errors import BuildpilotError, EngineError
from buildpilot.executor import DEFAULT_JOBS, Clock, ExecuteOptions, execute, utcnow
from buildpilot.git import GitInfo
from buildpilot.plan import BuildOptions, Output, Plan, dry_run_refs
from buildpilot.results import RunResult
from buildpilot.runs import new_run_id, save_run

FALLBACK_BRANCH = "main"
# Branch names as CI systems give them when the checkout is a detached HEAD.
CI_BRANCH_VARIABLES = ("GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME")


@dataclass(frozen=True)
class BuildSettings:
    """Everything `buildpilot build` was asked for."""

    images: Sequence[str] = ()
    output: Output = "load"
    jobs: int = DEFAULT_JOBS
    fail_fast: bool = False
    builder: str | None = None
    branch: str | None = None
    default_branch: str | None = None
    no_cache: bool = False
    write_cache: bool = True


def build_options(
    project: Project, settings: BuildSettings, git: GitInfo, env: Mapping[str, str]
) -> BuildOptions:
    """Resolve branch, default branch and builder from flags, config, git and CI, in that order."""
    branch = (
        settings.branch
        or git.branch
        or next((env[v] for v in CI_BRANCH_VARIABLES if env.get(v)), None)
        or FALLBACK_BRANCH
    )
    return BuildOptions(
        output=settings.output,
        branch=branch,
        default_branch=settings.default_branch
        or project.config.default_branch
        or git.default_branch
        or FALLBACK_BRANCH,
        git_sha=git.sha,
        write_cache=settings.write_cache,
        no_cache=settings.no_cache,
        builder=settings.builder,
    )


def dry_run_commands(plan: Plan) -> list[list[str]]:
    """The exact docker command of every image, bases first; base digests are placeholders."""
    refs = dry_run_refs(plan)
    return [["docker", *plan.requests[name].argv(refs)] for name in plan.order]


def preflight(project: Project, plan: Plan, env: Mapping[str, str]) -> list[str]:
    """Refuse what would fail late (missing secret files, no SSH agent); return warnings."""
    warnings: list[str] = []
    for name in plan.order:
        image = project.image(name)
        for index, secret in enumerate(image.secrets):
            where = f"{project.path}: images.{name}.secrets.{index}"
            if secret.src is not None and not (project.root / secret.src).is_file():
                raise BuildpilotError(f"{where}: secret file {project.root / secret.src} not found")
            if secret.env is not None and secret.env not in env:
                warnings.append(
                    f"{where}: environment variable {secret.env} is not set; "
                    f"secret '{secret.id}' is passed empty"
                )
        for index, ssh in enumerate(image.ssh):
            if ssh == "default" or ssh.endswith("=default"):
                _check_agent(env.get("SSH_AUTH_SOCK"), f"{project.path}: images.{name}.ssh.{index}")
    return warnings


def _check_agent(sock: str | None, where: str) -> None:
    if not sock:
        raise BuildpilotError(
            f"{where}: 'default' forwards your SSH agent, but SSH_AUTH_SOCK is not set",
            hint="Start one: `eval $(ssh-agent -s) && ssh-add <key>`, or give a key path "
            "(`default=/path/to/key`).",
        )
    try:
        is_socket = stat.S_ISSOCK(Path(sock).stat().st_mode)
    except OSError:
        is_socket = False
    if not is_socket:
        raise BuildpilotError(
            f"{where}: SSH_AUTH_SOCK={sock} is not a socket; is the agent running?"
        )


def run_build(
    project: Project,
    plan: Plan,
    settings: BuildSettings,
    *,
    backend: Backend,
    terminal: Terminal,
    git: GitInfo,
    branch: str,
    clock: Clock = utcnow,
    env: Mapping[str, str] | None = None,
) -> RunResult:
    """Check the engine, build the plan, and record the run under .buildpilot/."""
    env = os.environ if env is None else env
    for warning in preflight(project, plan, env):
        terminal.warn(warning)
    engine = backend.check(builder=settings.builder or project.config.builder)
    has_base_contexts = any(r.image_contexts for r in plan.requests.values())
    if engine.driver != "docker" and settings.output == "load" and has_base_contexts:
        raise EngineError(
            f"The builder uses the '{engine.driver}' driver, which cannot see images loaded into "
            "the local Docker store, so bases cannot reach their dependents that way.",
            hint="Add --push: bases then reach dependents through the registry, pinned by digest.",
        )
    started = clock()
    with terminal.live():
        execution = execute(
            plan,
            backend,
            terminal,
            ExecuteOptions(jobs=settings.jobs, fail_fast=settings.fail_fast),
            clock=clock,
        )
    run = RunResult(
        id=new_run_id(started),
        started=started,
        completed=clock(),
        config=str(project.path),
        images=execution.images,
        interrupted=execution.interrupted,
        branch=branch,
        commit=git.sha,
    )
    save_run(project.root, run)
    return run
