from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from buildpilot.dockerfile import (
    CacheMount,
    DockerfileError,
    DockerfileModel,
    Instruction,
    Source,
    parse_dockerfile,
)
from buildpilot.errors import BuildpilotError


def parse(
    text: str, build_args: Mapping[str, str] | None = None, named: tuple[str, ...] = ()
) -> DockerfileModel:
    return parse_dockerfile(
        text, path="svc/Dockerfile", build_args=build_args or {}, named_contexts=named
    )


def at(model: DockerfileModel, line: int) -> Instruction:
    """The instruction starting on `line`, whatever its stage."""
    found = [i for s in model.stages for i in s.instructions if i.line == line]
    assert len(found) == 1, f"no instruction on line {line}"
    return found[0]


def last(model: DockerfileModel) -> Instruction:
    return model.stages[-1].instructions[-1]


def run_env(model: DockerfileModel, line: int) -> dict[str, str]:
    return dict(json.loads(at(model, line).key)["env"])


MULTI = """\
FROM golang:1.22 AS build
RUN go build -o /out/app
FROM alpine AS lint
RUN echo lint
FROM build AS test
RUN --mount=type=bind,from=lint,target=/l go test
FROM scratch
COPY --from=build /out/app /app
"""


# --- stages and what FROM resolves to --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "named", "expected"),
    [
        pytest.param(
            MULTI,
            (),
            [
                ("build", "image", None),
                ("lint", "image", None),
                ("test", "stage", 0),
                (None, "scratch", None),
            ],
            id="multi-stage",
        ),
        pytest.param(
            "FROM alpine:latest\n",
            ("alpine",),
            [(None, "named", None)],
            id="named-context-replaces-image",
        ),
        pytest.param(
            "FROM docker.io/library/alpine\n",
            ("alpine:latest",),
            [(None, "named", None)],
            id="named-context-familiar-names",
        ),
        pytest.param(
            "FROM alpine:3.20\n",
            ("alpine",),
            [(None, "image", None)],
            id="other-tag-is-not-the-context",
        ),
        pytest.param(
            "FROM node AS base\nFROM base\n",
            ("base",),
            [("base", "image", None), (None, "named", None)],
            id="named-context-replaces-a-stage",
        ),
        pytest.param(
            "FROM app\nFROM alpine AS app\n",
            (),
            [(None, "image", None), ("app", "image", None)],
            id="a-later-stage-name-is-an-image",
        ),
        pytest.param(
            "ARG BASE=debian\nFROM ${BASE}:12 AS One\n",
            (),
            [("one", "image", None)],
            id="expanded-base-and-lower-cased-name",
        ),
    ],
)
def test_from_resolution(
    text: str, named: tuple[str, ...], expected: list[tuple[str | None, str, int | None]]
) -> None:
    model = parse(text, named=named)
    assert [(s.name, s.base_kind, s.base_stage) for s in model.stages] == expected


def test_a_named_context_overriding_a_stage_builds_none_of_it() -> None:
    model = parse("FROM node AS base\nRUN make\nFROM base\nRUN ls\n", named=("base",))
    assert model.stages[0].overridden
    assert [s.index for s in model.needed_stages(None)] == [1]


def test_stage_lookup_and_target() -> None:
    model = parse(MULTI)
    assert model.stage("BUILD") is model.stages[0]
    assert model.stage("3") is model.stages[3]
    assert model.stage("9") is None
    assert model.target_stage(None) is model.stages[3]
    assert model.target_stage("Test") is model.stages[2]
    assert model.stages[0].base == "golang:1.22"


def test_platform_and_stage_key() -> None:
    model = parse("ARG V=3.20\nFROM --platform=$BUILDPLATFORM alpine:$V\n")
    stage = model.stages[0]
    assert (stage.base, stage.platform) == ("alpine:3.20", "${BUILDPLATFORM}")
    other = parse("ARG V=3.20\nFROM --platform=$BUILDPLATFORM alpine:$V\n", {"V": "3.21"})
    assert other.stages[0].key != stage.key
    assert parse("FROM --platform=linux/arm64 alpine\n").stages[0].platform == "linux/arm64"


# --- COPY/ADD sources ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "named", "expected"),
    [
        ("COPY --from=build /out/app /app", (), Source("stage", ("out/app",), "build")),
        ("COPY --from=0 /out/ ./", (), Source("stage", ("out",), "build")),
        ("COPY --from=BUILD /a /b", (), Source("stage", ("a",), "build")),
        ("COPY --from=1 /etc/x /x", (), Source("stage", ("etc/x",), "1")),
        ("COPY --from=assets /img /img", ("assets",), Source("named", ("img",), "assets")),
        (
            "COPY --from=nginx:latest /etc/nginx/nginx.conf /n",
            (),
            Source("image", (), "nginx:latest"),
        ),
        ("COPY ./src/../lib/ /app/", (), Source("context", ("lib",))),
        ("COPY . /app", (), Source("context", (".",))),
        ('COPY ["my dir/a b.txt", "/x"]', (), Source("context", ("my dir/a b.txt",))),
        ('COPY "quoted file" /x', (), None),
        (
            "COPY --parents ./x/./y/*.txt ./z/a.txt /p/",
            (),
            Source("context", ("x/./y/*.txt", "z/a.txt"), parents=True),
        ),
        ("COPY --parents=false ./x/./y /p/", (), Source("context", ("x/y",))),
        ("ADD vendor.tar.gz /v/", (), Source("context", ("vendor.tar.gz",))),
    ],
)
def test_copy_sources(line: str, named: tuple[str, ...], expected: Source | None) -> None:
    text = f"FROM golang AS build\nFROM alpine\nFROM debian\n{line}\n"
    if expected is None:
        with pytest.raises(DockerfileError, match=r"svc/Dockerfile:4: .*double-quote"):
            parse(text, named=named)
        return
    instruction = last(parse(text, named=named))
    assert instruction.step
    assert instruction.sources == (expected,)
    assert instruction.unpredictable is None


def test_copy_from_a_stage_defined_later_cannot_be_built() -> None:
    model = parse("FROM alpine\nCOPY --from=later /a /a\nFROM alpine AS later\n")
    instruction = at(model, 2)
    assert instruction.sources == (Source("stage", ("a",), "later"),)
    assert instruction.unpredictable is not None
    assert "not defined before this stage" in instruction.unpredictable


@pytest.mark.parametrize(
    ("line", "kind", "reason"),
    [
        ("ADD https://example.com/x.tgz /x", "url", "ADD <url> https://example.com/x.tgz"),
        (
            "ADD https://github.com/moby/buildkit.git#v0.14 /bk",
            "git",
            "ADD <git> https://github.com/",
        ),
        ("ADD git@github.com:moby/buildkit.git /bk", "git", "ADD <git> git@github.com:"),
        ("ADD git://example.com/repo /r", "git", "ADD <git> git://"),
    ],
)
def test_add_of_remote_sources_is_unpredictable(line: str, kind: str, reason: str) -> None:
    instruction = last(parse(f"FROM alpine\n{line}\n"))
    assert [s.kind for s in instruction.sources] == [kind]
    assert instruction.sources[0].paths == ()
    assert instruction.unpredictable is not None
    assert instruction.unpredictable.startswith(reason)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "FROM alpine\nCOPY $UNSET/app /app\n",
            "COPY source uses $UNSET, which the Dockerfile does not set",
        ),
        ("FROM alpine\nARG SRC\nCOPY ${SRC} /app\n", "COPY source uses $SRC, an arg with no value"),
        (
            "ARG SRC=src\nFROM alpine\nCOPY $SRC /app\n",
            "COPY source uses $SRC, which the Dockerfile does not set",
        ),
        (
            "FROM alpine\nARG TARGETARCH\nCOPY bin/$TARGETARCH /bin\n",
            "COPY source uses $TARGETARCH, set by the build platform",
        ),
        (
            "FROM alpine\nRUN --mount=source=$DIR,target=/d make\n",
            "RUN --mount source uses $DIR, which the Dockerfile does not set",
        ),
        ("FROM alpine\nCOPY ${UNSET:-src} /app\n", None),
        ("FROM alpine\nARG SRC=src\nCOPY $SRC /app\n", None),
    ],
)
def test_sources_from_variables_without_a_value_are_unpredictable(
    text: str, reason: str | None
) -> None:
    assert last(parse(text)).unpredictable == reason


def test_a_build_arg_makes_a_source_predictable() -> None:
    instruction = last(parse("FROM alpine\nARG SRC\nCOPY ${SRC}/ /app\n", {"SRC": "./svc"}))
    assert instruction.sources == (Source("context", ("svc",)),)
    assert instruction.unpredictable is None


# --- heredocs --------------------------------------------------------------------------


def test_copy_heredoc_is_a_heredoc_source_expanded_unless_quoted() -> None:
    text = 'FROM alpine\nARG V=1\nCOPY <<EOF <<-"RAW" /etc/\nv=$V\nEOF\n\tv=$V\n\tRAW\n'
    model = parse(text)
    instruction = at(model, 3)
    assert instruction.sources == (Source("heredoc", ()), Source("heredoc", ()))
    assert json.loads(instruction.key)["heredocs"] == [["EOF", "v=1\n"], ["RAW", "v=$V\n"]]
    assert at(parse(text, {"V": "2"}), 3).key != instruction.key


def test_run_heredoc_is_part_of_the_command() -> None:
    text = "FROM alpine\nRUN <<EOF sh\nset -e\necho {}\nEOF\n"
    one, two = at(parse(text.format("one")), 2), at(parse(text.format("two")), 2)
    assert one.step
    assert one.sources == ()
    assert one.end_line == 5
    assert one.key != two.key


# --- RUN mounts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mount", "sources", "caches"),
    [
        ("--mount=target=/src", [Source("context", (".",))], []),
        (
            "--mount=type=bind,source=./go.mod,target=/src/go.mod",
            [Source("context", ("go.mod",))],
            [],
        ),
        ("--mount=type=bind,from=build,src=/out,dst=/o", [Source("stage", ("out",), "build")], []),
        ("--mount=from=tools,target=/t", [Source("named", (".",), "tools")], []),
        ("--mount=from=busybox:1.36,target=/bb", [Source("image", (), "busybox:1.36")], []),
        (
            "--mount=type=cache,target=/root/.cache",
            [],
            [CacheMount(id="/root/.cache", target="/root/.cache")],
        ),
        (
            "--mount=type=cache,id=gomod,target=/go/pkg/mod,sharing=locked",
            [],
            [CacheMount(id="gomod", target="/go/pkg/mod", sharing="locked")],
        ),
        (
            "--mount=type=cache,from=build,source=/cache,target=/c",
            [Source("stage", ("cache",), "build")],
            [CacheMount(id="/c", target="/c", from_="build", source="/cache")],
        ),
        ("--mount=type=secret,id=npmrc,target=/root/.npmrc", [], []),
        ("--mount=type=ssh", [], []),
        ("--mount=type=tmpfs,target=/tmp", [], []),
    ],
)
def test_run_mounts(mount: str, sources: list[Source], caches: list[CacheMount]) -> None:
    instruction = last(
        parse(f"FROM golang AS build\nFROM golang\nRUN {mount} make\n", named=("tools",))
    )
    assert list(instruction.sources) == sources
    assert list(instruction.cache_mounts) == caches


def test_mount_from_refuses_variables() -> None:
    with pytest.raises(DockerfileError, match=r"svc/Dockerfile:3: 'from' doesn't support variable"):
        parse("FROM alpine\nARG S=x\nRUN --mount=from=$S,target=/x ls\n")


# --- ARG and ENV scope -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "build_args", "line", "expected"),
    [
        pytest.param(
            "ARG V=1\nFROM alpine\nRUN env\n", {}, 3, {}, id="global-arg-not-seen-in-stage"
        ),
        pytest.param(
            "ARG V=1\nFROM alpine\nARG V\nRUN env\n",
            {},
            4,
            {"V": "1"},
            id="redeclared-global-gets-default",
        ),
        pytest.param(
            "ARG V=1\nFROM alpine\nARG V\nRUN env\n",
            {"V": "9"},
            4,
            {"V": "9"},
            id="build-arg-overrides-global",
        ),
        pytest.param(
            "FROM alpine\nARG V=1\nRUN env\n",
            {"V": "9"},
            3,
            {"V": "9"},
            id="build-arg-overrides-stage-default",
        ),
        pytest.param(
            "FROM alpine\nRUN env\n", {"V": "9"}, 2, {}, id="undeclared-build-arg-not-seen"
        ),
        pytest.param(
            "FROM alpine\nARG A=x B=${A}y\nRUN env\n",
            {},
            3,
            {"A": "x", "B": "xy"},
            id="default-sees-earlier-arg",
        ),
        pytest.param("FROM alpine\nARG V\nRUN env\n", {}, 3, {}, id="declared-without-value"),
        pytest.param(
            "FROM alpine AS base\nARG V=1\nENV E=$V\nFROM base\nRUN env\n",
            {},
            5,
            {"V": "1", "E": "1"},
            id="child-stage-inherits-arg-and-env",
        ),
        pytest.param(
            "FROM alpine AS base\nENV E=1\nFROM alpine\nRUN env\n",
            {},
            4,
            {},
            id="unrelated-stage-sees-nothing",
        ),
        pytest.param(
            "FROM alpine\nARG V\nENV V=from-env\nRUN env\n",
            {"V": "9"},
            4,
            {"V": "from-env"},
            id="env-overrides-arg",
        ),
        pytest.param(
            "FROM alpine\nENV A=1\nENV A=2 B=$A\nRUN env\n",
            {},
            4,
            {"A": "2", "B": "1"},
            id="env-sees-values-before-it",
        ),
    ],
)
def test_exec_environment_of_run(
    text: str, build_args: dict[str, str], line: int, expected: dict[str, str]
) -> None:
    assert run_env(parse(text, build_args), line) == expected


def test_global_args_keep_declared_defaults() -> None:
    model = parse("ARG A=1\nARG B=${A}2 C\nFROM alpine\n", {"A": "x"})
    assert dict(model.global_args) == {"A": "1", "B": "x2", "C": None}


# --- variable expansion ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("$A", "/w/a"),
        ("${A}_x", "/w/a_x"),
        ("${UNSET:-dflt}", "/w/dflt"),
        ("${EMPTY:-dflt}", "/w/dflt"),
        ("${EMPTY-dflt}", "/w"),
        ("${A:+alt}", "/w/alt"),
        ("${UNSET:+alt}", "/w"),
        ("${EMPTY+alt}", "/w/alt"),
        ("\\$A", "/w/$A"),
        ("'$A'", "/w/$A"),
        ('"$A b"', "/w/a b"),
        ("${F#*.}", "/w/b.c"),
        ("${F##*.}", "/w/c"),
        ("${F%.*}", "/w/a.b"),
        ("${F%%.*}", "/w/a"),
        ("${F/./-}", "/w/a-b.c"),
        ("${F//./-}", "/w/a-b-c"),
        ("$UNSET/x", "/w/x"),
    ],
)
def test_expansion_forms(word: str, expected: str) -> None:
    model = parse(f'FROM alpine\nENV A=a EMPTY="" F=a.b.c\nWORKDIR /w/{word}\n')
    assert json.loads(last(model).key)["path"] == expected


def test_escape_directive_changes_the_escape_character() -> None:
    model = parse("# escape=`\nFROM alpine\nENV A=a\nWORKDIR /`$A/$A\n")
    assert json.loads(last(model).key)["path"] == "/$A/a"


@pytest.mark.parametrize(
    ("word", "problem"),
    [
        ("${A", "missing '}'"),
        ("${:x}", "bad substitution"),
        ("${UNSET:?must be set}", "UNSET: must be set"),
    ],
)
def test_bad_expansions_fail_with_the_line(word: str, problem: str) -> None:
    with pytest.raises(DockerfileError, match=rf"svc/Dockerfile:2: .*{problem}"):
        parse(f"FROM alpine\nWORKDIR /{word}\n")


# --- steps and their keys --------------------------------------------------------------


def test_steps_and_non_steps() -> None:
    text = (
        "FROM alpine\nLABEL a=b\nWORKDIR /\nWORKDIR app\nUSER app\nONBUILD RUN make\n"
        "FROBNICATE x\nRUN make\nEXPOSE 80\n"
    )
    model = parse(text)
    assert [(i.cmd, i.step) for i in model.stages[0].instructions] == [
        ("LABEL", False),
        ("WORKDIR", False),
        ("WORKDIR", True),
        ("USER", False),
        ("ONBUILD", False),
        ("FROBNICATE", False),
        ("RUN", True),
        ("EXPOSE", False),
    ]
    assert json.loads(at(model, 4).key) == {"cmd": "WORKDIR", "path": "/app", "user": None}
    assert at(model, 7).unpredictable == "unknown instruction FROBNICATE"
    assert at(model, 2).key == ""


def test_onbuild_is_flagged_only_when_a_stage_builds_from_it() -> None:
    alone = parse("FROM alpine AS base\nONBUILD COPY . /app\n")
    assert at(alone, 2).unpredictable is None
    used = parse("FROM alpine AS base\nONBUILD COPY . /app\nFROM base\n")
    assert at(used, 2).unpredictable is not None


RUN_FILE = """\
FROM alpine
ARG VERSION=1
ENV MODE=prod
WORKDIR /app
RUN ./build.sh
{later}
"""


@pytest.mark.parametrize(
    ("build_args", "later", "changes"),
    [
        pytest.param({}, "RUN true", False, id="same"),
        pytest.param({"VERSION": "2"}, "RUN true", True, id="arg-value-it-sees"),
        pytest.param({"OTHER": "2"}, "RUN true", False, id="undeclared-build-arg"),
        pytest.param({}, "RUN false\nENV MODE=dev", False, id="later-instructions"),
    ],
)
def test_run_key(build_args: dict[str, str], later: str, changes: bool) -> None:
    base = at(parse(RUN_FILE.format(later="RUN true")), 5).key
    key = at(parse(RUN_FILE.format(later=later), build_args), 5).key
    assert (key != base) is changes


@pytest.mark.parametrize(
    ("edit", "changes"),
    [
        pytest.param(("MODE=prod", "MODE=dev"), True, id="env-value"),
        pytest.param(("WORKDIR /app", "WORKDIR /srv"), True, id="workdir"),
        pytest.param(("FROM alpine\n", "FROM alpine\nUSER 1000\n"), True, id="user"),
        pytest.param(
            ("FROM alpine\n", 'FROM alpine\nSHELL ["/bin/bash", "-c"]\n'), True, id="shell"
        ),
    ],
)
def test_run_key_sees_the_exec_state(edit: tuple[str, str], changes: bool) -> None:
    text = RUN_FILE.format(later="")
    edited = text.replace(*edit)
    line = 5 + edited.count("\n") - text.count("\n")
    assert (at(parse(edited), line).key != at(parse(text), 5).key) is changes


COPY_FILE = """\
FROM alpine
ENV MODE=prod
ARG DIR=src
WORKDIR /app
COPY --chown=1000:1000 --exclude=*.md $DIR/ ./
"""


@pytest.mark.parametrize(
    ("edit", "build_args", "changes"),
    [
        pytest.param(("MODE=prod", "MODE=dev"), {}, False, id="env-not-in-copy-key"),
        pytest.param(("", ""), {"DIR": "lib"}, True, id="expanded-source"),
        pytest.param(("WORKDIR /app", "WORKDIR /srv"), {}, True, id="workdir"),
        pytest.param(("--exclude=*.md", "--exclude=*.txt"), {}, True, id="exclude"),
        pytest.param(("--chown=1000:1000", "--chown=0:0"), {}, True, id="chown"),
        pytest.param(("COPY", "COPY --link"), {}, True, id="link"),
    ],
)
def test_copy_key(edit: tuple[str, str], build_args: dict[str, str], changes: bool) -> None:
    before = at(parse(COPY_FILE), 5).key
    after = at(parse(COPY_FILE.replace(*edit), build_args), 5).key
    assert (after != before) is changes


def test_copy_key_has_exclude_and_parents_flags() -> None:
    model = parse("FROM alpine\nCOPY --parents --exclude=*.md --exclude=tmp ./a ./b /dst/\n")
    key = json.loads(last(model).key)
    assert key["flags"] == ["parents=true", "exclude=*.md", "exclude=tmp"]
    assert last(model).sources == (Source("context", ("a", "b"), parents=True),)


# --- which stages a target builds ------------------------------------------------------


NEEDED = """\
FROM alpine AS tools
FROM golang AS deps
FROM deps AS build
COPY --from=tools /bin/t /bin/t
FROM alpine AS docs
RUN --mount=type=cache,from=deps,target=/c make docs
FROM alpine AS unrelated
FROM scratch AS final
COPY --from=2 /out /out
"""


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (None, [0, 1, 2, 5]),
        ("build", [0, 1, 2]),
        ("docs", [1, 3]),
        ("unrelated", [4]),
        ("TOOLS", [0]),
    ],
)
def test_needed_stages(target: str | None, expected: list[int]) -> None:
    assert [s.index for s in parse(NEEDED).needed_stages(target)] == expected


def test_needed_stages_via_run_mount_from_a_stage() -> None:
    assert [s.index for s in parse(MULTI).needed_stages("test")] == [0, 1, 2]


# --- directives and errors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "syntax"),
    [
        ("# syntax=docker/dockerfile:1.7\nFROM alpine\n", "docker/dockerfile:1.7"),
        ("#Syntax = docker/dockerfile:1\n# escape=\\\nFROM alpine\n", "docker/dockerfile:1"),
        ("# a comment\n# syntax=docker/dockerfile:1\nFROM alpine\n", None),
        ("FROM alpine\n# syntax=docker/dockerfile:1\n", None),
    ],
)
def test_syntax_directive(text: str, syntax: str | None) -> None:
    assert parse(text).syntax == syntax


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM alpine\nRUN echo\nRUN <<EOF\necho\n", "svc/Dockerfile:3: unterminated heredoc"),
        ("# escape=x\nFROM alpine\n", "svc/Dockerfile:1: invalid escape token"),
        ("ARG A=1\n", "svc/Dockerfile:1: no FROM instruction"),
        ("", "svc/Dockerfile:1: file with no instructions"),
        ("RUN make\nFROM alpine\n", "svc/Dockerfile:1: RUN before the first FROM"),
        ("FROM alpine AS b c\n", "svc/Dockerfile:1: FROM requires either one or three arguments"),
        ("FROM alpine AS 1st\n", "svc/Dockerfile:1: invalid name for build stage"),
        ("ARG B\nFROM $B\n", "svc/Dockerfile:2: base name ($B) should not be blank"),
        (
            "FROM alpine AS build\nFROM Build\n",
            "svc/Dockerfile:2: FROM Build: stage names are matched",
        ),
        ("FROM alpine\nCOPY --from=5 /a /a\n", "svc/Dockerfile:2: invalid stage index 5"),
        (
            "FROM alpine\nCOPY --from=$S /a /a\n",
            "svc/Dockerfile:2: variable expansion is not supported for --from",
        ),
        ("FROM alpine\nCOPY onlyone\n", "svc/Dockerfile:2: COPY requires at least two arguments"),
    ],
)
def test_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(DockerfileError) as info:
        parse(text)
    assert str(info.value).startswith(message)
    assert isinstance(info.value, BuildpilotError)


def test_unknown_target() -> None:
    model = parse(MULTI)
    with pytest.raises(
        DockerfileError,
        match=r"target stage 'nope' could not be found \(stages: build, lint, test\)",
    ):
        model.target_stage("nope")
    with pytest.raises(DockerfileError, match="could not be found"):
        model.needed_stages("0")
