"""The build pipeline: config -> plan -> pre-flight checks -> execute -> recorded run."""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from buildpilot import graph
from buildpilot.backend import Backend, Found
from buildpilot.cachemounts import persisted_mounts
from buildpilot.changes import Prediction, check_against, predict
from buildpilot.ci import CiContext, detect
from buildpilot.config import Project
from buildpilot.console import Terminal
from buildpilot.errors import BuildpilotError, EngineError
from buildpilot.executor import (
    Clock,
    ExecuteOptions,
    Reused,
    execute,
    pin,
    retag_retried,
    utcnow,
)
from buildpilot.fingerprint import FileIndex, Fingerprint
from buildpilot.fingerprint_inputs import context_dirs
from buildpilot.fingerprint_inputs import fingerprints as fingerprint_all
from buildpilot.git import GitInfo, changed_files, file_at, git_info
from buildpilot.plan import Plan, dependency_graph, dry_run_refs, make_plan
from buildpilot.request import DEFAULT_JOBS, BuildOptions, BuildRequest, Output, run_options
from buildpilot.results import ImageResult, RunResult
from buildpilot.runlog import new_run_id
from buildpilot.runs import save_run
from buildpilot.selection import Action, Decision, Forecast, decide
from buildpilot.sizing import check_sizes
from buildpilot.status import Status


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
    target_branch: str | None = None
    no_cache: bool = False
    write_cache: bool = True
    since: str | None = None
    skip_existing: bool = False
    size: bool = False  # measure every built image, not only those with a size budget


@dataclass(frozen=True)
class RunContext:
    """Where a run happens: git, the CI system, and the build options they resolve to."""

    git: GitInfo
    ci: CiContext
    options: BuildOptions


def resolve(project: Project, settings: BuildSettings, env: Mapping[str, str]) -> RunContext:
    """Branches and cache policy from flags, then config, then CI, then git."""
    git = git_info(project.root)
    policy = project.config.cache.write if settings.write_cache else "never"
    ci = detect(env, git, write_cache=policy)
    options = run_options(
        git,
        ci,
        output=settings.output,
        config_default_branch=project.config.default_branch,
        branch=settings.branch,
        default_branch=settings.default_branch,
        target_branch=settings.target_branch,
        no_cache=settings.no_cache,
        builder=settings.builder,
    )
    return RunContext(git=git, ci=ci, options=options)


def prepare_run(
    project: Project, settings: BuildSettings, env: Mapping[str, str]
) -> tuple[RunContext, Prepared]:
    """Resolve where the run happens, then plan, fingerprint and forecast it."""
    context = resolve(project, settings, env)
    plan = make_plan(project, settings.images, context.options)
    prepared = prepare(project, plan, since=settings.since, skip_existing=settings.skip_existing)
    return context, prepared


def dry_run_lines(prepared: Prepared) -> list[str]:
    """The exact docker command of every image, bases first (base digests are placeholders);
    images not built get a comment saying why."""
    refs = dry_run_refs(prepared.plan)
    lines = []
    for name in prepared.plan.order:
        decision = prepared.decisions[name]
        request = prepared.plan.requests[name]
        command = [shlex.join(["docker", *request.argv(refs)])]
        if request.added_tags:
            command.append(f"# then tagged in the registry: {shlex.join(request.added_tags)}")
        if decision.action is Action.SKIP:
            lines.append(f"# skip {name}: {decision.reason}")
        elif decision.action is Action.REUSE:
            lines += [f"# reuse {request.fingerprint_tag} if it exists, else:", *command]
        else:
            lines += command
    return lines


def make_forecast(
    project: Project, selected: Sequence[str], *, since: str | None, fingerprints: bool
) -> Forecast:
    """Forecast a build without touching the engine."""
    deps = dependency_graph(project)
    names = graph.closure(deps, selected or list(deps))
    order = [name for wave in graph.waves(deps, names) for name in wave]
    prediction = forecast(project, order, since) if since else None
    prints = (
        fingerprint_all(project, order, FileIndex.scan(project.root, context_dirs(project, order)))
        if fingerprints
        else {}
    )
    decisions = decide(order, deps, prediction=prediction, fingerprints=prints, skip_existing=False)
    to_build = [n for n in order if decisions[n].action is Action.BUILD]
    return Forecast(
        order=order,
        waves=graph.waves(deps, to_build),
        prediction=prediction,
        decisions=decisions,
        fingerprints=prints,
    )


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


@dataclass(frozen=True)
class Prepared:
    """A plan with fingerprints, the forecast since a ref, and what to do with each image."""

    plan: Plan
    fingerprints: Mapping[str, Fingerprint]
    prediction: Prediction | None
    decisions: Mapping[str, Decision]


def forecast(project: Project, order: Sequence[str], since: str) -> Prediction:
    """Which images and steps the files changed since `since` invalidate."""
    changes = changed_files(project.root, since)
    return predict(
        project,
        order,
        top=changes.root,
        since=since,
        base=changes.base,
        changed=changes.files,
        read_at_base=lambda rel: file_at(changes.root, changes.base, rel),
    )


def prepare(project: Project, plan: Plan, *, since: str | None, skip_existing: bool) -> Prepared:
    """Fingerprint every image, forecast the change, and decide what each image needs."""
    index = FileIndex.scan(project.root, context_dirs(project, plan.order))
    prints = fingerprint_all(project, plan.order, index)
    requests = {
        name: _with_persisted_mounts(project, r.with_fingerprint(prints[name]))
        for name, r in plan.requests.items()
    }
    plan = Plan(requests=requests, waves=plan.waves)
    prediction = forecast(project, plan.order, since) if since else None
    deps = {name: list(request.dependencies) for name, request in requests.items()}
    decisions = decide(
        plan.order, deps, prediction=prediction, fingerprints=prints, skip_existing=skip_existing
    )
    return Prepared(plan=plan, fingerprints=prints, prediction=prediction, decisions=decisions)


def _with_persisted_mounts(project: Project, request: BuildRequest) -> BuildRequest:
    """The request with the cache mounts to carry between runners, for images that opt in."""
    image = project.image(request.image)
    if not image.persist_cache_mounts:
        return request
    model = project.dockerfile_model(request.image)
    mounts = persisted_mounts(model, image.target, image.image_contexts())
    return replace(
        request,
        persist_mounts=mounts,
        persist_dir=(project.root / project.config.cache_mounts_dir).resolve(),
    )


def run_build(
    project: Project,
    prepared: Prepared,
    settings: BuildSettings,
    *,
    backend: Backend,
    terminal: Terminal,
    git: GitInfo,
    branch: str,
    clock: Clock = utcnow,
    env: Mapping[str, str] | None = None,
) -> RunResult:
    """Check the engine, build what the plan needs, and record the run under .buildpilot/."""
    env = os.environ if env is None else env
    plan = prepared.plan
    for warning in preflight(project, plan, env):
        terminal.warn(warning)
    with ThreadPoolExecutor(max_workers=1) as pool:  # the engine probe beside the lookups
        probe = pool.submit(backend.check, builder=settings.builder or project.config.builder)
        existing = _lookup(plan, _to_look_up(prepared), backend)
        engine = probe.result()
    has_base_contexts = any(r.image_contexts for r in plan.requests.values())
    if engine.driver != "docker" and settings.output == "load" and has_base_contexts:
        raise EngineError(
            f"The builder uses the '{engine.driver}' driver, which cannot see images loaded into "
            "the local Docker store, so bases cannot reach their dependents that way.",
            hint="Add --push: bases then reach dependents through the registry, pinned by digest.",
        )
    started = clock()
    skipped = {
        name: ImageResult(
            name=name,
            status=Status.SKIPPED,
            reason=d.reason,
            fingerprint=plan.requests[name].fingerprint,
        )
        for name, d in prepared.decisions.items()
        if d.action is Action.SKIP
    }
    reused = _find_reusable(
        plan,
        prepared.decisions,
        existing,
        backend,
        retag=settings.skip_existing,
        warn=terminal.warn,
    )
    speculative = (
        {} if settings.no_cache else _speculate(plan, existing, backend, skip=[*skipped, *reused])
    )
    to_run = Plan(
        requests={n: r for n, r in plan.requests.items() if n not in skipped},
        waves=[[n for n in wave if n not in skipped] for wave in plan.waves],
    )
    with terminal.live():
        for result in skipped.values():
            terminal.image_finished(result)
        execution = execute(
            to_run,
            backend,
            terminal,
            ExecuteOptions(jobs=settings.jobs, fail_fast=settings.fail_fast),
            reused=reused,
            speculative=speculative,
            clock=clock,
        )
    built = {image.name: image for image in execution.images}
    images = [_checked(built.get(name) or skipped[name], prepared) for name in plan.order]
    if not execution.interrupted:
        images = check_sizes(
            project, images, backend=backend, terminal=terminal, every=settings.size
        )
    run = RunResult(
        id=new_run_id(started),
        started=started,
        completed=clock(),
        config=str(project.path),
        images=images,
        interrupted=execution.interrupted,
        branch=branch,
        commit=git.sha,
        since=prepared.prediction.since if prepared.prediction else None,
    )
    save_run(project.root, run)
    return run


def _lookup(plan: Plan, names: Iterable[str], backend: Backend) -> dict[str, Found]:
    """The existing image built from each named request's inputs (by its fingerprint tag),
    for those that have one: one batch per store."""
    found: dict[str, Found] = {}
    for registry in (True, False):
        refs = {
            tag: name
            for name in names
            if (tag := plan.requests[name].fingerprint_tag)
            and (plan.requests[name].output == "push") == registry
        }
        found.update(
            {refs[ref]: item for ref, item in backend.find(list(refs), registry=registry).items()}
        )
    return found


def _to_look_up(prepared: Prepared) -> list[str]:
    """Images whose existing build matters: those to reuse, and bases to speculate on."""
    bases = prepared.plan.bases
    return [
        name
        for name, decision in prepared.decisions.items()
        if decision.action is Action.REUSE or (decision.action is Action.BUILD and name in bases)
    ]


def _find_reusable(
    plan: Plan,
    decisions: Mapping[str, Decision],
    existing: Mapping[str, Found],
    backend: Backend,
    *,
    retag: bool,
    warn: Callable[[str], None],
) -> dict[str, Reused]:
    """Images to reuse that exist, retagged in parallel (a retry of a tag is warned and
    kept in the image's warnings); the others are built."""
    wanted = [n for n, d in decisions.items() if d.action is Action.REUSE and n in existing]

    def reuse(name: str) -> Reused:
        request, found = plan.requests[name], existing[name]
        retries: list[str] = []
        if retag:
            _retag(request, found, backend, warn, retries)
        result = ImageResult(
            name=name,
            status=Status.SKIPPED,
            digest=found.digest,
            tags=list(request.tags) if retag else [request.fingerprint_tag or ""],
            reason=f"reused {request.fingerprint_tag} ({decisions[name].reason})",
            fingerprint=request.fingerprint,
            warnings=retries,
        )
        base = name in plan.bases  # only dependents use the pinned ref, as after a build
        pinned = pin(request, found.digest, backend, found.tags) if base else None
        return Reused(result=result, pinned=pinned)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(wanted, pool.map(reuse, wanted), strict=True))


def _speculate(
    plan: Plan, existing: Mapping[str, Found], backend: Backend, *, skip: Iterable[str]
) -> dict[str, str]:
    """Pinned refs of existing images with the fingerprint of each base about to be built."""
    return {
        base: pin(plan.requests[base], existing[base].digest, backend, existing[base].tags)
        for base in plan.bases.difference(skip).intersection(existing)
    }


def _retag(
    request: BuildRequest,
    found: Found,
    backend: Backend,
    warn: Callable[[str], None],
    retries: list[str],
) -> None:
    if request.output == "push":
        source = f"{request.repository}@{found.digest}"
        retag_retried(backend, source, request.tags, image=request.image, warn=warn, notes=retries)
    else:
        for tag in request.tags:
            if tag not in found.tags:
                backend.tag(found.digest, tag)


def _checked(image: ImageResult, prepared: Prepared) -> ImageResult:
    """The image's result with its forecast beside BuildKit's cached flags."""
    fingerprint = (
        prepared.plan.requests[image.name].fingerprint
        if image.name in prepared.plan.requests
        else None
    )
    update: dict[str, object] = {"fingerprint": image.fingerprint or fingerprint}
    if prepared.prediction is not None and image.name in prepared.prediction.images:
        ran = image.status in (Status.SUCCESS, Status.FAILED)
        update["prediction"] = check_against(
            prepared.prediction.images[image.name],
            prepared.prediction.since,
            image.timeline.steps if ran else None,
        )
    return image.model_copy(update=update)
