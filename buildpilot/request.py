"""One `docker buildx build` as data: the options of a run, the request of one image and
its argv. Light on purpose (no config models): the warm path (`warmbuild`) makes requests
from the reuse snapshot (`request_data`, `request_from_data`) to start a build early."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from buildpilot.cache import CacheRefs
from buildpilot.tags import digest_tag, image_name, tag_name

if TYPE_CHECKING:
    from buildpilot.cachemounts import PersistedMount
    from buildpilot.ci import CiContext
    from buildpilot.fingerprint import Fingerprint
    from buildpilot.git import GitInfo

Output = Literal["load", "push", "digest"]  # digest: pushed by digest only, under no tag
LABEL_IMAGE = "dev.buildpilot.image"
LABEL_FINGERPRINT = "dev.buildpilot.fingerprint"
FALLBACK_BRANCH = "main"
# Builds mostly wait on BuildKit, which schedules the steps of concurrent builds itself (bake
# hands it every target at once); the cap only bounds the buildx clients (~50 MB RSS each).
# A cold build of the 20-image bench repository (19 images on 2 bases) took 14.1 s with 32,
# 14.7 s with 16 (medians of 4 alternating runs), the last services waiting for a slot.
DEFAULT_JOBS = 32


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


def run_options(
    git: GitInfo,
    ci: CiContext,
    *,
    output: Output,
    config_default_branch: str | None,
    branch: str | None = None,
    default_branch: str | None = None,
    target_branch: str | None = None,
    no_cache: bool = False,
    builder: str | None = None,
) -> BuildOptions:
    """A run's options: branches from flags, then config, then CI, then git; the cache
    policy as CI allows it (`ci.detect`)."""
    return BuildOptions(
        output=output,
        branch=branch or ci.branch or git.branch or FALLBACK_BRANCH,
        default_branch=default_branch
        or config_default_branch
        or ci.default_branch
        or git.default_branch
        or FALLBACK_BRANCH,
        target_branch=target_branch or ci.target_branch,
        git_sha=ci.sha or git.sha,
        write_cache=ci.may_write_cache,
        no_cache=no_cache,
        builder=builder,
    )


def options_data(options: BuildOptions) -> dict[str, Any]:
    """What of a run's options its build requests depend on, as JSON data: all but the
    commit, which only tag templates read."""
    data = {item.name: getattr(options, item.name) for item in fields(options)}
    del data["git_sha"]
    return data


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

    @property
    def build_tags(self) -> tuple[str, ...]:
        """The tags buildx writes: all but the `added_tags`."""
        added = self.added_tags
        return tuple(tag for tag in self.tags if tag not in added)

    @property
    def added_tags(self) -> tuple[str, ...]:
        """The tags a push adds once buildx has pushed the first: the other tags of the
        first tag's repository. BuildKit's docker driver pushes the image once per tag: in
        a cold build of 20 images on two cores, a second tag each cost 6 s of CPU and 3 s
        of wall time. A manifest PUT (`registry.tag_digest`) puts the pushed manifest, same
        digest, under another tag of its repository, and moves no layer."""
        if self.output != "push" or not self.tags:
            return ()
        first = image_name(self.tags[0])
        return tuple(
            tag for tag in self.tags[1:] if image_name(tag) == first and tag_name(tag) is not None
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
        for tag in self.build_tags:
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


def pinned_ref(request: BuildRequest, digest: str) -> str:
    """The ref that names exactly this build of `request`: by digest in a registry, by its
    digest tag (`tags.digest_tag`) in the local image store, which resolves tags only."""
    if request.output == "digest":
        return f"{request.repository}@{digest}"
    if request.output == "push":
        repository = image_name(request.tags[0]) if request.tags else request.repository
        return f"{repository}@{digest}"
    return digest_tag(request.repository, digest)


_RUN_FIELDS = frozenset({"tags", "fingerprint", "fingerprint_tag"})  # set per run


def request_data(request: BuildRequest) -> dict[str, Any] | None:
    """`request` as JSON data without what each run sets (tags, fingerprint); None for a
    request that carries cache mounts between runners (those are not made from data)."""
    if request.persist_mounts or request.persist_dir is not None:
        return None
    data: dict[str, Any] = {}
    for item in fields(request):
        value = getattr(request, item.name)
        if item.name in _RUN_FIELDS or item.name.startswith("persist_"):
            continue
        if item.name == "labels":
            value = {k: v for k, v in value.items() if k != LABEL_FINGERPRINT}
        elif item.name == "cache":
            value = {"cache_from": list(value.cache_from), "cache_to": list(value.cache_to)}
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        data[item.name] = value
    return data


def request_from_data(
    data: Mapping[str, Any], tags: tuple[str, ...], fingerprint: Fingerprint
) -> BuildRequest:
    """The request `request_data` kept, with this run's tags and fingerprint."""
    values = dict(data)
    for name in ("dependencies", "platforms", "ssh", "secrets"):
        values[name] = tuple(values[name])
    values["context"], values["dockerfile"] = Path(values["context"]), Path(values["dockerfile"])
    cache = values.pop("cache")
    values["cache"] = CacheRefs(tuple(cache["cache_from"]), tuple(cache["cache_to"]))
    return BuildRequest(**values, tags=tags).with_fingerprint(fingerprint)
