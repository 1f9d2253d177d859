"""Cache mounts that survive a fresh runner: export them after a build, inject them before.

No BuildKit cache backend carries `RUN --mount=type=cache` content (moby/buildkit#1474), so
a fresh CI runner starts every cache mount empty. For an image that opts in, buildpilot
copies each of its cache mounts (by `id`) into a directory after the build, through the
same builder, and copies it back in before the next build; CI's own cache (`actions/cache`,
GitLab `cache:`) carries the directory between jobs. The copy runs in the image the mount's
stage starts from, which has the shell its `RUN` steps used.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from buildpilot.cache import slug
from buildpilot.dockerfile import DockerfileModel, Stage
from buildpilot.results import PhaseTiming

if TYPE_CHECKING:
    from buildpilot.backend import Backend

RUNNER = "buildpilot-runner"
MOUNT = "/buildpilot-cache"


@dataclass(frozen=True)
class PersistedMount:
    """A cache mount to carry between runners, and the image its copy runs in."""

    id: str
    sharing: str = "shared"  # as the Dockerfile mounts it: BuildKit keeps refs per mode
    runner_image: str | None = None  # an image reference
    runner_context: str | None = None  # another image of the config (pinned at run time)


def persisted_mounts(
    model: DockerfileModel, target: str | None, image_contexts: Mapping[str, str]
) -> tuple[PersistedMount, ...]:
    """The cache mounts of the stages `target` builds, one per id, with their runner."""
    found: dict[str, PersistedMount] = {}
    for stage in model.needed_stages(target):
        runner = _runner(model, stage, image_contexts)
        for instruction in stage.instructions:
            for mount in instruction.cache_mounts:
                if mount.from_ is None and mount.id not in found and runner is not None:
                    image, context = runner
                    found[mount.id] = PersistedMount(
                        mount.id, mount.sharing, runner_image=image, runner_context=context
                    )
    return tuple(found.values())


def _runner(
    model: DockerfileModel, stage: Stage, image_contexts: Mapping[str, str]
) -> tuple[str | None, str | None] | None:
    """(image ref, config image) the stage starts from; None when it is scratch."""
    while stage.base_kind == "stage" and stage.base_stage is not None:
        stage = model.stages[stage.base_stage]
    if stage.base_kind == "image":
        return stage.base, None
    if stage.base_kind == "named" and stage.base in image_contexts:
        return None, image_contexts[stage.base]
    return None


def directory(root: Path, mount_id: str) -> Path:
    """Where a cache mount's content is kept between runs."""
    return root / slug(mount_id)


def inject_dockerfile(mount: PersistedMount) -> str:
    """Copies the build context (the kept directory) into the cache mount."""
    return (
        f"FROM {RUNNER}\nUSER 0:0\nARG BUILDPILOT_NONCE\n"
        f"RUN --mount=type=cache,id={mount.id},target={MOUNT},sharing={mount.sharing} "
        "--mount=type=bind,target=/buildpilot-seed "
        f'echo "$BUILDPILOT_NONCE" >/dev/null && cp -a /buildpilot-seed/. {MOUNT}/\n'
    )


def export_dockerfile(mount: PersistedMount) -> str:
    """Copies the cache mount out, as the only content of a local export.

    `sharing=locked` makes BuildKit wait for the build that just used the mount to let go
    of it; a shared mount that finds it still held takes another (stale) copy instead.
    """
    return (
        f"FROM {RUNNER} AS dump\nUSER 0:0\nARG BUILDPILOT_NONCE\n"
        f"RUN --mount=type=cache,id={mount.id},target={MOUNT},sharing=locked "
        f'echo "$BUILDPILOT_NONCE" >/dev/null && mkdir -p /buildpilot-out '
        f"&& cp -a {MOUNT}/. /buildpilot-out/\n"
        "FROM scratch\nCOPY --from=dump /buildpilot-out /\n"
    )


def _argv(
    dockerfile: Path, context: Path, runner: str, output: str, builder: str | None
) -> list[str]:
    argv = ["buildx", "build", "--progress=rawjson"]
    if builder:
        argv += ["--builder", builder]
    return [
        *argv,
        "--file",
        str(dockerfile),
        "--build-context",
        f"{RUNNER}=docker-image://{runner}",
        "--build-arg",
        f"BUILDPILOT_NONCE={secrets.token_hex(8)}",  # the copy must run every time
        "--provenance=false",
        "--output",
        output,
        str(context),
    ]


def _runner_ref(mount: PersistedMount, base_refs: Mapping[str, str]) -> str | None:
    if mount.runner_context is not None:
        return base_refs.get(mount.runner_context)
    return mount.runner_image


class Injections:
    """The cache mounts a run has seeded, each at most once.

    A mount id that several images share (a pip cache, say) is seeded before the first of
    them only; seeding it again would overwrite what the first build added with the older
    kept copy. Images that need a mount wait while it is being seeded.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._done: dict[str, PhaseTiming | None] = {}  # id -> the phase that seeded it

    def inject(
        self,
        mounts: Sequence[PersistedMount],
        root: Path,
        base_refs: Mapping[str, str],
        backend: Backend,
        *,
        builder: str | None,
    ) -> tuple[PhaseTiming | None, list[str]]:
        """Seed the kept cache mounts not seeded yet in this run; the phase and warnings."""
        with self._lock:
            locks = [self._locks.setdefault(m.id, threading.Lock()) for m in mounts]
        for lock in locks:
            lock.acquire()
        try:
            fresh = [m for m in mounts if m.id not in self._done]
            if not fresh:  # seeded earlier in this run: show what that cost, labelled so
                earlier = next((self._done[m.id] for m in mounts if self._done[m.id]), None)
                if earlier is None:
                    return None, []
                return earlier.model_copy(
                    update={"name": f"{earlier.name} (earlier in this run)"}
                ), []
            phase, warnings = _each(fresh, root, base_refs, backend, builder=builder, export=False)
            self._done.update(dict.fromkeys((m.id for m in fresh), phase))
            return phase, warnings
        finally:
            for lock in locks:
                lock.release()


def export(
    mounts: Sequence[PersistedMount],
    root: Path,
    base_refs: Mapping[str, str],
    backend: Backend,
    *,
    builder: str | None,
) -> tuple[PhaseTiming | None, list[str]]:
    """Copy every cache mount out of the builder; return the phase and any warnings."""
    return _each(mounts, root, base_refs, backend, builder=builder, export=True)


def _each(
    mounts: Sequence[PersistedMount],
    root: Path,
    base_refs: Mapping[str, str],
    backend: Backend,
    *,
    builder: str | None,
    export: bool,
) -> tuple[PhaseTiming | None, list[str]]:
    if not mounts:
        return None, []
    started = time.monotonic()
    warnings: list[str] = []
    done = 0
    for mount in mounts:
        kept = directory(root, mount.id)
        runner = _runner_ref(mount, base_refs)
        if runner is None or (not export and not kept.is_dir()):
            continue
        problem = (_export_one if export else _inject_one)(mount, kept, runner, backend, builder)
        if problem:
            verb = "export" if export else "inject"
            warnings.append(f"cache mount '{mount.id}': {verb} failed: {problem}")
        else:
            done += 1
    kind = "cache-mount-export" if export else "cache-mount-import"
    action = (
        f"exported {done} cache mount(s) to" if export else f"injected {done} cache mount(s) from"
    )
    name = f"{action} {root}"
    return PhaseTiming(kind=kind, name=name, duration=time.monotonic() - started), warnings


def _inject_one(
    mount: PersistedMount, kept: Path, runner: str, backend: Backend, builder: str | None
) -> str | None:
    with tempfile.TemporaryDirectory(prefix="buildpilot-inject-") as tmp:
        dockerfile = Path(tmp) / "Dockerfile"
        dockerfile.write_text(inject_dockerfile(mount), encoding="utf-8")
        outcome = backend.build(
            _argv(dockerfile, kept, runner, "type=cacheonly", builder), on_status=lambda _: None
        )
    return None if outcome.returncode == 0 else _last(outcome.text_lines)


def _export_one(
    mount: PersistedMount, kept: Path, runner: str, backend: Backend, builder: str | None
) -> str | None:
    kept.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{kept.name}.", dir=kept.parent))
    with tempfile.TemporaryDirectory(prefix="buildpilot-export-") as tmp:
        dockerfile = Path(tmp) / "Dockerfile"
        dockerfile.write_text(export_dockerfile(mount), encoding="utf-8")
        outcome = backend.build(
            _argv(dockerfile, Path(tmp), runner, f"type=local,dest={staging}", builder),
            on_status=lambda _: None,
        )
    if outcome.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        return _last(outcome.text_lines)
    old = kept.with_name(f".{kept.name}.old")
    if kept.exists():
        kept.rename(old)
    staging.rename(kept)  # the directory is replaced whole, never left half-written
    shutil.rmtree(old, ignore_errors=True)
    return None


def _last(lines: Sequence[str]) -> str:
    useful = [line for line in lines if line.strip()]
    return useful[-1].strip() if useful else "buildx failed"
