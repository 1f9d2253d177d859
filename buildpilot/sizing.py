"""Measuring built images: `docker save`, a size report per image, budgets applied to a run.

A measurement compares the image with the last stored report of another digest and then
becomes the stored report (`.buildpilot/sizes/<image>.json`, the one it replaces kept as
`<image>.previous.json`). `check_sizes` runs after the builds of `build` and `release`:
it measures the images that have a `size_budget` (all built images with `--size`) and fails
or warns about the ones over budget.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from buildpilot.backend import Backend
from buildpilot.cache import slug
from buildpilot.config import Project
from buildpilot.console import Terminal
from buildpilot.errors import BuildpilotError, ReportError, UnknownImageError
from buildpilot.results import ImageResult, RunResult
from buildpilot.runlog import STATE_DIR
from buildpilot.runs import load_run
from buildpilot.size import (
    TOP,
    ArchiveError,
    ImageSize,
    Recipe,
    baseline,
    budget_message,
    compare,
    image_size,
    layer_steps,
    load_report,
    parse_size,
    read_archive,
    report_file,
    store_report,
)
from buildpilot.status import Status

WORKERS = 2  # `docker save` and gunzip each keep a core busy


def recipe(project: Project, name: str) -> Recipe:
    """Image `name`'s Dockerfile steps and budget, to map its layers to."""
    image = project.image(name)
    dockerfile = project.dockerfile(name)
    model = project.dockerfile_model(name)
    origin, steps = layer_steps(model, image.target)
    try:
        shown = dockerfile.relative_to(project.root).as_posix()
    except ValueError:
        shown = str(dockerfile)
    return Recipe(
        image=name,
        dockerfile=shown,
        origin=origin,
        steps=tuple(steps),
        budget=parse_size(image.size_budget) if image.size_budget else None,
        budget_action=image.size_budget_action,
    )


def measure(backend: Backend, ref: str, source: Recipe, *, top: int = TOP) -> ImageSize:
    """Save `ref` to a temporary directory and read its size report; nothing is run."""
    with tempfile.TemporaryDirectory(prefix="buildpilot-size-") as tmp:
        archive = Path(tmp) / "image.tar"
        backend.save(ref, archive)
        try:
            saved = read_archive(archive, top=top)
        except ArchiveError as exc:
            raise BuildpilotError(f"cannot read the layers of {ref}: {exc}") from None
    return image_size(saved, source, ref=ref)


def record(project: Project, size: ImageSize) -> ImageSize:
    """`size` compared with the image's last stored report, then stored in its place."""
    compared = compare(baseline(project.root, size.image, size.digest), size)
    store_report(project.root, compared)
    return compared


# --- after a build ---------------------------------------------------------------------


def wants_size(project: Project, image: ImageResult, *, every: bool) -> bool:
    """Whether a run measures this image: it was built or reused (an image reused by its
    fingerprint may be one that failed its budget before), and has a budget or `--size`."""
    built = image.status is Status.SUCCESS
    reused = image.status is Status.SKIPPED and image.digest is not None
    if not (built or reused) or image.name not in project.config.images:
        return False
    return every or project.image(image.name).size_budget is not None


def check_sizes(
    project: Project,
    images: Sequence[ImageResult],
    *,
    backend: Backend,
    terminal: Terminal,
    every: bool = False,
) -> list[ImageResult]:
    """The results with each measured image's size; over budget, an image fails (or warns,
    with `size_budget_action: warn`), the reason naming the layers that grew the most."""
    wanted = [i for i in images if wants_size(project, i, every=every) and _ref(project, i)]
    if not wanted:
        return list(images)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        checked = dict(
            zip(
                [i.name for i in wanted],
                pool.map(lambda i: _checked(project, i, backend, terminal), wanted),
                strict=True,
            )
        )
    return [checked.get(image.name, image) for image in images]


def _ref(project: Project, image: ImageResult) -> str | None:
    """The built image: its first tag, else `{registry}/{name}@digest`."""
    if image.tags:
        return image.tags[0]
    if image.digest:
        return f"{project.config.registry}/{image.name}@{image.digest}"
    return None


def _checked(
    project: Project, image: ImageResult, backend: Backend, terminal: Terminal
) -> ImageResult:
    config = project.image(image.name)
    try:
        source = recipe(project, image.name)
        ref = _ref(project, image) or image.name
        size = _stored(project, image) or record(project, measure(backend, ref, source))
    except (BuildpilotError, OSError) as exc:  # the image stands; only its size is unknown
        message = f"{image.name}: size not measured: {exc}"
        if config.size_budget is not None and config.size_budget_action == "fail":
            terminal.error(message)
            return image.model_copy(
                update={"status": Status.FAILED, "reason": f"size budget not checked: {exc}"}
            )
        terminal.warn(message)
        return image.model_copy(update={"warnings": [*image.warnings, message]})
    size = size.model_copy(update={"budget": source.budget, "budget_action": source.budget_action})
    update: dict[str, object] = {"size": size}
    if size.over_budget:
        message = budget_message(size)
        if size.budget_action == "fail":
            terminal.error(f"{image.name}: {message}")
            update.update(status=Status.FAILED, reason=message)
        else:
            terminal.warn(f"{image.name}: {message}")
            update["warnings"] = [*image.warnings, message]
    return image.model_copy(update=update)


def _stored(project: Project, image: ImageResult) -> ImageSize | None:
    """The stored report of a reused image, when it is of that very digest."""
    if image.status is not Status.SKIPPED or image.digest is None:
        return None
    stored = load_report(report_file(project.root, image.name))
    return stored if stored is not None and stored.digest == image.digest else None


# --- `buildpilot size` -----------------------------------------------------------------


def size_images(
    project: Project,
    names: Sequence[str],
    *,
    backend: Backend,
    ref: str | None = None,
    run: str | None = None,
    against: str | None = None,
    top: int = TOP,
) -> list[ImageSize]:
    """Size reports of `names` (default: every image) as built in the last run (or `run`),
    or of one image `ref`; compared with `against` (a run or a release), else with each
    image's last stored report. Reports of the run's images are stored."""
    for name in names:
        if name not in project.config.images:
            raise UnknownImageError(f"unknown image '{name}'")
    earlier = _against(project, against) if against else None
    if ref is not None:
        if len(names) > 1:
            raise BuildpilotError("--ref measures one image: name at most one")
        source = recipe(project, names[0]) if names else Recipe(image=ref)
        size = measure(backend, ref, source, top=top)
        before = earlier.get(size.image) if earlier is not None else None
        if earlier is None and names:
            before = baseline(project.root, size.image, size.digest)
        return [compare(before, size, label=against)]
    built = _built(project, names or list(project.config.images), load_run(project.root, run))
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        sizes = list(
            pool.map(
                lambda item: measure(backend, item[1], recipe(project, item[0]), top=top), built
            )
        )
    if earlier is None:
        return [record(project, size) for size in sizes]
    return [compare(earlier.get(size.image), size, label=against) for size in sizes]


def _built(project: Project, names: Sequence[str], run: RunResult) -> list[tuple[str, str]]:
    """(image, ref) of each image the run built or reused."""
    results = {image.name: image for image in run.images}
    found, missing = [], []
    for name in names:
        image = results.get(name)
        ref = _ref(project, image) if image is not None and image.digest else None
        if ref is None:
            missing.append(name)
        else:
            found.append((name, ref))
    if missing:
        raise ReportError(
            f"run {run.id} has no built image for: {', '.join(missing)}",
            hint="Build them first, or pass --ref IMAGE_REF with one image name.",
        )
    return found


def _against(project: Project, ref: str) -> dict[str, ImageSize]:
    """The size reports recorded in a run (id or prefix) or in the run of a release."""
    release = project.root / STATE_DIR / "releases" / f"{slug(ref)}.json"
    if release.is_file():
        try:
            ref = json.loads(release.read_text(encoding="utf-8"))["run"]
        except (OSError, ValueError, KeyError) as exc:
            raise ReportError(f"{release}: not a readable release manifest: {exc}") from None
    run = load_run(project.root, ref)
    return {image.name: image.size for image in run.images if image.size is not None}
