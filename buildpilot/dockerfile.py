"""A Dockerfile as BuildKit sees it: stages, build steps, what each step reads and its cache key.

Pure: the caller passes the text, the build args and the named build contexts. Parsing is
BuildKit's own (the `dockerfile` package wraps moby/buildkit's Go parser: line continuations,
heredocs, the escape directive and flags come out exactly as BuildKit reads them). The rules
applied on top are BuildKit's too; each cites moby/buildkit, either
`frontend/dockerfile/dockerfile2llb/convert.go` ("convert.go") or
`frontend/dockerfile/docs/reference.md` ("reference.md"), so they can be checked again.
"""

from __future__ import annotations

import csv
import functools
import json
import posixpath
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal, NamedTuple
from urllib.parse import urlsplit

import dockerfile as _goparser  # type: ignore[import-not-found]  # a Go extension, no stubs

from buildpilot.errors import BuildpilotError

SourceKind = Literal["context", "stage", "image", "named", "url", "git", "heredoc"]
BaseKind = Literal["stage", "named", "image", "scratch"]

SCRATCH = "scratch"
STEP_COMMANDS = frozenset({"RUN", "COPY", "ADD", "WORKDIR"})
KNOWN_COMMANDS = frozenset(
    {
        *STEP_COMMANDS,
        *("ARG", "ENV", "USER", "SHELL", "ONBUILD", "LABEL", "EXPOSE", "VOLUME"),
        *("STOPSIGNAL", "CMD", "ENTRYPOINT", "HEALTHCHECK", "MAINTAINER"),
    }
)
# reference.md, "Automatic platform ARGs in the global scope": set by BuildKit from the
# build and target platforms. Unless the caller passes one as a build arg, its value is
# kept symbolic ("${TARGETARCH}"): the same text for the same platform.
AUTOMATIC_ARGS = (
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
)
_AUTOMATIC_VALUE = re.compile(r"\$\{(" + "|".join(AUTOMATIC_ARGS) + r")\}")
# instructions/parse.go, parseBuildStageName: names are lower-cased, then checked.
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC_WORD = re.compile(r"^<<(-?)\s*(['\"]?)([^'\"]*)\2$")
_INDEX = re.compile(r"^[+-]?[0-9]+$")
_GIT_SCP = re.compile(r"^[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+:")
_BOOLS = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}
_NO_ARGS: Mapping[str, str] = MappingProxyType({})


class DockerfileError(BuildpilotError):
    """The Dockerfile cannot be read the way BuildKit would: `{path}:{line}: {problem}`."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Source:
    """Something a step reads.

    `paths` are the source paths after variable expansion, normalized (no leading `./` or
    `/`, `.` for the root) for `context`, `stage` and `named`; empty for the other kinds.
    `ref` is the stage (its name, or its index when unnamed), the image, the named
    context or the URL. `parents` is `COPY --parents`, where a `/./` in a path is kept.
    """

    kind: SourceKind
    paths: tuple[str, ...]
    ref: str | None = None
    parents: bool = False


@dataclass(frozen=True)
class CacheMount:
    """A `RUN --mount=type=cache`: `id` defaults to the target (reference.md, RUN --mount)."""

    id: str
    target: str
    sharing: str = "shared"
    from_: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction of a stage and what it means for the build cache.

    `step` is true when BuildKit makes a vertex of it (RUN, COPY, ADD, WORKDIR other than
    `/`). `key` is canonical JSON of everything the step's cache key depends on except file
    contents and the previous step; "" for non-steps. `unpredictable` says why the effect
    of a change on this step cannot be predicted exactly.
    """

    line: int
    end_line: int
    cmd: str
    original: str
    step: bool
    sources: tuple[Source, ...] = ()
    key: str = ""
    unpredictable: str | None = None
    cache_mounts: tuple[CacheMount, ...] = ()


@dataclass(frozen=True)
class Stage:
    """A build stage: its FROM, resolved the way BuildKit resolves it, and its instructions.

    `overridden` is true when a named build context has the stage's name: BuildKit then
    uses the context instead and builds none of the stage's instructions (convert.go,
    buildDispatchStates).
    """

    index: int
    name: str | None
    base: str
    base_kind: BaseKind
    base_stage: int | None
    line: int
    platform: str | None
    instructions: tuple[Instruction, ...]
    overridden: bool = False

    @property
    def key(self) -> str:
        """Canonical text of the FROM: the expanded base, how it resolved, the platform."""
        return _canonical(
            {
                "base": self.base,
                "kind": self.base_kind,
                "stage": self.base_stage,
                "platform": self.platform,
                "overridden": self.overridden,
            }
        )


@dataclass(frozen=True)
class DockerfileModel:
    """A parsed Dockerfile: its stages and the ARGs declared before the first FROM.

    `global_args` maps each global ARG to its declared default, or None when it has none.
    A default is expanded against the values of the global ARGs before it (build args
    applied, as BuildKit does), but a build arg does not replace the default shown here.
    `syntax` is the `# syntax=` parser directive, if any.
    """

    path: str
    stages: tuple[Stage, ...]
    global_args: Mapping[str, str | None] = field(hash=False)
    syntax: str | None = None

    def stage(self, ref: str) -> Stage | None:
        """The stage named `ref` (case-insensitive; the last of that name) or at index `ref`."""
        if _INDEX.match(ref):
            index = int(ref)
            return self.stages[index] if 0 <= index < len(self.stages) else None
        lowered = ref.lower()
        found = None
        for stage in self.stages:
            if stage.name == lowered:
                found = stage
        return found

    def target_stage(self, target: str | None) -> Stage:
        """The stage `--target` builds: the last one when None, else the one of that name.

        Like BuildKit (convert.go, resolveTarget) a target is a stage name, not an index.
        """
        if target is None:
            return self.stages[-1]
        stage = None if _INDEX.match(target) else self.stage(target)
        if stage is None:
            names = ", ".join(s.name for s in self.stages if s.name) or "none"
            raise DockerfileError(
                self.path, None, f"target stage {target!r} could not be found (stages: {names})"
            )
        return stage

    def needed_stages(self, target: str | None) -> list[Stage]:
        """The stages BuildKit builds for `target`, in index order.

        Reachable from the target through FROM <stage>, COPY/ADD --from=<stage> and
        RUN --mount=from=<stage> (convert.go, allReachableStages); a stage replaced by a
        named context builds nothing and is left out.
        """
        seen: set[int] = set()
        todo = [self.target_stage(target).index]
        while todo:
            stage = self.stages[todo.pop()]
            if stage.index in seen or stage.overridden:
                continue
            seen.add(stage.index)
            if stage.base_stage is not None:
                todo.append(stage.base_stage)
            for instruction in stage.instructions:
                for source in instruction.sources:
                    dep = self.stage(source.ref) if source.kind == "stage" and source.ref else None
                    if dep is not None:
                        todo.append(dep.index)
        return [stage for stage in self.stages if stage.index in seen]


def parse_dockerfile(
    text: str,
    *,
    path: str,
    build_args: Mapping[str, str] = _NO_ARGS,
    named_contexts: Collection[str] = (),
) -> DockerfileModel:
    """Parse a Dockerfile into the model of what BuildKit builds; DockerfileError when invalid.

    `build_args` are the `--build-arg` values, `named_contexts` the names given to
    `--build-context` (they replace stages and images of the same name). A run reads the
    same Dockerfile for validation, planning and fingerprints: each text is parsed once per
    process and the model shared, under the path each caller names it by.
    """
    try:
        model = _parse_once(
            text.removeprefix("\ufeff"),
            tuple(sorted(build_args.items())),
            frozenset(named_contexts),
        )
    except DockerfileError as exc:
        raise DockerfileError(path, exc.line, exc.problem) from None
    return replace(model, path=path)


@functools.lru_cache(maxsize=1024)
def _parse_once(
    text: str, build_args: tuple[tuple[str, str], ...], named_contexts: frozenset[str]
) -> DockerfileModel:
    """The model of `text`, with no path: errors name the path "" and are raised again with
    the caller's path; the model is immutable, so every caller may share it."""
    path = ""
    directives = _directives(text)
    commands = _go_parse(text)
    header = list(_until_first_from(commands, path))
    if len(header) == len(commands):
        line = commands[-1].end_line if commands else 1
        raise DockerfileError(path, line, "no FROM instruction: the Dockerfile has no stage")
    builder = _Builder(
        path=path,
        escape=directives.get("escape", "\\"),
        build_args=dict(build_args),
        named=frozenset(
            _familiar(name) for name in named_contexts if name.lower() not in {SCRATCH, "context"}
        ),
    )
    global_args = builder.global_args(header)
    stages = builder.stages(_split_stages(commands[len(header) :]))
    return DockerfileModel(
        path=path,
        stages=stages,
        global_args=MappingProxyType(global_args),
        syntax=directives.get("syntax"),
    )


# --- parsing ---------------------------------------------------------------------------


class _Cmd(NamedTuple):
    """A typed copy of the Go parser's Command."""

    cmd: str
    sub_cmd: str | None
    json: bool
    original: str
    start_line: int
    end_line: int
    flags: tuple[str, ...]
    value: tuple[str, ...]
    heredocs: tuple[tuple[str, str], ...]


def _go_parse(text: str) -> tuple[_Cmd, ...]:
    """BuildKit's parse of a Dockerfile (errors name the path "", see `_parse_once`)."""
    try:
        parsed = _goparser.parse_string(text)
    except _goparser.GoParseError as exc:
        raise DockerfileError("", _error_line(text, str(exc)), str(exc)) from None
    return tuple(
        _Cmd(
            cmd=str(c.cmd).upper(),
            sub_cmd=None if c.sub_cmd is None else str(c.sub_cmd).upper(),
            json=bool(c.json),
            original=str(c.original),
            start_line=int(c.start_line),
            end_line=int(c.end_line),
            flags=tuple(str(f) for f in c.flags),
            value=tuple(str(v) for v in c.value),
            heredocs=tuple((str(h.name), str(h.content)) for h in c.heredocs),
        )
        for c in parsed
    )


def _error_line(text: str, message: str) -> int:
    """The Go parser's errors carry no line: the first line whose prefix fails the same way."""
    lines = text.splitlines(keepends=True)
    for count in range(1, len(lines) + 1):
        try:
            _goparser.parse_string("".join(lines[:count]))
        except _goparser.GoParseError as exc:
            if str(exc) == message:
                return count
    return 1


def _directives(text: str) -> dict[str, str]:
    """Parser directives (reference.md, "Parser directives"): leading `# key=value` lines.

    Keys are case-insensitive; the first line that is not a known directive (an empty
    line, another comment, an instruction) ends them.
    """
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _DIRECTIVE.match(line.strip())
        if match is None or match[1].lower() not in {"syntax", "escape", "check"}:
            break
        found.setdefault(match[1].lower(), match[2])
    return found


def _until_first_from(commands: Sequence[_Cmd], path: str) -> Iterable[_Cmd]:
    """The global ARGs: only ARG may come before the first FROM (reference.md, FROM)."""
    for cmd in commands:
        if cmd.cmd == "FROM":
            return
        if cmd.cmd != "ARG":
            raise DockerfileError(
                path, cmd.start_line, f"{cmd.cmd} before the first FROM: only ARG may precede it"
            )
        yield cmd


def _split_stages(commands: Sequence[_Cmd]) -> list[tuple[_Cmd, list[_Cmd]]]:
    stages: list[tuple[_Cmd, list[_Cmd]]] = []
    for cmd in commands:
        if cmd.cmd == "FROM":
            stages.append((cmd, []))
        else:
            stages[-1][1].append(cmd)
    return stages


# --- the build state of a stage --------------------------------------------------------


@dataclass
class _Scope:
    """What later instructions of a stage see; a child stage starts from its parent's.

    `env` is the exec environment the Dockerfile defines: ARG values and ENV, in order.
    BuildKit adds both to the stage's state, and a stage FROM another inherits that state
    (convert.go, dispatchArg and dispatchState.init; reference.md, ARG "Scope": an ARG is
    "automatically inherited by other stages based on that stage"). `unset` are ARGs
    declared without a value. None for user, workdir, shell: the base image's own.
    """

    env: dict[str, str] = field(default_factory=dict)
    unset: set[str] = field(default_factory=set)
    user: str | None = None
    workdir: str | None = None
    shell: tuple[str, ...] | None = None

    def copy(self) -> _Scope:
        return replace(self, env=dict(self.env), unset=set(self.unset))


class _Ref(NamedTuple):
    """Where a FROM, --from or mount from= points."""

    kind: BaseKind
    ref: str
    stage: int | None = None

    def canonical(self) -> str:
        return f"{self.kind}:{self.ref}"


class _Header(NamedTuple):
    cmd: _Cmd
    name: str | None
    base: str
    platform: str | None


@dataclass
class _Builder:
    """Turns parsed commands into stages, one stage after the other."""

    path: str
    escape: str
    build_args: Mapping[str, str]
    named: frozenset[str]
    global_env: dict[str, str] = field(default_factory=dict)
    headers: list[_Header] = field(default_factory=list)
    names: dict[str, int] = field(default_factory=dict)
    overridden: set[int] = field(default_factory=set)
    scopes: list[_Scope] = field(default_factory=list)

    def error(self, line: int, problem: str) -> DockerfileError:
        return DockerfileError(self.path, line, problem)

    def expand(self, word: str, env: Mapping[str, str], line: int) -> _Expanded:
        lexer = _Lexer(env, self.escape)
        try:
            text = lexer.process(word)
        except _LexError as exc:
            raise self.error(line, f"failed to process {word!r}: {exc}") from None
        return _Expanded(text, frozenset(lexer.unmatched))

    # global scope

    def global_args(self, commands: list[_Cmd]) -> dict[str, str | None]:
        """reference.md, "Understand how ARG and FROM interact"; convert.go, buildMetaArgs.

        A build arg replaces the default; a default is expanded against the global ARGs
        before it; an ARG with neither has no value.
        """
        for name in AUTOMATIC_ARGS:
            self.global_env[name] = self.build_args.get(name, "${" + name + "}")
        declared: dict[str, str | None] = {}
        for cmd in commands:
            for key, default in _arg_pairs(cmd, self):
                expanded = (
                    None
                    if default is None
                    else self.expand(default, self.global_env, cmd.start_line)
                )
                declared[key] = None if expanded is None else expanded.text
                if key in self.build_args:
                    self.global_env[key] = self.build_args[key]
                elif expanded is not None:
                    self.global_env[key] = expanded.text
        return declared

    # stages

    def stages(self, groups: list[tuple[_Cmd, list[_Cmd]]]) -> tuple[Stage, ...]:
        self.headers = [self.header(cmd) for cmd, _ in groups]
        for index, header in enumerate(self.headers):
            if header.name is not None:
                self.names[header.name] = index
                # convert.go, buildDispatchStates: a named context with a stage's name
                # replaces the stage; "scratch" and "context" are never looked up.
                if _familiar(header.name) in self.named:
                    self.overridden.add(index)
        return tuple(self.stage(index, commands) for index, (_, commands) in enumerate(groups))

    def header(self, cmd: _Cmd) -> _Header:
        """FROM [--platform=...] <base> [AS <name>], expanded with the global ARGs only."""
        args = cmd.value
        if not (len(args) == 1 or (len(args) == 3 and args[1].lower() == "as")):
            raise self.error(cmd.start_line, "FROM requires either one or three arguments")
        written = args[2] if len(args) == 3 else None
        name = None if written is None else written.lower()
        if name is not None and not _STAGE_NAME.match(name):
            raise self.error(
                cmd.start_line,
                f"invalid name for build stage: {written!r}, "
                "name can't start with a number or contain symbols",
            )
        base = self.expand(args[0], self.global_env, cmd.start_line).text
        if not base:
            raise self.error(cmd.start_line, f"base name ({args[0]}) should not be blank")
        platform = None
        for flag, value in _flags(cmd):
            if flag == "platform" and value is not None:
                platform = self.expand(value, self.global_env, cmd.start_line).text
                if not platform:
                    raise self.error(cmd.start_line, f"empty platform value from {value!r}")
        return _Header(cmd, name, base, platform)

    def stage_ref(self, index: int) -> str:
        """Canonical reference to a stage: its name when that finds it, else its index."""
        name = self.headers[index].name
        return name if name is not None and self.names.get(name) == index else str(index)

    def point_at_stage(self, index: int) -> _Ref:
        name = self.headers[index].name
        if index in self.overridden and name is not None:
            return _Ref("named", name)
        return _Ref("stage", self.stage_ref(index), index)

    def resolve_base(self, index: int) -> _Ref:
        """FROM: an earlier stage, else scratch, else a named context, else an image.

        convert.go: addState looks the base up among the stages added so far, by exact
        (case-sensitive) text against the lower-cased stage names, so `FROM Build` does
        not find stage `build` (moby/buildkit#2003, open) and fails as an image
        reference. Only then does resolveBaseImage try scratch, a named context (names
        compared in their familiar form: `docker.io/library/alpine:latest` is `alpine`,
        dockerui Client.NamedContext) and finally the registry.
        """
        header = self.headers[index]
        earlier = {h.name: i for i, h in enumerate(self.headers[:index]) if h.name is not None}
        if header.base in earlier:
            return self.point_at_stage(earlier[header.base])
        if header.base.lower() in earlier:
            raise self.error(
                header.cmd.start_line,
                f"FROM {header.base}: stage names are matched case-sensitively in FROM; "
                f"write {header.base.lower()!r}",
            )
        if header.base == SCRATCH:
            return _Ref("scratch", SCRATCH)
        if _familiar(header.base) in self.named:
            return _Ref("named", header.base)
        return _Ref("image", header.base)

    def resolve_from(self, value: str, line: int, *, by_index: bool) -> _Ref:
        """COPY --from (name or index) and RUN --mount from= (name only).

        convert.go, toCommand and detectRunMount: a stage of any position by name,
        case-insensitive (findStateByName), or by index for COPY; otherwise scratch, a
        named context or an image, as for FROM.
        """
        if by_index and _INDEX.match(value):
            index = int(value)
            if not 0 <= index < len(self.headers):
                raise self.error(line, f"invalid stage index {index}")
            return self.point_at_stage(index)
        if value.lower() in self.names:
            return self.point_at_stage(self.names[value.lower()])
        if value == SCRATCH:
            return _Ref("scratch", SCRATCH)
        if _familiar(value) in self.named:
            return _Ref("named", value)
        return _Ref("image", value)

    def stage(self, index: int, commands: list[_Cmd]) -> Stage:
        header = self.headers[index]
        base = self.resolve_base(index)
        scope = _Scope(workdir="/" if base.kind == "scratch" else None)
        if base.stage is not None:
            scope = self.scopes[base.stage].copy()
        stage_cmds = _StageCommands(self, index, scope)
        instructions = tuple(stage_cmds.instruction(cmd) for cmd in commands)
        self.scopes.append(scope)
        return Stage(
            index=index,
            name=header.name,
            base=header.base,
            base_kind=base.kind,
            base_stage=base.stage,
            line=header.cmd.start_line,
            platform=header.platform,
            instructions=instructions,
            overridden=index in self.overridden,
        )

    def has_child(self, index: int) -> bool:
        """Whether a later stage is built FROM stage `index` (and so runs its ONBUILDs)."""
        name = self.headers[index].name
        return name is not None and any(h.base == name for h in self.headers[index + 1 :])


class _Expanded(NamedTuple):
    text: str
    unmatched: frozenset[str]


class _Mount(NamedTuple):
    canonical: dict[str, str]
    source: Source | None
    cache: CacheMount | None
    reasons: list[str]


@dataclass
class _StageCommands:
    """Applies one stage's instructions in order to its scope."""

    builder: _Builder
    index: int
    scope: _Scope

    def instruction(self, cmd: _Cmd) -> Instruction:
        handler = {
            "ARG": self.arg,
            "ENV": self.env,
            "USER": self.user,
            "SHELL": self.shell,
            "WORKDIR": self.workdir,
            "RUN": self.run,
            "COPY": self.copy,
            "ADD": self.copy,
            "ONBUILD": self.onbuild,
        }.get(cmd.cmd)
        if handler is not None:
            return handler(cmd)
        note = None if cmd.cmd in KNOWN_COMMANDS else f"unknown instruction {cmd.cmd}"
        return _plain(cmd, unpredictable=note)

    def expand(self, word: str, line: int) -> _Expanded:
        return self.builder.expand(word, self.scope.env, line)

    def reasons(self, what: str, expanded: Iterable[_Expanded]) -> list[str]:
        """Why source paths cannot be predicted: they use variables with no known value."""
        found: list[str] = []
        for item in expanded:
            for name in sorted(item.unmatched):
                if name in self.scope.unset:
                    found.append(f"{what} uses ${name}, an arg with no value")
                else:
                    found.append(f"{what} uses ${name}, which the Dockerfile does not set")
            for match in _AUTOMATIC_VALUE.finditer(item.text):
                found.append(f"{what} uses ${match[1]}, set by the build platform")
        return list(dict.fromkeys(found))

    # instructions that change the scope

    def arg(self, cmd: _Cmd) -> Instruction:
        """convert.go, dispatchArg: build arg, else the default, else the global value.

        The default is expanded with what the stage sees at that point, ARGs earlier on
        the same line included; a global ARG's value is seen only when re-declared.
        """
        for key, default in _arg_pairs(cmd, self.builder):
            value: str | None
            if key in self.builder.build_args:
                value = self.builder.build_args[key]
            elif default is not None:
                value = self.expand(default, cmd.start_line).text
            else:
                value = self.builder.global_env.get(key)
            if value is not None:
                self.scope.env[key] = value
                self.scope.unset.discard(key)
            elif key not in self.scope.env:
                self.scope.unset.add(key)
        return _plain(cmd)

    def env(self, cmd: _Cmd) -> Instruction:
        """Every value sees the environment from before the instruction (reference.md)."""
        if not cmd.value or len(cmd.value) % 2:
            raise self.builder.error(cmd.start_line, "ENV requires at least one argument")
        pairs = [
            (self.expand(key, cmd.start_line).text, self.expand(value, cmd.start_line).text)
            for key, value in zip(cmd.value[::2], cmd.value[1::2], strict=True)
        ]
        for key, value in pairs:
            self.scope.env[key] = value
            self.scope.unset.discard(key)
        return _plain(cmd)

    def user(self, cmd: _Cmd) -> Instruction:
        if len(cmd.value) != 1:
            raise self.builder.error(cmd.start_line, "USER requires exactly one argument")
        self.scope.user = self.expand(cmd.value[0], cmd.start_line).text
        return _plain(cmd)

    def shell(self, cmd: _Cmd) -> Instruction:
        if not cmd.json:
            raise self.builder.error(cmd.start_line, "SHELL requires the arguments in JSON form")
        self.scope.shell = cmd.value
        return _plain(cmd)

    def onbuild(self, cmd: _Cmd) -> Instruction:
        """Triggers run in stages built FROM this one (convert.go, resolveStages)."""
        note = None
        if self.builder.has_child(self.index):
            note = "ONBUILD runs in the stages built FROM this one; its effect is not modeled"
        return _plain(cmd, unpredictable=note)

    # steps

    def workdir(self, cmd: _Cmd) -> Instruction:
        """convert.go, dispatchWorkdir: relative to the previous WORKDIR; a mkdir as USER.

        WORKDIR / makes no vertex.
        """
        if len(cmd.value) != 1:
            raise self.builder.error(cmd.start_line, "WORKDIR requires exactly one argument")
        path = _join_workdir(self.scope.workdir, self.expand(cmd.value[0], cmd.start_line).text)
        self.scope.workdir = path
        if path == "/":
            return _plain(cmd)
        key = {"cmd": "WORKDIR", "path": path, "user": self.scope.user}
        return _step(cmd, key=key)

    def run(self, cmd: _Cmd) -> Instruction:
        """The command as written, its mounts, network, security, and the exec state.

        Exec form runs without a shell; shell form through SHELL. Heredocs are part of
        the command. reference.md, "Impact on build caching": every ARG value in scope
        is in the RUN's environment, so changing one changes the RUN's cache key.
        """
        flags = _flags(cmd)
        mounts = [
            self.mount(value or "", cmd.start_line) for name, value in flags if name == "mount"
        ]
        key: dict[str, object] = {
            "cmd": "RUN",
            "json": cmd.json,
            "command": list(cmd.value),
            "heredocs": [list(h) for h in cmd.heredocs],
            "shell": None if cmd.json else self.scope.shell,
            "mounts": [m.canonical for m in mounts],
            "flags": sorted(f"{name}={value}" for name, value in flags if name != "mount"),
            "env": [[k, v] for k, v in self.scope.env.items()],
            "user": self.scope.user,
            "workdir": self.scope.workdir,
        }
        reasons = [reason for m in mounts for reason in m.reasons]
        return _step(
            cmd,
            key=key,
            sources=tuple(m.source for m in mounts if m.source is not None),
            unpredictable="; ".join(dict.fromkeys(reasons)) or None,
            cache_mounts=tuple(m.cache for m in mounts if m.cache is not None),
        )

    def mount(self, spec: str, line: int) -> _Mount:
        """instructions/commands_runmount.go, parseMount: CSV fields, type bind by default.

        Values are expanded like other words, except `from`, which refuses variables.
        A bind mount reads `source` (default: the root) of the build context or of
        `from`; a cache mount reads nothing unless it has a `from`; tmpfs, secret and
        ssh mounts read nothing (reference.md, RUN --mount).
        """
        fields: dict[str, str] = {}
        expanded: list[_Expanded] = []
        for item in next(csv.reader([spec]), []):
            name, sep, value = item.partition("=")
            name = _MOUNT_ALIASES.get(name.lower(), name.lower())
            if not sep:
                fields[name] = "true"
            elif name == "from":
                if re.search(r"\$.", value):
                    raise self.builder.error(
                        line,
                        "'from' doesn't support variable expansion, define alias stage instead",
                    )
                fields[name] = value
            else:
                result = self.expand(value, line)
                fields[name] = result.text
                if name == "source":
                    expanded.append(result)
        kind = fields.setdefault("type", "bind").lower()
        frm = fields.get("from") or None
        ref = None if frm is None else self.builder.resolve_from(frm, line, by_index=False)
        canonical = dict(fields)
        if ref is not None:
            canonical["from"] = ref.canonical()
        source = None
        if kind == "bind" or (kind == "cache" and ref is not None):
            source = _source_at(ref, (_norm_path(fields.get("source", "")),))
        cache = None
        if kind == "cache":
            target = fields.get("target", "")
            cache = CacheMount(
                id=fields.get("id") or target,
                target=target,
                sharing=fields.get("sharing", "shared").lower(),
                from_=frm,
                source=fields.get("source"),
            )
            canonical.setdefault("id", cache.id)
        reasons = self.reasons("RUN --mount source", expanded) if source else []
        return _Mount(canonical, source, cache, reasons)

    def copy(self, cmd: _Cmd) -> Instruction:
        """COPY and ADD: expanded sources, destination and flags, and the WORKDIR.

        Not ENV: a COPY's cache key does not depend on the environment, only on what the
        expanded words say. Sources are all words but the last (reference.md, COPY).
        """
        line = cmd.start_line
        if len(cmd.value) < 2:
            raise self.builder.error(
                line, f"{cmd.cmd} requires at least two arguments: sources and a destination"
            )
        flags = _flags(cmd)
        # convert.go, toCommand: an empty --from is no --from.
        frm = next((value for name, value in reversed(flags) if name == "from"), None) or None
        ref = None if frm is None else self.copy_from(frm, line)
        parents = any(name == "parents" and _flag_bool(value) for name, value in flags)
        heredocs = dict(cmd.heredocs)
        words: list[_Expanded] = []
        inline: list[list[str]] = []
        for word in cmd.value[:-1]:
            match = _HEREDOC_WORD.match(word)
            if match is not None and match[3] in heredocs:
                inline.append([match[3], self.heredoc(match, heredocs[match[3]], line)])
            else:
                words.append(self.expand(word, line))
        sources, reasons = self.copy_sources(cmd.cmd, ref, words, parents=parents)
        if ref is not None and ref.stage is not None and ref.stage >= self.index:
            reasons.append(
                f"{cmd.cmd} --from={frm} names stage {ref.stage}, not defined before this "
                "stage: BuildKit refuses to build it"
            )
        key = {
            "cmd": cmd.cmd,
            "from": None if ref is None else ref.canonical(),
            "sources": [w.text for w in words],
            "heredocs": inline,
            "dest": self.expand(cmd.value[-1], line).text,
            "flags": self.copy_flags(flags, line),
            "workdir": self.scope.workdir,
        }
        sources += [Source("heredoc", ()) for _ in inline]
        return _step(
            cmd,
            key=key,
            sources=tuple(sources),
            unpredictable="; ".join(dict.fromkeys(reasons)) or None,
        )

    def copy_from(self, value: str, line: int) -> _Ref:
        """convert.go, toCommand: --from takes no variables (expansion must leave it as is)."""
        if _Lexer({}, self.builder.escape).process(value) != value:
            raise self.builder.error(
                line,
                "variable expansion is not supported for --from, define a new stage with "
                "FROM using ARG from global scope as a workaround",
            )
        return self.builder.resolve_from(value, line, by_index=True)

    def heredoc(self, match: re.Match[str], content: str, line: int) -> str:
        """reference.md, "Here-Documents": `<<-` strips leading tabs; a quoted name is literal."""
        if match[1]:
            content = re.sub(r"(?m)^\t+", "", content)
        if match[2]:
            return content
        lexer = _Lexer(self.scope.env, "\\", skip_quotes=True)
        try:
            return lexer.process(content)
        except _LexError as exc:
            raise self.builder.error(line, f"failed to expand heredoc: {exc}") from None

    def copy_sources(
        self, cmd: str, ref: _Ref | None, words: list[_Expanded], *, parents: bool
    ) -> tuple[list[Source], list[str]]:
        """ADD of an http(s) URL downloads it, of a git URL clones it (reference.md, ADD)."""
        sources: list[Source] = []
        local: list[_Expanded] = []
        reasons: list[str] = []
        for word in words:
            remote = _remote_kind(word.text) if cmd == "ADD" and ref is None else None
            if remote is None:
                local.append(word)
                continue
            sources.append(Source(remote, (), word.text))
            reasons.append(f"ADD <{remote}> {word.text}")
        if local:
            paths = tuple(_norm_path(w.text, parents=parents) for w in local)
            sources.insert(0, _source_at(ref, paths, parents=parents))
            reasons[:0] = self.reasons(f"{cmd} source", local)
        return sources, reasons

    def copy_flags(self, flags: list[tuple[str, str | None]], line: int) -> list[str]:
        """Canonical flags: booleans as true/false, word-valued ones expanded."""
        out: list[str] = []
        for name, value in flags:
            if name == "from":
                continue
            if name in _BOOL_FLAGS:
                out.append(f"{name}={str(_flag_bool(value)).lower()}")
            elif value is not None:
                out.append(f"{name}={self.expand(value, line).text}")
            else:
                out.append(name)
        return out


_MOUNT_ALIASES = {
    "src": "source",
    "dst": "target",
    "destination": "target",
    "ro": "readonly",
    "rw": "readwrite",
}
_BOOL_FLAGS = frozenset({"link", "parents", "keep-git-dir", "unpack"})


# --- small pure helpers ----------------------------------------------------------------


def _plain(cmd: _Cmd, *, unpredictable: str | None = None) -> Instruction:
    return Instruction(
        line=cmd.start_line,
        end_line=cmd.end_line,
        cmd=cmd.cmd,
        original=cmd.original,
        step=False,
        unpredictable=unpredictable,
    )


def _step(
    cmd: _Cmd,
    *,
    key: Mapping[str, object],
    sources: tuple[Source, ...] = (),
    unpredictable: str | None = None,
    cache_mounts: tuple[CacheMount, ...] = (),
) -> Instruction:
    return Instruction(
        line=cmd.start_line,
        end_line=cmd.end_line,
        cmd=cmd.cmd,
        original=cmd.original,
        step=True,
        sources=sources,
        key=_canonical(key),
        unpredictable=unpredictable,
        cache_mounts=cache_mounts,
    )


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _source_at(ref: _Ref | None, paths: tuple[str, ...], *, parents: bool = False) -> Source:
    """A source read from the build context (no ref) or from what `ref` points at."""
    if ref is None:
        return Source("context", paths, parents=parents)
    if ref.kind in {"image", "scratch"}:
        return Source("image", (), ref.ref, parents=parents)
    kind: SourceKind = "stage" if ref.kind == "stage" else "named"
    return Source(kind, paths, ref.ref, parents=parents)


def _arg_pairs(cmd: _Cmd, builder: _Builder) -> list[tuple[str, str | None]]:
    """ARG name[=default] ...: each word is a name with an optional default."""
    if not cmd.value:
        raise builder.error(cmd.start_line, "ARG requires at least one argument")
    pairs: list[tuple[str, str | None]] = []
    for word in cmd.value:
        key, sep, default = word.partition("=")
        pairs.append((key, default if sep else None))
    return pairs


def _flags(cmd: _Cmd) -> list[tuple[str, str | None]]:
    """`--name=value` and bare `--name` flags, in order."""
    out: list[tuple[str, str | None]] = []
    for flag in cmd.flags:
        name, sep, value = flag.removeprefix("--").partition("=")
        out.append((name.lower(), value if sep else None))
    return out


def _flag_bool(value: str | None) -> bool:
    """A bare boolean flag is true; `--link=false` is not (strconv.ParseBool spellings)."""
    return True if value is None else _BOOLS.get(value.lower(), False)


def _norm_path(path: str, *, parents: bool = False) -> str:
    """reference.md, COPY "Source": leading `/` and `../` are dropped, as are trailing `/`.

    With --parents a `/./` marks where the kept parent directories start, so it stays.
    """
    while path.startswith(("./", "/")):
        path = path[2:] if path.startswith("./") else path[1:]
    if parents and "/./" in path:
        head, tail = path.split("/./", 1)
        return f"{_clean(head)}/./{_clean(tail)}"
    return _clean(path)


def _clean(path: str) -> str:
    return posixpath.normpath("/" + path).lstrip("/") or "."


def _join_workdir(current: str | None, path: str) -> str:
    """A relative WORKDIR continues the previous one (reference.md, WORKDIR).

    Unknown (the base image's): kept as the `$WORKDIR` placeholder.
    """
    if not path.startswith("/"):
        path = f"{current if current is not None else '$WORKDIR'}/{path}"
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("/") else cleaned


def _remote_kind(source: str) -> Literal["url", "git"] | None:
    """dfgitutil.ParseGitRef: git@host:path, git://, ssh:// and http(s) URLs ending .git."""
    if source.startswith(("git://", "ssh://", "git@")) or _GIT_SCP.match(source):
        return "git"
    if source.startswith(("http://", "https://")):
        return "git" if urlsplit(source).path.endswith(".git") else "url"
    return None


def _familiar(ref: str) -> str:
    """An image name as dockerui compares named contexts: `docker.io/library/x:latest` is x."""
    for domain in ("docker.io/", "index.docker.io/"):
        if ref.startswith(domain):
            ref = ref.removeprefix(domain)
            break
    if ref.startswith("library/") and ref.count("/") == 1:
        ref = ref.removeprefix("library/")
    return ref.removesuffix(":latest")


# --- variable expansion ----------------------------------------------------------------


class _LexError(Exception):
    """A word BuildKit's shell lexer rejects."""


class _Lexer:
    """BuildKit's word expansion (frontend/dockerfile/shell/lex.go, ProcessWord).

    `$X`, `${X}`, `${X:-w}`, `${X-w}`, `${X:+w}`, `${X+w}`, `${X:?w}`, `${X#p}`, `${X%p}`,
    `${X/p/r}`; quotes are removed (unless `skip_quotes`) and the escape character escapes
    the next one, so `\\$X` stays literal. `unmatched` collects the variables used for
    their value while unset (not those with a default or alternative).
    """

    def __init__(
        self, env: Mapping[str, str], escape: str = "\\", *, skip_quotes: bool = False
    ) -> None:
        self.env = env
        self.escape = escape
        self.skip_quotes = skip_quotes
        self.unmatched: set[str] = set()
        self._text = ""
        self._pos = 0

    def process(self, word: str) -> str:
        self._text, self._pos = word, 0
        return self._until(None, raw_escapes=False)

    def _peek(self) -> str:
        return self._text[self._pos] if self._pos < len(self._text) else ""

    def _next(self) -> str:
        ch = self._peek()
        self._pos += 1
        return ch

    def _until(self, stop: str | None, *, raw_escapes: bool) -> str:
        out: list[str] = []
        while self._pos < len(self._text):
            ch = self._peek()
            if ch == stop:
                self._pos += 1
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
            elif ch in {"'", '"'} and not self.skip_quotes:
                out.append(self._single() if ch == "'" else self._double(raw_escapes=raw_escapes))
            else:
                self._pos += 1
                if ch == self.escape:
                    if raw_escapes:
                        out.append(ch)
                    if self._pos >= len(self._text):
                        break
                    ch = self._next()
                out.append(ch)
        if stop is not None:
            raise _LexError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out)

    def _single(self) -> str:
        end = self._text.find("'", self._pos + 1)
        if end < 0:
            raise _LexError("unexpected end of statement while looking for matching single-quote")
        out = self._text[self._pos + 1 : end]
        self._pos = end + 1
        return out

    def _double(self, *, raw_escapes: bool) -> str:
        self._pos += 1
        out: list[str] = []
        while (ch := self._peek()) != '"':
            if not ch:
                raise _LexError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == "$":
                out.append(self._dollar())
                continue
            self._pos += 1
            if ch == self.escape:
                if raw_escapes:
                    out.append(ch)
                if not self._peek():
                    continue
                if self._peek() in {'"', "$", self.escape}:
                    ch = self._next()
            out.append(ch)
        self._pos += 1
        return "".join(out)

    def _name(self) -> str:
        start = self._pos
        first = self._peek()
        if first.isdigit():
            while self._peek().isdigit():
                self._pos += 1
        elif first and first in "@*#?-$!0":
            self._pos += 1
        else:
            while (ch := self._peek()) and (ch.isalnum() or ch == "_"):
                self._pos += 1
        return self._text[start : self._pos]

    def _lookup(self, name: str, *, record: bool = True) -> tuple[str, bool]:
        if name in self.env:
            return self.env[name], True
        if record:
            self.unmatched.add(name)
        return "", False

    def _dollar(self) -> str:
        self._pos += 1
        if self._peek() != "{":
            name = self._name()
            return self._lookup(name)[0] if name else "$"
        self._pos += 1
        if not self._peek():
            raise _LexError("syntax error: missing '}'")
        if self._peek() in "{}:":
            raise _LexError("syntax error: bad substitution")
        name = self._name()
        op = self._next()
        if not op:
            raise _LexError("syntax error: missing '}'")
        if op == "}":
            return self._lookup(name)[0]
        if op == "/":
            return self._replace(name)
        null_is_unset = op == ":"
        if null_is_unset:
            op = self._next()
        if not op or op not in "+-?#%":
            raise _LexError(
                f"unsupported modifier ({':' if null_is_unset else ''}{op}) in substitution"
            )
        return self._modifier(name, op, null_is_unset=null_is_unset)

    def _until_or(self, stop: str, missing: str, *, raw_escapes: bool) -> str:
        try:
            return self._until(stop, raw_escapes=raw_escapes)
        except _LexError:
            if self._pos >= len(self._text):
                raise _LexError(missing) from None
            raise

    def _modifier(self, name: str, op: str, *, null_is_unset: bool) -> str:
        word = self._until_or("}", "syntax error: missing '}'", raw_escapes=op in "#%")
        value, is_set = self._lookup(name, record=op in "#%")
        empty = not is_set or (null_is_unset and not value)
        if op == "-":
            return word if empty else value
        if op == "+":
            return "" if empty else word
        if op == "?":
            if empty:
                unset = "is not allowed to be unset" if not is_set else "is not allowed to be empty"
                raise _LexError(f"{name}: {word or unset}")
            return value
        greedy = word.startswith(op)
        return _trim(value, _pattern(word[1:] if greedy else word), greedy=greedy, suffix=op == "%")

    def _replace(self, name: str) -> str:
        replace_all = self._peek() == "/"
        if replace_all:
            self._pos += 1
        pattern = self._until_or("/", "syntax error: missing '/' in ${}", raw_escapes=True)
        replacement = self._until_or("}", "syntax error: missing '}'", raw_escapes=True)
        value = self._lookup(name)[0]
        return _pattern(pattern).sub(lambda _: replacement, value, count=0 if replace_all else 1)


def _pattern(pattern: str) -> re.Pattern[str]:
    """lex.go, convertShellPatternToRegex: `*`, `?` and `\\`-escapes of `*`, `?`, `\\`."""
    out: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            escaped = next(chars, "")
            # `\}` and `\/` only protect the ${...} syntax; `\*`, `\?`, `\\` are literal.
            if escaped not in {"}", "/", "*", "?", "\\"}:
                raise _LexError(f"invalid escape '\\{escaped}' in pattern {pattern!r}")
            out.append(re.escape(escaped))
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _trim(value: str, pattern: re.Pattern[str], *, greedy: bool, suffix: bool) -> str:
    """`${X#p}`/`${X##p}` drop the shortest/longest matching prefix, `%` a suffix."""
    cuts = range(len(value) + 1)
    if suffix:
        for cut in cuts if greedy else reversed(cuts):
            if pattern.fullmatch(value[cut:]):
                return value[:cut]
        return value
    for cut in reversed(cuts) if greedy else cuts:
        if pattern.fullmatch(value[:cut]):
            return value[cut:]
    return value
