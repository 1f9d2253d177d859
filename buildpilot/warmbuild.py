"""`buildpilot build [--push]` when every image exists, without the full CLI.

A no-change run reuses every image: fingerprint, ask the registry (with `--push`) or the local
engine where each image is, add the run's tags. That takes milliseconds; loading typer,
pydantic, rich and python-on-whales takes far longer. The console entry (`entry.py`) tries
this first. It takes only what it is sure of, and returns None (the full CLI then runs, and
reports any error) for anything else:

- `build [IMAGES]... [--skip-existing] [--push]`, with `-c/--config PATH` and `-j/--jobs N`;
- output to a pipe, a file or a CI log without escape codes, and no GitHub Actions or GitLab
  CI job (those get groups and sections that only the full CLI writes);
- a reuse snapshot of the config that still holds (`reuseinputs`, `plancache`);
- secrets and SSH mounts the run can hand over as they are, and no size budget;
- without `--push`: no `builder:` in the config, and an engine the docker CLI reaches over a
  local socket (`engineapi`);
- every selected image has a fingerprint, and the registry or the local store has an image
  under its `fp-` tag.

Then it does what the full path does for such a run, with the full path's own pieces (git,
the CI policy, fingerprints, decisions, registry and engine calls, run files), and prints
the same lines and summary table.

When an image is missing it declines, but first starts the build of each missing image
whose bases exist, with the request the full path will make (`prebuild`), and lets each
get past its start before it goes on (`prebuild.settle`): the build runs while the full CLI
loads, and the full path takes it over.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from buildpilot import buildx_plugin, graph, handoff, plancache, prebuild
from buildpilot.ci import detect
from buildpilot.engineapi import Engine, image_id
from buildpilot.fingerprint import FileIndex, Fingerprint, compute
from buildpilot.git import git_info
from buildpilot.request import (
    DEFAULT_JOBS,
    BuildOptions,
    options_data,
    pinned_ref,
    request_from_data,
    run_options,
)
from buildpilot.runlog import STATE_DIR, new_run_id, write_run
from buildpilot.runview import summary_text
from buildpilot.selection import Action, decide
from buildpilot.status import Status
from buildpilot.tags import digest_tag, missing_field, render, tag_fields, tag_name
from buildpilot.texttable import NOT_APPLICABLE, short_digest, truncate
from buildpilot.warmplan import config_file, plain_width

WORKERS = 8  # registry or engine requests at once, as the full path sends them


class _DeclineError(Exception):
    """Not a run this path takes: the full CLI runs."""


class _Options(NamedTuple):
    images: list[str]
    config: str | None
    push: bool
    jobs: int


@dataclass(frozen=True)
class _Timeline:
    failed_step: str | None = None
    log_tail: Sequence[str] = ()


@dataclass(frozen=True)
class _Image:
    """A reused image's result, as `results.ImageResult` holds it."""

    name: str
    digest: str
    tags: Sequence[str]
    reason: str
    fingerprint: str
    duration: float = 0.0
    steps_total: int = 0
    steps_cached: int = 0
    timeline: _Timeline = field(default_factory=_Timeline)

    status: Status = Status.SKIPPED


@dataclass(frozen=True)
class _Run:
    """A run of reused images, as `results.RunResult` holds it."""

    id: str
    started: datetime
    completed: datetime
    config: str
    images: Sequence[_Image]
    branch: str
    commit: str | None
    interrupted: bool = False

    @property
    def duration(self) -> float:
        return (self.completed - self.started).total_seconds()


def run(argv: Sequence[str], env: Mapping[str, str]) -> str | None:
    """The whole output of `buildpilot build ARGV` when it only reuses, or None: the full CLI
    must run. Registry tags are only written once every image is known to exist."""
    try:
        options = _options(argv)
        config = None if options is None else config_file(options.config)
        width = plain_width()
        if options is None or config is None or width is None:
            return None
        snapshot = plancache.load(config, plancache.REUSE)
        if snapshot is None:
            return None
        return _reuse(options, config, snapshot, width, env)
    except Exception:  # noqa: BLE001 - any doubt at all: the full CLI runs, and reports
        return None


def _reuse(
    options: _Options, config: Path, snapshot: dict[str, Any], width: int, env: Mapping[str, str]
) -> str:
    deps: dict[str, list[str]] = snapshot["deps"]
    if any(name not in deps for name in options.images):
        raise _DeclineError  # the full CLI names the unknown image
    names = graph.closure(deps, options.images or list(deps))
    order = [name for wave in graph.waves(deps, names) for name in wave]
    images = snapshot["images"]
    if not all(_ready(images[name], env) for name in order):
        raise _DeclineError
    root = Path(snapshot["root"])
    within = [Path(d) for d in snapshot["context_dirs"]]
    with ThreadPoolExecutor(max_workers=2) as pool:
        info = pool.submit(git_info, root)
        index = FileIndex.scan(root, within)
        git = info.result()
    if git.sha is None:
        raise _DeclineError
    ci = detect(env, git, write_cache=snapshot["cache_write"])
    if ci.system != "local":
        raise _DeclineError  # GitHub's groups and GitLab's sections: the full CLI's
    run_as = run_options(
        git,
        ci,
        output="push" if options.push else "load",
        config_default_branch=snapshot["default_branch"],
    )
    branch = run_as.branch
    prints: dict[str, Fingerprint] = {}
    for name in order:
        prints[name] = compute(images[name]["spec"], index, prints)
    decisions = decide(order, deps, prediction=None, fingerprints=prints, skip_existing=True)
    if any(d.action is not Action.REUSE for d in decisions.values()):
        raise _DeclineError
    tags = {
        name: _tags(
            images[name],
            name,
            prints[name],
            snapshot,
            sha=run_as.git_sha,
            branch=branch,
            push=options.push,
        )
        for name in order
    }
    early = _Early(snapshot, run_as, order, tags, prints, jobs=options.jobs)
    if options.push:
        digests, started = _reuse_remote(order, images, tags, early)
    elif snapshot["builder"] is None and (engine := Engine.local(env)) is not None:
        digests, started = _reuse_local(
            order, images, tags, set(snapshot["bases"]), engine, early=early
        )
    else:
        raise _DeclineError
    results = [
        _Image(
            name=name,
            digest=digests[name],
            tags=tags[name],
            reason=f"reused {tags[name][-1]} ({decisions[name].reason})",
            fingerprint=prints[name].value or "",
        )
        for name in order
    ]
    done = _Run(
        id=new_run_id(started),
        started=started,
        completed=datetime.now(UTC),
        config=str(config),
        images=results,
        branch=branch,
        commit=git.sha,
    )
    summary = _summary(done, width)
    if summary is None:
        raise _DeclineError  # rich must lay it out: the full CLI runs (and tags again)
    write_run(root, done, _record(done))
    from buildpilot.ci_files import write_ci_files  # noqa: PLC0415 - xml: only at the end

    write_ci_files(root / STATE_DIR, done)
    lines = [f"cache: {ci.why}"]
    lines += [f"[{image.name}] skipped: {truncate(image.reason, 200)}" for image in results]
    return "".join(f"{line}\n" for line in lines) + summary


def _reuse_remote(
    order: list[str], images: dict[str, Any], tags: dict[str, list[str]], early: _Early
) -> tuple[dict[str, str], datetime]:
    """The registry digest of each image, with the run's tags on it; and when tagging began."""
    from buildpilot import registry  # noqa: PLC0415 - urllib and ssl: only with --push

    refs = sorted({ref for name in order for ref in tags[name]})
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        # Every tag at once: the fp- tags say whether the images exist, the others whether
        # they already point at them (a tag that does needs no write).
        heads = dict(zip(refs, pool.map(registry.manifest_digest, refs), strict=True))
        handoff.leave(handoff.REGISTRY, heads)
        digests = {name: heads[tags[name][-1]] or "" for name in order}
        if not all(digests.values()):
            early.start(
                {name: digest for name, digest in digests.items() if digest},
                {name for name, digest in digests.items() if not digest},
            )
            early.settle()
            raise _DeclineError
        started = datetime.now(UTC)
        stale = {name: [t for t in tags[name] if heads[t] != digests[name]] for name in order}
        list(pool.map(lambda n: _retag(images[n], digests[n], stale[n]), order))
    return digests, started


def _reuse_local(
    order: list[str],
    images: dict[str, Any],
    tags: dict[str, list[str]],
    bases: set[str],
    engine: Engine,
    *,
    early: _Early,
) -> tuple[dict[str, str], datetime]:
    """The local image ID of each image, with the run's tags and, for a base, the digest tag
    its dependents are pinned to (`executor.pin`); and when tagging began."""
    found: dict[str, dict[str, Any]] = {}
    digests: dict[str, str] = {}
    missing: set[str] = set()

    def pin(base: str, ref: str) -> None:  # as executor.pin tags a loaded base
        if ref not in (found[base].get("RepoTags") or ()):
            engine.tag(digests[base], ref)

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        answers: dict[str, dict[str, Any] | None] = {}
        for batch in early.batches():  # a missing image starts as soon as it can
            asked = {pool.submit(engine.inspect, tags[name][-1]): name for name in batch}
            for future in as_completed(asked):
                name = asked[future]
                answers[name] = image = future.result()
                if image is not None and (digest := image_id(image)) is not None:
                    found[name], digests[name] = image, digest
                else:
                    missing.add(name)
                if missing:
                    early.start(digests, missing, pin)
            early.settle()  # before the next batch
        handoff.leave(handoff.ENGINE, {tags[name][-1]: answers[name] for name in order})
        if missing:
            raise _DeclineError
        started = datetime.now(UTC)
        pins = {n: [digest_tag(images[n]["repository"], digests[n])] for n in bases & set(order)}
        wanted = [
            (digests[name], tag)
            for name in order
            for tag in [*tags[name], *pins.get(name, [])]
            if tag not in (found[name].get("RepoTags") or ())
        ]
        list(pool.map(lambda pair: engine.tag(*pair), wanted))
    return digests, started


@dataclass
class _Early:
    """Starts the builds of missing images, as the full path will run them (`prebuild`)."""

    snapshot: dict[str, Any]
    run_as: BuildOptions
    order: list[str]
    tags: dict[str, list[str]]
    prints: dict[str, Fingerprint]
    jobs: int
    started: set[str] = field(default_factory=set)

    def batches(self) -> list[list[str]]:
        """The images to look up, in two batches: the images whose fingerprint is not the
        one the snapshot's run had (likely missing) with their bases, then the rest, so
        that a missing image starts before the others are answered."""
        last: dict[str, str | None] = self.snapshot.get("fingerprints") or {}
        deps: dict[str, list[str]] = self.snapshot["deps"]
        changed = [n for n in self.order if n in last and last[n] != self.prints[n].value]
        first = {n for name in changed for n in [name, *deps[name]]}
        return [[n for n in self.order if n in first], [n for n in self.order if n not in first]]

    def settle(self) -> None:
        """Let the builds started get past their start before going on (`prebuild.settle`)."""
        if self.started:
            prebuild.settle()

    def start(
        self,
        digests: Mapping[str, str],
        missing: Collection[str],
        pin: Callable[[str, str], None] = lambda base, ref: None,
    ) -> None:
        """Start each `missing` image whose bases all exist (in `digests`), on bases pinned
        as the full path pins reused ones (`pin` makes a local pin exist); only when the
        full CLI follows in this process, with the options the snapshot was made with."""
        stored = self.snapshot.get("requests") or {}
        if not handoff.armed() or self.snapshot.get("options") != options_data(self.run_as):
            return
        deps: dict[str, list[str]] = self.snapshot["deps"]
        for name in self.order:
            needs = [name, *deps[name]]
            if name not in missing or name in self.started or len(self.started) >= self.jobs:
                continue
            if not all(stored.get(n) for n in needs) or not all(b in digests for b in deps[name]):
                continue
            requests = {
                n: request_from_data(stored[n], tuple(self.tags[n][:-1]), self.prints[n])
                for n in needs
            }
            refs = {base: pinned_ref(requests[base], digests[base]) for base in deps[name]}
            for base, ref in refs.items():
                pin(base, ref)
            argv = requests[name].argv(refs)
            if prebuild.start([*buildx_plugin.command(["docker"]), *argv[1:]]):
                self.started.add(name)


def _tags(
    image: dict[str, Any],
    name: str,
    fingerprint: Fingerprint,
    snapshot: dict[str, Any],
    *,
    sha: str | None,
    branch: str,
    push: bool,
) -> list[str]:
    """The run's tags of the image, its fp- tag last, as `plan.make_plan` renders them."""
    fields = tag_fields(snapshot["registry"], name, sha, branch)
    if any(missing_field(t, fields) for t in image["tags"]):
        raise _DeclineError
    tags = [render(t, fields) for t in image["tags"]]
    tags.append(f"{image['repository']}:{fingerprint.tag}")
    if push:
        from buildpilot import registry  # noqa: PLC0415 - urllib and ssl: only with --push

        own = registry.Repository.parse(image["repository"])
        if any(registry.Repository.parse(t) != own for t in tags):
            raise _DeclineError  # another repository: `imagetools create`, full path
    return tags


def _ready(image: dict[str, Any], env: Mapping[str, str]) -> bool:
    """Whether the full path would hand this image's secrets and SSH over without a word."""
    if image["sized"] or not all(Path(path).is_file() for path in image["secret_files"]):
        return False
    if not all(name in env for name in image["secret_envs"]):
        return False
    if image["ssh_agent"]:
        sock = env.get("SSH_AUTH_SOCK")
        try:
            return bool(sock) and stat.S_ISSOCK(Path(sock or "").stat().st_mode)
        except OSError:
            return False
    return True


def _retag(image: dict[str, Any], digest: str, tags: list[str]) -> None:
    """`tags` on the image, as `DockerBackend.retag_remote` puts them."""
    if not tags:
        return
    from buildpilot import registry  # noqa: PLC0415 - urllib and ssl: only with --push

    repository = registry.Repository.parse(image["repository"])
    registry.tag_digest(repository, digest, [name for t in tags if (name := tag_name(t))])


def _record(run: _Run) -> str:
    """The run as `RunResult.model_dump_json(indent=2)` writes it."""
    images: list[dict[str, Any]] = [
        {
            "name": image.name,
            "status": "skipped",
            "duration": image.duration,
            "started": None,
            "completed": None,
            "timeline": {
                "steps": [],
                "stages": [],
                "phases": [],
                "failed_step": None,
                "log_tail": [],
                "cache_export_failed": False,
            },
            "digest": image.digest,
            "tags": list(image.tags),
            "reason": image.reason,
            "command": [],
            "warnings": [],
            "fingerprint": image.fingerprint,
            "prediction": None,
            "size": None,
        }
        for image in run.images
    ]
    record = {
        "id": run.id,
        "started": _timestamp(run.started),
        "completed": _timestamp(run.completed),
        "config": run.config,
        "images": images,
        "interrupted": run.interrupted,
        "branch": run.branch,
        "commit": run.commit,
        "since": None,
    }
    return json.dumps(record, indent=2, ensure_ascii=False)


def _timestamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _summary(run: _Run, width: int) -> str | None:
    """`report.summary_table(run)` as rich prints it `width` cells wide without escape codes."""
    na = NOT_APPLICABLE  # a reused image ran no step
    rows = [(i.name, i.status.value, na, na, na, short_digest(i.digest)) for i in run.images]
    return summary_text(run, rows, width)


def _options(argv: Sequence[str]) -> _Options | None:
    """`[IMAGES]... [--skip-existing] [--push] [-c/--config PATH] [-j/--jobs N]`, each option
    once; None for anything else."""
    images: list[str] = []
    values: dict[str, str] = {}
    flags: set[str] = set()
    words = list(argv)
    while words:
        word = words.pop(0)
        name, equals, value = word.partition("=")
        if name in ("--config", "-c", "--jobs", "-j") and not (equals and name in ("-c", "-j")):
            if not equals:
                value = words.pop(0) if words else ""
            key = {"-c": "--config", "-j": "--jobs"}.get(name, name)
            if key in values or not value or value.startswith("-"):
                return None
            values[key] = value
        elif word in ("--skip-existing", "--push") and word not in flags:
            flags.add(word)
        elif word.startswith("-") or not word:
            return None
        else:
            images.append(word)
    jobs = values.get("--jobs", str(DEFAULT_JOBS))
    if not jobs.isdigit() or int(jobs) < 1:
        return None
    return _Options(images, values.get("--config"), push="--push" in flags, jobs=int(jobs))
