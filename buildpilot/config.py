"""`buildpilot.yaml`: frozen pydantic models, loaded once and validated with file:line errors."""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import stat
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from buildpilot import CONFIG_NAME
from buildpilot.dockerfile import (
    KNOWN_COMMANDS,
    DockerfileError,
    DockerfileModel,
    parse_dockerfile,
)
from buildpilot.errors import ConfigError
from buildpilot.graph import find_cycle
from buildpilot.size import parse_size
from buildpilot.yamlsource import Loc, YamlError, YamlSource, load_yaml

IMAGE_CONTEXT_PREFIX = "image:"
TAG_FIELDS = frozenset({"registry", "name", "git_sha", "short_sha", "branch"})
RELEASE_FIELDS = TAG_FIELDS | {"version"}
CACHE_FIELDS = frozenset({"registry", "name"})
_IMAGE_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
# host[:port], then lowercase path components, as a docker reference takes them
_REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_SECRET_ARG = re.compile(r"TOKEN|PASSWORD|SECRET|KEY", re.IGNORECASE)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CacheSettings(_Model):
    """Registry cache defaults for every image; an image may override any field."""

    enabled: bool = Field(default=True, description="Read and write a build cache at all.")
    backend: Literal["registry", "gha"] = Field(
        "registry", description="registry: {repository}:{branch}; gha: GitHub's cache, per image."
    )
    write: Literal["auto", "always", "never"] = Field(
        "auto",
        description="auto: pushes to branches write, pull/merge requests and forks only read.",
    )
    mode: Literal["min", "max"] = Field(
        "max", description="max exports every intermediate step (multi-stage hits); min the final."
    )
    ignore_error: bool = Field(
        default=True, description="A failed cache export warns, never fails."
    )
    repository: str = Field(
        "{registry}/cache/{name}",
        description="Cache repository template; tags are the slugged branch names.",
    )


class CacheOverride(_Model):
    """Per-image cache settings; unset fields take the top-level `cache:` value."""

    enabled: bool | None = None
    backend: Literal["registry", "gha"] | None = None
    mode: Literal["min", "max"] | None = None
    ignore_error: bool | None = None
    repository: str | None = None


class Secret(_Model):
    """A BuildKit secret: `RUN --mount=type=secret,id=<id>` reads it; its value is never logged."""

    id: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    src: str | None = Field(None, description="A file, relative to the config file.")
    env: str | None = Field(None, description="An environment variable of the build's caller.")

    @model_validator(mode="after")
    def _one_source(self) -> Secret:
        if (self.src is None) == (self.env is None):
            raise ValueError("a secret takes exactly one of 'src' or 'env'")
        return self


class ReleaseSettings(_Model):
    """How `buildpilot release` tags every image once all of them have succeeded."""

    tags: list[str] = Field(
        default_factory=lambda: ["{registry}/{name}:{version}"],
        description="Templates with {version}, {registry}, {name}, {git_sha}, {short_sha}, "
        "{branch}; a tag `latest` is applied on the default branch only.",
    )


class DoctorSettings(_Model):
    """`buildpilot doctor` for one image: the rules it skips and the severity that fails it."""

    disable: list[Annotated[str, Field(pattern=r"^BP[0-9]{3}$")]] = Field(
        default_factory=list, description="Rule ids not checked for this image, e.g. [BP003]."
    )
    severity: Literal["error", "warning", "info"] = Field(
        "warning", description="A finding at or above this severity makes `doctor` exit 1."
    )


def _size(text: str) -> str:
    parse_size(text)  # a ValueError names the size and how to write one
    return text


class Mirrors(_Model):
    """Package mirrors and the host's CA bundle, handed only to the builds that ask for them:
    an ARG of that name in the Dockerfile, or a `--mount=type=secret,id=ca_bundle`."""

    pip_index_url: str | None = Field(None, description="Build arg PIP_INDEX_URL.")
    pip_extra_index_url: str | None = Field(None, description="Build arg PIP_EXTRA_INDEX_URL.")
    apt_mirror: str | None = Field(None, description="Build arg APT_MIRROR (Debian/Ubuntu).")
    npm_registry: str | None = Field(None, description="Build arg NPM_CONFIG_REGISTRY.")
    ca_bundle: str | None = Field(
        None, description="A CA bundle file (relative to the config), as the secret ca_bundle."
    )


class ImageConfig(_Model):
    """One image of the repository and how to build it."""

    context: str = Field(".", description="Build context directory, relative to the config file.")
    dockerfile: str = Field("Dockerfile", description="Relative to the context, as in buildx.")
    contexts: dict[str, str] = Field(
        default_factory=dict,
        description="Named build contexts; `image:<name>` is another image of this config.",
    )
    args: dict[str, str] = Field(default_factory=dict)
    target: str | None = None
    ssh: list[str] = Field(default_factory=list, description="`default` or `id=path[,path]`.")
    secrets: list[Secret] = Field(default_factory=list)
    tags: list[str] = Field(
        default_factory=lambda: ["{registry}/{name}:latest"],
        description="Templates with {registry}, {name}, {git_sha}, {short_sha}, {branch}.",
    )
    platforms: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    cache: CacheOverride = Field(default_factory=CacheOverride)
    gpu: bool | None = Field(
        None,
        description="Whether the image needs CUDA; with false, `doctor` flags CUDA wheels (BP007).",
    )
    doctor: DoctorSettings = Field(default_factory=DoctorSettings)
    size_budget: Annotated[str, AfterValidator(_size)] | None = Field(
        None, description="Largest uncompressed size, e.g. 500MB or 3GB (checked after a build)."
    )
    size_budget_action: Literal["fail", "warn"] = Field(
        "fail", description="fail: an image over its size budget fails; warn: a warning."
    )
    persist_cache_mounts: bool = Field(
        default=False,
        description="Export the image's RUN --mount=type=cache content after a build and "
        "inject it before the next, so CI's own cache can carry it to a fresh runner.",
    )
    allow_secret_args: bool = Field(
        default=False,
        description="Accept build args named like secrets (*TOKEN*, *PASSWORD*, *SECRET*, "
        "*KEY*); their values end up in the image's history. Prefer `secrets:`.",
    )

    def image_contexts(self) -> dict[str, str]:
        """Named contexts that are other images of the config: context name -> image name."""
        return {
            key: value.removeprefix(IMAGE_CONTEXT_PREFIX)
            for key, value in self.contexts.items()
            if value.startswith(IMAGE_CONTEXT_PREFIX)
        }

    def dependencies(self) -> list[str]:
        """Images that must be built before this one, in a stable order."""
        return list(dict.fromkeys([*self.depends_on, *self.image_contexts().values()]))


class Config(_Model):
    """The whole `buildpilot.yaml`."""

    version: Literal[1]
    registry: str = Field(description="Images are {registry}/{name}, e.g. localhost:5000/speech.")
    builder: str | None = Field(None, description="The buildx builder; default: the current one.")
    default_branch: str | None = Field(None, description="Default: from git, else `main`.")
    attestations: bool = Field(
        default=False,
        description="Provenance attestations carry timestamps: identical builds then get new "
        "digests and every dependent rebuilds. Off unless asked for.",
    )
    cache: CacheSettings = Field(default_factory=CacheSettings)
    cache_mounts_dir: str = Field(
        ".buildpilot/cache-mounts", description="Where persisted cache mounts are kept."
    )
    release: ReleaseSettings = Field(default_factory=ReleaseSettings)
    mirrors: Mirrors = Field(default_factory=Mirrors)
    allow_paths_outside: bool = Field(
        default=False,
        description="Accept contexts, Dockerfiles, secret files and local named contexts "
        "outside the repository (the git work tree holding the config, else its directory).",
    )
    images: dict[str, ImageConfig] = Field(min_length=1)


@dataclass(frozen=True)
class Project:
    """A loaded config with the file it came from; resolves the paths it names."""

    path: Path
    config: Config
    # lexical path -> real path: the paths of a monorepo share most of their directories
    _real: dict[str, Path] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # ("context" or "dockerfile", image) -> that path
    _paths: dict[tuple[str, str], Path] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def root(self) -> Path:
        """The directory of the config file: every relative path starts here."""
        return self.path.parent

    def image(self, name: str) -> ImageConfig:
        """The config of image `name`."""
        return self.config.images[name]

    def context_dir(self, name: str) -> Path:
        """The build context directory of image `name`."""
        found = self._paths.get(("context", name))
        if found is None:
            found = self._paths["context", name] = self.real_path(
                self.root / self.image(name).context
            )
        return found

    def real_path(self, path: Path) -> Path:
        """`path.resolve()`, each directory on the way looked up once per project."""
        key = str(path)
        found = self._real.get(key)
        if found is None:
            found = _real_path(path, self._real)
            self._real[key] = found
        return found

    def dockerfile(self, name: str) -> Path:
        """The Dockerfile of image `name`."""
        found = self._paths.get(("dockerfile", name))
        if found is None:
            found = self._paths["dockerfile", name] = (
                self.context_dir(name) / self.image(name).dockerfile
            )
        return found

    def dockerfile_model(self, name: str) -> DockerfileModel:
        """Image `name`'s Dockerfile as BuildKit builds it, with the image's args and named
        contexts (parsed once per process: `parse_dockerfile` shares each text's model)."""
        image, path = self.image(name), self.dockerfile(name)
        return parse_dockerfile(
            path.read_text(encoding="utf-8"),
            path=str(path),
            build_args=image.args,
            named_contexts=tuple(image.contexts),
        )

    def cache_settings(self, name: str) -> CacheSettings:
        """The top-level cache settings with the image's overrides applied."""
        override = self.image(name).cache.model_dump(exclude_none=True)
        return self.config.cache.model_copy(update=override)


def _real_path(path: Path, known: dict[str, Path]) -> Path:
    """The real path of `path` from the real path of its parent (memoized in `known`): a
    component that is no symlink (or does not exist) adds its name, as `realpath` would; a
    symlink, `..` or a relative path is left to `Path.resolve`."""
    if not path.is_absolute() or ".." in path.parts:
        return path.resolve()
    parent = path.parent
    if parent == path:
        return path
    key = str(parent)
    real_parent = known.get(key)
    if real_parent is None:
        real_parent = known[key] = _real_path(parent, known)
    candidate = real_parent / path.name
    try:
        is_link = stat.S_ISLNK(os.lstat(candidate).st_mode)
    except OSError:
        is_link = False
    return candidate.resolve() if is_link else candidate


def find_config(start: Path) -> Path:
    """`buildpilot.yaml` in `start` or the nearest parent directory."""
    for directory in (start, *start.parents):
        candidate = directory / CONFIG_NAME
        if candidate.is_file():
            return candidate
    raise ConfigError(
        [f"no {CONFIG_NAME} in {start} or any parent directory"],
        hint="Pass -c/--config PATH, or create one (see the README's config reference).",
    )


def load_config(path: Path) -> Project:
    """Read and validate a config; raise ConfigError with one line per problem."""
    if not path.is_file():
        raise ConfigError([f"{path}: config file not found"])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    config, source = _parse(text, path)
    project = Project(path=path.resolve(), config=config)
    problems = list(_semantic_problems(project, source))
    if problems:
        raise ConfigError(problems)
    return project


def parse_config(text: str, path: Path) -> Config:
    """Validate config text (keys and types only, no files looked at): for a config at a ref."""
    return _parse(text, path)[0]


def _parse(text: str, path: Path) -> tuple[Config, YamlSource]:
    try:
        source = load_yaml(text, path)
    except YamlError as exc:
        raise ConfigError([_where(path, exc.line, ()) + exc.message]) from None
    if not isinstance(source.data, dict):
        kind = "empty" if source.data is None else f"a {type(source.data).__name__}"
        raise ConfigError(
            [f"{path}: the config must be a mapping with 'version' and 'images'; it is {kind}"]
        )
    try:
        return Config.model_validate(source.data), source
    except ValidationError as exc:
        raise ConfigError(list(_pydantic_problems(exc, source))) from None


def _where(path: Path, line: int | None, loc: Loc) -> str:
    place = f"{path}:{line}" if line is not None else str(path)
    field = ".".join(str(part) for part in loc)
    return f"{place}: {field}: " if field else f"{place}: "


def _pydantic_problems(exc: ValidationError, source: YamlSource) -> Iterator[str]:
    errors = exc.errors()
    # A misspelt required key is one mistake: "unknown key; did you mean" says it all.
    suggested = {
        (*tuple(e["loc"])[:-1], key)
        for e in errors
        if e["type"] == "extra_forbidden" and (key := _suggestion(tuple(e["loc"])))
    }
    for error in errors:
        loc: Loc = tuple(error["loc"])
        message = error["msg"]
        if error["type"] == "missing" and loc in suggested:
            continue
        if error["type"] == "extra_forbidden":
            message = "unknown key" + _did_you_mean(loc)
        elif error["type"] == "missing":
            message = "required key is missing"
        yield _where(source.path, source.line_of(loc), loc) + message


def _did_you_mean(loc: Loc) -> str:
    """Suggest the known key closest to an unknown one."""
    key = _suggestion(loc)
    return f"; did you mean '{key}'?" if key else ""


def _suggestion(loc: Loc) -> str | None:
    """The known key closest to the unknown key at `loc`, if any is close."""
    match loc[:-1]:
        case ():
            model: type[BaseModel] = Config
        case ("cache",):
            model = CacheSettings
        case ("images", _):
            model = ImageConfig
        case ("images", _, "cache"):
            model = CacheOverride
        case ("mirrors",):
            model = Mirrors
        case ("images", _, "doctor"):
            model = DoctorSettings
        case ("images", _, "secrets", _):
            model = Secret
        case _:
            return None
    matches = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return matches[0] if matches else None


def _semantic_problems(project: Project, source: YamlSource) -> Iterator[str]:
    config = project.config
    path = source.path

    def problem(loc: Loc, message: str) -> str:
        return _where(path, source.line_of(loc), loc) + message

    yield from _reference_problems(problem, config)
    repository = repository_root(project.real_path(project.root))
    for name, image in config.images.items():
        base: Loc = ("images", name)
        if not _IMAGE_NAME.match(name):
            yield problem(base, "an image name takes lowercase letters, digits and . _ -")
        for key, target in image.image_contexts().items():
            if target not in config.images:
                yield problem(
                    (*base, "contexts", key), f"unknown image '{target}'" + _close(target, config)
                )
            elif target == name:
                yield problem((*base, "contexts", key), "an image cannot be its own context")
        for index, dep in enumerate(image.depends_on):
            if dep not in config.images:
                yield problem(
                    (*base, "depends_on", index), f"unknown image '{dep}'" + _close(dep, config)
                )
        for index, tag in enumerate(image.tags):
            yield from _template_problem(problem, (*base, "tags", index), tag, TAG_FIELDS)
        yield from _secret_arg_problems(problem, base, image)
        dockerfile_loc = (*base, "dockerfile") if (*base, "dockerfile") in source.lines else base
        yield from _path_problems(problem, project, name, dockerfile_loc, repository)
    yield from _file_problem(
        problem, ("mirrors", "ca_bundle"), project.root, config.mirrors.ca_bundle
    )
    for index, tag in enumerate(config.release.tags):
        yield from _template_problem(problem, ("release", "tags", index), tag, RELEASE_FIELDS)
    cycle = find_cycle({name: image.dependencies() for name, image in config.images.items()})
    own_context = len(cycle or []) == 2 and cycle and cycle[0] in _own_contexts(config)
    if cycle and not own_context:  # an image that is its own context is said so above
        yield problem(("images", cycle[0]), "dependency cycle: " + " -> ".join(cycle))


def _reference_problems(problem: Callable[[Loc, str], str], config: Config) -> Iterator[str]:
    """The registry, and the cache repository templates built on it."""
    if not _REGISTRY.match(config.registry):
        yield problem(
            ("registry",),
            f"'{config.registry}' is not a registry and repository prefix: give host[:port] "
            "and lowercase path components, e.g. localhost:5000/team",
        )
    templates: list[tuple[Loc, str | None]] = [(("cache", "repository"), config.cache.repository)]
    templates += [
        (("images", name, "cache", "repository"), image.cache.repository)
        for name, image in config.images.items()
    ]
    for loc, template in templates:
        if template is not None:
            yield from _template_problem(problem, loc, template, CACHE_FIELDS)


def _path_problems(
    problem: Callable[[Loc, str], str],
    project: Project,
    name: str,
    dockerfile_loc: Loc,
    repository: Path,
) -> Iterator[str]:
    """One problem with the image's paths, checked in order: outside the repository,
    missing, unreadable or invalid Dockerfile."""
    outside = list(_outside_problems(problem, project, name, repository))
    context = project.context_dir(name)
    if outside:
        yield from outside
    elif not context.is_dir():
        yield problem(("images", name, "context"), f"context directory {context} does not exist")
    elif not project.dockerfile(name).is_file():
        yield problem(dockerfile_loc, f"Dockerfile {project.dockerfile(name)} does not exist")
    else:
        yield from _dockerfile_problems(problem, project, name, dockerfile_loc)


def _own_contexts(config: Config) -> set[str]:
    return {n for n, image in config.images.items() if n in image.image_contexts().values()}


def _secret_arg_problems(
    problem: Callable[[Loc, str], str], base: Loc, image: ImageConfig
) -> Iterator[str]:
    if image.allow_secret_args:
        return
    for arg in image.args:
        if _SECRET_ARG.search(arg):
            secret_id = arg.lower()
            yield problem(
                (*base, "args", arg),
                f"build arg {arg} looks like a secret, and a build arg's value stays in the "
                "image's history for anyone who pulls it; pass it as a secret instead "
                f"(secrets: [{{id: {secret_id}, env: {arg}}}], read with "
                f"RUN --mount=type=secret,id={secret_id}), or set allow_secret_args: true "
                "on the image if it is no secret",
            )


def _outside_problems(
    problem: Callable[[Loc, str], str], project: Project, name: str, root: Path
) -> Iterator[str]:
    """Paths of the image that resolve outside the repository `root` (symlinks followed)."""
    if project.config.allow_paths_outside:
        return
    image = project.image(name)
    base: Loc = ("images", name)
    context = project.context_dir(name)
    paths: list[tuple[Loc, str, Path]] = [((*base, "context"), image.context, context)]
    if context.is_relative_to(root):  # else the Dockerfile says nothing new
        dockerfile = project.real_path(project.dockerfile(name))
        paths.append(((*base, "dockerfile"), image.dockerfile, dockerfile))
    for index, secret in enumerate(image.secrets):
        if secret.src is not None:
            loc = (*base, "secrets", index, "src")
            paths.append((loc, secret.src, project.real_path(project.root / secret.src)))
    for key, value in image.contexts.items():
        if not value.startswith(IMAGE_CONTEXT_PREFIX) and "://" not in value:
            paths.append(((*base, "contexts", key), value, project.real_path(project.root / value)))
    for loc, given, resolved in paths:
        if not resolved.is_relative_to(root):
            yield problem(
                loc,
                f"'{given}' resolves to {resolved}, outside the repository ({root}); keep it "
                "inside, or set allow_paths_outside: true at the top of the config",
            )


def repository_root(directory: Path) -> Path:
    """The top of the git work tree that holds `directory` (found by its `.git`, without
    running git), else `directory` itself: the paths of a config stay inside it."""
    for candidate in (directory, *directory.parents):
        if (candidate / ".git").exists():
            return candidate
    return directory


def _dockerfile_problems(
    problem: Callable[[Loc, str], str], project: Project, name: str, loc: Loc
) -> Iterator[str]:
    """The Dockerfile parsed as BuildKit would (syntax, FROM, the target stage)."""
    image = project.image(name)
    path = project.dockerfile(name)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        yield problem(loc, f"cannot read {path}: {exc}")
        return
    try:
        model = parse_dockerfile(
            text, path=str(path), build_args=image.args, named_contexts=tuple(image.contexts)
        )
    except DockerfileError as exc:
        yield problem(loc, exc.message)
        return
    unknown = [i for s in model.stages for i in s.instructions if i.cmd not in KNOWN_COMMANDS]
    if unknown and model.syntax is None:  # another frontend (`# syntax=`) may know more
        close = difflib.get_close_matches(unknown[0].cmd, [*KNOWN_COMMANDS, "FROM"], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        yield problem(loc, f"{path}:{unknown[0].line}: unknown instruction: {unknown[0].cmd}{hint}")
        return
    try:
        model.target_stage(image.target)
    except DockerfileError as exc:
        yield problem(("images", name, "target"), f"{exc.problem} in {path}")


def _file_problem(
    problem: Callable[[Loc, str], str], loc: Loc, root: Path, name: str | None
) -> Iterator[str]:
    if name is not None and not (root / name).is_file():
        yield problem(loc, f"file {root / name} does not exist")


def _template_problem(
    problem: Callable[[Loc, str], str], loc: Loc, template: str, known: frozenset[str]
) -> Iterator[str]:
    unknown = _template_fields(template) - known
    if unknown:
        yield problem(
            loc,
            f"unknown template field {{{sorted(unknown)[0]}}}; known: "
            + ", ".join(f"{{{f}}}" for f in sorted(known)),
        )


def _close(name: str, config: Config) -> str:
    matches = difflib.get_close_matches(name, list(config.images), n=1)
    return f"; did you mean '{matches[0]}'?" if matches else ""


def _template_fields(template: str) -> set[str]:
    try:
        return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    except ValueError:
        return {"<malformed braces>"}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of `buildpilot.yaml`, for editors."""
    schema = Config.model_json_schema()
    schema["title"] = "buildpilot.yaml"
    return schema
