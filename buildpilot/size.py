"""Image size: what each layer of a built image weighs, the Dockerfile line that made it, and
what grew since the last measurement.

Nothing runs in the image. `docker save` writes it as an archive (an OCI layout with docker's
`manifest.json`); `read_archive` reads the config, the manifest's layer descriptors
(compressed sizes) and every layer tar with tarfile, gzip or uncompressed, summing files
into directories, Python packages (`site-packages/<pkg>`, `dist-packages/<pkg>`) and the
largest files. The rest is pure: the config's history mapped to the Dockerfile's steps,
the comparison with an earlier measurement, and size budgets.
"""

from __future__ import annotations

import gzip
import heapq
import json
import os
import posixpath
import re
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from buildpilot.dockerfile import DockerfileModel, Stage

TOP = 5  # directories, packages and files kept per layer
DIR_DEPTH = 3  # directories are summed down to /a/b/c
DOMINATED = 0.9  # a directory whose child holds this share of it is shown as the child
GROWTH_SHOWN = 3  # layers named in a budget failure
SIZES_DIR = Path(".buildpilot") / "sizes"
_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_PACKAGES = re.compile(r"/(?:site|dist)-packages/([^/]+)")
_BUILDKIT_SUFFIX = " # buildkit"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_INDEX_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)


# --- records ---------------------------------------------------------------------------


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Entry(_Record):
    """A directory (`/usr/lib`), Python package (`numpy`) or file inside a layer, in bytes."""

    name: str
    size: int


class LayerSize(_Record):
    """One layer: its sizes, the step that made it, and what is heaviest inside it.

    `size` is the uncompressed tar, `compressed` the blob (None when the archive holds it
    uncompressed and no compressed descriptor was found). `line` and `instruction` come from
    the Dockerfile; `base` layers come from the image the first stage is built FROM.
    """

    index: int
    digest: str
    size: int
    compressed: int | None = None
    created_by: str = ""
    stage: str | None = None
    line: int | None = None
    instruction: str | None = None
    base: bool = False
    directories: list[Entry] = []
    packages: list[Entry] = []
    files: list[Entry] = []
    unread: str | None = None  # why the layer's content was not read (e.g. zstd)


class LayerGrowth(_Record):
    """A layer compared with its counterpart in an earlier measurement (0: none there)."""

    location: str | None  # Dockerfile:line
    instruction: str
    before: int
    after: int
    delta: int


class ImageSize(_Record):
    """The size report of one image: layers, budget, and growth since `baseline`."""

    image: str
    ref: str
    digest: str | None = None
    dockerfile: str | None = None  # relative to the config's directory
    size: int  # uncompressed, all layers
    compressed: int | None = None
    layers: list[LayerSize] = []
    budget: int | None = None
    budget_action: str = "fail"
    baseline: str | None = None  # the digest (or run) growth is measured against
    baseline_size: int | None = None
    growth: list[LayerGrowth] = []

    @property
    def over_budget(self) -> bool:
        """Whether the uncompressed size exceeds the budget."""
        return self.budget is not None and self.size > self.budget

    def location(self, layer: LayerSize) -> str | None:
        """`Dockerfile:line` of a layer, when known."""
        if layer.line is None:
            return None
        return f"{self.dockerfile or 'Dockerfile'}:{layer.line}"


# --- sizes as text ---------------------------------------------------------------------


def parse_size(text: str) -> int:
    """`500MB`, `3GB`, `1.5 GiB`, `1024` -> bytes (decimal units; KiB, MiB, ... binary)."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r}; write e.g. 500MB, 3GB or 1.5GiB")
    return int(float(match.group(1)) * _UNITS[unit])


def format_size(size: float) -> str:
    """Bytes for people, in decimal units: `950 B`, `3.1 MB`, `1.20 GB`."""
    magnitude = abs(size)
    if magnitude < 1000:
        return f"{size:.0f} B"
    for unit, factor in (("kB", 10**3), ("MB", 10**6), ("GB", 10**9)):
        if magnitude < factor * 1000:
            return f"{size / factor:.1f} {unit}"
    return f"{size / 10**12:.2f} TB"


def format_delta(delta: int) -> str:
    """`+3.1 MB`, `-200 kB`, `0 B`."""
    return ("+" if delta > 0 else "") + format_size(delta)


# --- the Dockerfile side ---------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """A Dockerfile instruction that makes a layer (RUN, COPY, ADD, WORKDIR), or the FROM."""

    stage: str
    line: int
    cmd: str
    text: str


def layer_steps(model: DockerfileModel, target: str | None) -> tuple[Step | None, list[Step]]:
    """The FROM of the shipped image's first stage, and every step of the target stage and
    the stages it is built FROM, base first: the layers this Dockerfile adds."""
    stage: Stage | None = model.target_stage(target)
    chain: list[Stage] = []
    while stage is not None and not stage.overridden:
        chain.insert(0, stage)
        stage = None if stage.base_stage is None else model.stages[stage.base_stage]
    if not chain:
        return None, []
    first = chain[0]
    origin = Step(_stage_name(first), first.line, "FROM", f"FROM {first.base}")
    steps = [
        Step(_stage_name(s), i.line, i.cmd, _one_line(i.original))
        for s in chain
        for i in s.instructions
        if i.step
    ]
    return origin, steps


def _stage_name(stage: Stage) -> str:
    return stage.name or str(stage.index)


def _one_line(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True)
class Origin:
    """Where one layer came from: a Dockerfile step, or the base image."""

    created_by: str
    step: Step | None
    base: bool


def attribute(
    history: Sequence[Mapping[str, Any]],
    layers: int,
    steps: Sequence[Step],
    origin: Step | None,
) -> list[Origin]:
    """Map each layer to the step that made it.

    Each history entry that is not `empty_layer` made one layer, in order. BuildKit writes
    the history of the base image first, then one entry per instruction; so the last
    layers are the Dockerfile's steps, matched from the end while the command word agrees.
    Layers before them (or after a disagreement) come from the base image.
    """
    made = [_created_by(h) for h in history if not h.get("empty_layer")]
    if len(made) > layers:
        made = made[len(made) - layers :]
    made = [""] * (layers - len(made)) + made
    origins: list[Origin] = []
    remaining = list(steps)
    matching = True
    for created_by in reversed(made):
        word = created_by.split(" ", 1)[0].upper()
        if matching and remaining and remaining[-1].cmd == word:
            origins.append(Origin(created_by, remaining.pop(), base=False))
            continue
        matching = False
        origins.append(Origin(created_by, origin, base=True))
    return origins[::-1]


def _created_by(entry: Mapping[str, Any]) -> str:
    text = str(entry.get("created_by") or "")
    return text.removesuffix(_BUILDKIT_SUFFIX).strip()


# --- reading a saved image -------------------------------------------------------------


@dataclass(frozen=True)
class SavedLayer:
    """A layer as read from the archive."""

    digest: str
    size: int
    compressed: int | None
    directories: list[Entry]
    packages: list[Entry]
    files: list[Entry]
    unread: str | None = None


@dataclass(frozen=True)
class SavedImage:
    """What `read_archive` found: the manifest digest, the config's history, the layers."""

    digest: str | None
    history: list[dict[str, Any]]
    layers: list[SavedLayer]


class ArchiveError(Exception):
    """A `docker save` archive that cannot be read."""


def read_archive(path: Path, *, top: int = TOP) -> SavedImage:
    """Read a `docker save` archive: manifest, config history and every layer's content."""
    try:
        with tarfile.open(path, mode="r:") as archive:
            entries = _json_member(archive, "manifest.json")
            if not isinstance(entries, list) or not entries:
                raise ArchiveError(f"{path}: manifest.json lists no image")
            entry = entries[0]
            config = _json_member(archive, entry["Config"])
            digest, descriptors = _manifest(archive, _digest_of(entry["Config"]))
            layers = []
            for index, name in enumerate(entry["Layers"]):
                compressed = None
                if index < len(descriptors) and _is_compressed(descriptors[index]):
                    compressed = int(descriptors[index]["size"])
                layers.append(_read_layer(archive, name, compressed, top))
    except (OSError, tarfile.TarError, KeyError, TypeError, ValueError, EOFError) as exc:
        raise ArchiveError(f"{path}: not a readable image archive: {exc}") from None
    history = config.get("history") if isinstance(config, dict) else None
    return SavedImage(digest=digest, history=list(history or []), layers=layers)


def _json_member(archive: tarfile.TarFile, name: str) -> Any:
    handle = archive.extractfile(name)
    if handle is None:
        raise ArchiveError(f"{name} is not a file in the archive")
    with handle:
        return json.load(handle)


def _digest_of(member: str) -> str:
    """`blobs/sha256/<hex>` -> `sha256:<hex>`; docker's older `<hex>.json` -> `sha256:<hex>`."""
    parts = member.removesuffix(".json").split("/")
    return f"{parts[-2]}:{parts[-1]}" if len(parts) >= 3 else f"sha256:{parts[-1]}"


def _blob(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"blobs/{algorithm}/{hexdigest}"


def _manifest(
    archive: tarfile.TarFile, config_digest: str
) -> tuple[str | None, list[dict[str, Any]]]:
    """The digest of the image (its top index.json entry) and the layer descriptors of the
    manifest whose config is `config_digest`; (None, []) when the archive has no index."""
    try:
        index = _json_member(archive, "index.json")
    except KeyError:
        return None, []
    top = index.get("manifests") or []
    digest = top[0].get("digest") if top else None
    todo = list(top)
    while todo:
        descriptor = todo.pop(0)
        try:
            blob = _json_member(archive, _blob(descriptor["digest"]))
        except KeyError:
            continue  # a platform that was not saved
        if descriptor.get("mediaType") in _INDEX_TYPES or "manifests" in blob:
            todo.extend(blob.get("manifests") or [])
        elif (blob.get("config") or {}).get("digest") == config_digest:
            return digest, list(blob.get("layers") or [])
    return digest, []


def _is_compressed(descriptor: Mapping[str, Any]) -> bool:
    media_type = str(descriptor.get("mediaType", ""))
    return media_type.endswith(("gzip", "zstd"))


def _read_layer(
    archive: tarfile.TarFile, name: str, compressed: int | None, top: int
) -> SavedLayer:
    member = archive.getmember(name)
    handle = archive.extractfile(member)
    if handle is None:
        raise ArchiveError(f"{name} is not a file in the archive")
    digest = _digest_of(name)
    with handle:
        magic = handle.read(4)
        handle.seek(0)
        if magic == _ZSTD_MAGIC:
            return SavedLayer(digest, member.size, member.size, [], [], [], unread="zstd: not read")
        if magic[:2] == b"\x1f\x8b":
            compressed = member.size if compressed is None else compressed
            with gzip.GzipFile(fileobj=handle) as stream:
                contents = _LayerContents.read(stream)
                size = _drain(stream)
        else:
            contents = _LayerContents.read(handle)
            size = member.size
    return SavedLayer(
        digest=digest,
        size=size,
        compressed=compressed,
        directories=contents.directories(top),
        packages=_top(contents.packages, top),
        files=[Entry(name=n, size=s) for s, n in heapq.nlargest(top, contents.files)],
    )


def _drain(stream: IO[bytes] | gzip.GzipFile) -> int:
    """Read `stream` to its end (tarfile stops at the end-of-archive blocks); its length."""
    while stream.read(1 << 20):
        pass
    return stream.tell()


class _LayerContents:
    """Files of one layer tar summed into directories and packages."""

    def __init__(self) -> None:
        self.dirs: dict[str, int] = {}
        self.packages: dict[str, int] = {}
        self.files: list[tuple[int, str]] = []  # every regular file; nlargest picks the top

    @classmethod
    def read(cls, stream: IO[bytes] | gzip.GzipFile) -> _LayerContents:
        contents = cls()
        with tarfile.open(fileobj=stream, mode="r|") as layer:
            for member in layer:
                if member.isreg():
                    contents.add(member.name, member.size)
        return contents

    def add(self, name: str, size: int) -> None:
        path = "/" + posixpath.normpath(name).lstrip("/")
        if posixpath.basename(path).startswith(".wh."):
            return  # a whiteout: a deletion, no content
        self.files.append((size, path))
        parts = path.split("/")[1:-1]
        for depth in range(1, min(len(parts), DIR_DEPTH) + 1):
            directory = "/" + "/".join(parts[:depth])
            self.dirs[directory] = self.dirs.get(directory, 0) + size
        package = package_name(path)
        if package is not None:
            self.packages[package] = self.packages.get(package, 0) + size

    def directories(self, top: int) -> list[Entry]:
        return largest_directories(self.dirs, top)


def package_name(path: str) -> str | None:
    """The Python distribution a path under site-packages or dist-packages belongs to:
    `numpy/core/x.so`, `numpy-1.26.dist-info/RECORD` and `numpy.libs/…` are all `numpy`."""
    match = _PACKAGES.search(path)
    if match is None:
        return None
    entry = match.group(1)
    if entry.endswith((".dist-info", ".egg-info", ".egg-link", ".pth")):
        entry = entry.split("-", 1)[0]
    entry = entry.split(".", 1)[0]
    return entry.lower().replace("-", "_") or None


def largest_directories(sizes: Mapping[str, int], top: int) -> list[Entry]:
    """The `top` largest directories, each shown as its child when one child holds nearly
    all of it (so `/usr/lib/python3` rather than `/usr` and `/usr/lib`)."""
    biggest_child: dict[str, int] = {}
    for directory, size in sizes.items():
        parent = posixpath.dirname(directory)
        if parent != "/":
            biggest_child[parent] = max(biggest_child.get(parent, 0), size)
    shown = [
        (size, directory)
        for directory, size in sizes.items()
        if biggest_child.get(directory, 0) < DOMINATED * size
    ]
    return [Entry(name=d, size=s) for s, d in heapq.nlargest(top, shown)]


def _top(sizes: Mapping[str, int], top: int) -> list[Entry]:
    return [Entry(name=n, size=s) for n, s in heapq.nlargest(top, sizes.items(), key=_second)]


def _second(item: tuple[str, int]) -> int:
    return item[1]


# --- a measurement ---------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """What the layers of an image are mapped to: its config name and Dockerfile steps."""

    image: str
    dockerfile: str | None = None
    origin: Step | None = None
    steps: tuple[Step, ...] = ()
    budget: int | None = None
    budget_action: str = "fail"


def image_size(saved: SavedImage, source: Recipe, *, ref: str) -> ImageSize:
    """The size report of a saved image, layers mapped to the Dockerfile's steps."""
    origins = attribute(saved.history, len(saved.layers), source.steps, source.origin)
    layers = []
    for index, (layer, where) in enumerate(zip(saved.layers, origins, strict=True)):
        step = where.step
        layers.append(
            LayerSize(
                index=index,
                digest=layer.digest,
                size=layer.size,
                compressed=layer.compressed,
                created_by=where.created_by,
                stage=step.stage if step else None,
                line=step.line if step else None,
                instruction=_instruction(where),
                base=where.base,
                directories=layer.directories,
                packages=layer.packages,
                files=layer.files,
                unread=layer.unread,
            )
        )
    sizes = [layer.compressed for layer in saved.layers]
    return ImageSize(
        image=source.image,
        ref=ref,
        digest=saved.digest,
        dockerfile=source.dockerfile,
        size=sum(layer.size for layer in saved.layers),
        compressed=None if any(s is None for s in sizes) else sum(s or 0 for s in sizes),
        layers=layers,
        budget=source.budget,
        budget_action=source.budget_action,
    )


def _instruction(where: Origin) -> str | None:
    """A step's Dockerfile text; a base layer's own history entry (else the FROM)."""
    if where.step is None:
        return where.created_by or None
    if where.base:
        return where.created_by or where.step.text
    return where.step.text


def compare(before: ImageSize | None, after: ImageSize, *, label: str | None = None) -> ImageSize:
    """`after` with its growth since `before` (every layer counts as new without one)."""
    return after.model_copy(
        update={
            "baseline": label or (before.digest if before else None),
            "baseline_size": before.size if before else None,
            "growth": growth(before, after),
        }
    )


def growth(before: ImageSize | None, after: ImageSize) -> list[LayerGrowth]:
    """Each layer of `after` beside its counterpart in `before`, then the layers `before` had
    that are gone. Counterparts are the same step (stage and instruction text), else the
    layer at the same position made by the same kind of instruction."""
    old = list(before.layers) if before else []
    used: set[int] = set()
    out: list[LayerGrowth] = []
    for layer in after.layers:
        match = _counterpart(layer, old, used)
        size_before = 0
        if match is not None:
            used.add(match.index)
            size_before = match.size
        out.append(_growth(after.location(layer), layer, size_before, layer.size))
    for layer in old:
        if layer.index not in used and before is not None:
            out.append(_growth(before.location(layer), layer, layer.size, 0))
    return out


def _counterpart(layer: LayerSize, old: Sequence[LayerSize], used: set[int]) -> LayerSize | None:
    key = _key(layer)
    for candidate in old:
        if candidate.index not in used and _key(candidate) == key:
            return candidate
    same_place = old[layer.index] if layer.index < len(old) else None
    if (
        same_place is not None
        and same_place.index not in used
        and _word(same_place) == _word(layer)
        and same_place.base == layer.base
    ):
        return same_place
    return None


def _key(layer: LayerSize) -> tuple[str | None, str]:
    if layer.base:
        return None, layer.created_by
    return layer.stage, layer.instruction or layer.created_by


def _word(layer: LayerSize) -> str:
    return (layer.instruction or layer.created_by).split(" ", 1)[0].upper()


def _growth(location: str | None, layer: LayerSize, before: int, after: int) -> LayerGrowth:
    return LayerGrowth(
        location=location,
        instruction=layer.instruction or layer.created_by,
        before=before,
        after=after,
        delta=after - before,
    )


def grew_most(size: ImageSize, count: int = GROWTH_SHOWN) -> list[LayerGrowth]:
    """The layers that grew the most, largest growth first."""
    grown = [g for g in size.growth if g.delta > 0]
    return sorted(grown, key=lambda g: g.delta, reverse=True)[:count]


def budget_message(size: ImageSize) -> str:
    """Why an image is over its budget, naming the layers that grew the most."""
    budget = size.budget or 0
    text = (
        f"size {format_size(size.size)} exceeds its budget of {format_size(budget)} "
        f"by {format_size(size.size - budget)}"
    )
    grown = grew_most(size)
    if not grown:  # nothing grew (the budget was lowered): the largest layers, then
        largest = sorted(size.layers, key=lambda layer: layer.size, reverse=True)
        return f"{text}; largest layers: " + "; ".join(
            f"{size.location(layer) or 'base image'} "
            f"{_clip(layer.instruction or layer.created_by)} {format_size(layer.size)}"
            for layer in largest[:GROWTH_SHOWN]
        )
    since = f"since {_short(size.baseline)}" if size.baseline else "(no earlier measurement)"
    layers = "; ".join(
        f"{g.location or 'base image'} {_clip(g.instruction)} {format_delta(g.delta)}"
        for g in grown
    )
    return f"{text}; grew most {since}: {layers}"


def _short(baseline: str) -> str:
    return baseline.split(":", 1)[1][:12] if baseline.startswith("sha256:") else baseline


def _clip(text: str, width: int = 48) -> str:
    flat = _one_line(text)
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# --- size reports beside the runs ------------------------------------------------------


def report_file(root: Path, image: str, *, previous: bool = False) -> Path:
    """`.buildpilot/sizes/<image>.json`, or the one it replaced (`<image>.previous.json`)."""
    return root / SIZES_DIR / (f"{image}.previous.json" if previous else f"{image}.json")


def load_report(path: Path) -> ImageSize | None:
    """A stored size report; None when there is none or it cannot be read."""
    try:
        return ImageSize.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError):
        return None


def baseline(root: Path, image: str, digest: str | None) -> ImageSize | None:
    """What a new measurement of `digest` compares with: the stored report of another
    digest, else the one it replaced (so measuring the same image twice changes nothing)."""
    current = load_report(report_file(root, image))
    if current is not None and (digest is None or current.digest != digest):
        return current
    return load_report(report_file(root, image, previous=True))


def store_report(root: Path, size: ImageSize) -> Path:
    """Keep `size` as the image's report; the report of another digest becomes the previous."""
    path = report_file(root, size.image)
    path.parent.mkdir(parents=True, exist_ok=True)
    current = load_report(path)
    if current is not None and current.digest != size.digest:
        path.replace(report_file(root, size.image, previous=True))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(size.model_dump_json(indent=2) + "\n")
    Path(tmp).replace(path)
    return path


def over_budget(sizes: Iterable[ImageSize]) -> list[ImageSize]:
    """The images over a budget whose action is `fail`."""
    return [s for s in sizes if s.over_budget and s.budget_action == "fail"]


def exit_code(sizes: Iterable[ImageSize]) -> int:
    """`buildpilot size`: 1 when an image is over a budget that fails, else 0."""
    return 1 if over_budget(sizes) else 0
