"""Broken configs and Dockerfiles, each through the real CLI as a process: exit code 2, one
clear message with file, line and field where known, and no traceback.

The processes run four at a time, once per session; each case is then one test.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import git, write_tree
from tests.faults.conftest import Done, buildpilot

HEAD = "version: 1\nregistry: localhost:5000/bad\nimages:\n"
GOOD_DOCKERFILE = "FROM scratch\nCOPY x /x\n"


@dataclass(frozen=True)
class Case:
    """One broken input: the files over a small valid repository, the command, and the
    fragments its one message must hold (`where` is `buildpilot.yaml:<line>: <field>`)."""

    id: str
    files: Mapping[str, str | bytes]
    expected: str
    where: str = ""
    command: tuple[str, ...] = ("validate",)
    links: Mapping[str, str] = field(default_factory=dict)  # symlink -> target


def config(body: str) -> dict[str, str]:
    """A config made of the usual head and `body` (the images)."""
    return {"buildpilot.yaml": HEAD + body}


def dockerfile(text: str | bytes, **more: str) -> dict[str, str | bytes]:
    """Image `a` built from context `e`, whose Dockerfile is `text`."""
    return {**config("  a: {context: e, " + more.get("extra", "") + "}\n"), "e/Dockerfile": text}


A = "  a: {context: base}\n"

CASES = [
    # --- YAML ---------------------------------------------------------------------------
    Case(
        "yaml-syntax",
        {"buildpilot.yaml": "version: 1\nregistry: [a\nimages: {}\n"},
        "expected ',' or ']'",
        "buildpilot.yaml:3: ",
    ),
    Case(
        "tabs", config("\tbase: {context: base}\n"), "tabs are not allowed", "buildpilot.yaml:4: "
    ),
    Case(
        "duplicate-image",
        config(A + A),
        "duplicate key 'a' (first at line 4)",
        "buildpilot.yaml:5: ",
    ),
    Case(
        "duplicate-top-key",
        {"buildpilot.yaml": "version: 1\nversion: 1\nregistry: r\nimages: {a: {context: base}}\n"},
        "duplicate key 'version' (first at line 1)",
        "buildpilot.yaml:2: ",
    ),
    Case(
        "two-documents",
        {"buildpilot.yaml": HEAD + A + "---\nversion: 1\n"},
        "expected a single document",
        "buildpilot.yaml:5: ",
    ),
    Case(
        "undefined-alias", config("  a: *nope\n"), "undefined alias 'nope'", "buildpilot.yaml:4: "
    ),
    Case(
        "unclosed-quote",
        config('  a: {context: "base}\n'),
        "while scanning a quoted scalar",
        "buildpilot.yaml:",
    ),
    Case("complex-key", {"buildpilot.yaml": "? [a]\n: 1\n"}, "a key must be a plain value"),
    Case("empty-file", {"buildpilot.yaml": ""}, "must be a mapping", "buildpilot.yaml: "),
    Case("only-comments", {"buildpilot.yaml": "# todo\n"}, "it is empty"),
    Case("config-is-a-list", {"buildpilot.yaml": "- version: 1\n- images: {}\n"}, "it is a list"),
    Case("config-is-a-scalar", {"buildpilot.yaml": "images\n"}, "must be a mapping"),
    Case("config-not-utf8", {"buildpilot.yaml": b"\xff\xfe\x00version"}, "cannot read"),
    Case("config-missing", {"other.yaml": "x: 1\n"}, "config file not found"),
    # --- keys and types -------------------------------------------------------------------
    Case(
        "version-string",
        {"buildpilot.yaml": "version: '1'\nregistry: r\nimages: {a: {context: base}}\n"},
        "Input should be 1",
        "buildpilot.yaml:1: version: ",
    ),
    Case(
        "version-2",
        {"buildpilot.yaml": "version: 2\nregistry: r\nimages: {a: {context: base}}\n"},
        "Input should be 1",
        "buildpilot.yaml:1: version: ",
    ),
    Case(
        "no-version",
        {"buildpilot.yaml": "registry: r\nimages: {a: {context: base}}\n"},
        "required key is missing",
        "buildpilot.yaml: version: ",
    ),
    Case(
        "no-images",
        {"buildpilot.yaml": "version: 1\nregistry: r\n"},
        "required key is missing",
        "buildpilot.yaml: images: ",
    ),
    Case(
        "no-image-at-all",
        {"buildpilot.yaml": "version: 1\nregistry: r\nimages: {}\n"},
        "at least 1 item",
        "buildpilot.yaml:3: images: ",
    ),
    Case(
        "images-a-list",
        {"buildpilot.yaml": "version: 1\nregistry: r\nimages: [a, b]\n"},
        "valid dictionary",
        "buildpilot.yaml:3: images: ",
    ),
    Case("image-empty", config("  a:\n"), "valid dictionary", "buildpilot.yaml:4: images.a: "),
    Case(
        "unknown-top-key",
        {"buildpilot.yaml": "version: 1\nregistri: r\nimages: {a: {context: base}}\n"},
        "unknown key; did you mean 'registry'?",
        "buildpilot.yaml:2: registri: ",
    ),
    Case(
        "unknown-image-key",
        config("  a:\n    context: base\n    dockerfil: Dockerfile\n"),
        "unknown key; did you mean 'dockerfile'?",
        "buildpilot.yaml:6: images.a.dockerfil: ",
    ),
    Case(
        "unknown-cache-key",
        {"buildpilot.yaml": "version: 1\nregistry: r\ncache: {mod: max}\nimages: {a: {}}\n"},
        "unknown key; did you mean 'mode'?",
        "buildpilot.yaml:3: cache.mod: ",
    ),
    Case(
        "unknown-secret-key",
        config("  a:\n    context: base\n    secrets:\n      - {id: s, scr: f}\n"),
        "unknown key; did you mean 'src'?",
        "buildpilot.yaml:7: images.a.secrets.0.scr: ",
    ),
    Case(
        "cache-mode-wrong",
        {"buildpilot.yaml": "version: 1\nregistry: r\ncache: {mode: all}\nimages: {a: {}}\n"},
        "Input should be 'min' or 'max'",
        "buildpilot.yaml:3: cache.mode: ",
    ),
    Case(
        "args-a-list",
        config("  a:\n    context: base\n    args: [A=1]\n"),
        "valid dictionary",
        "buildpilot.yaml:6: images.a.args: ",
    ),
    Case(
        "arg-a-number",
        config("  a:\n    context: base\n    args: {A: 1}\n"),
        "valid string",
        "buildpilot.yaml:6: images.a.args.A: ",
    ),
    Case(
        "tags-a-string",
        config("  a:\n    context: base\n    tags: r/a:1\n"),
        "valid list",
        "buildpilot.yaml:6: images.a.tags: ",
    ),
    Case(
        "attestations-maybe",
        {"buildpilot.yaml": "version: 1\nregistry: r\nattestations: maybe\nimages: {a: {}}\n"},
        "valid boolean",
        "buildpilot.yaml:3: attestations: ",
    ),
    Case(
        "doctor-rule-id",
        config("  a: {context: base, doctor: {disable: [X1]}}\n"),
        "should match pattern",
        "buildpilot.yaml:4: images.a.doctor.disable.0: ",
    ),
    Case(
        "secret-two-sources",
        config("  a:\n    context: base\n    secrets:\n      - {id: s, src: f, env: E}\n"),
        "exactly one of 'src' or 'env'",
        "buildpilot.yaml:7: images.a.secrets.0: ",
    ),
    Case(
        "secret-id-spaces",
        config("  a:\n    context: base\n    secrets:\n      - {id: 'a b', env: E}\n"),
        "should match pattern",
        "buildpilot.yaml:7: images.a.secrets.0.id: ",
    ),
    # --- image references, cycles, templates -----------------------------------------------
    Case(
        "image-name-uppercase",
        config("  App: {context: base}\n"),
        "lowercase letters",
        "buildpilot.yaml:4: images.App: ",
    ),
    Case(
        "unknown-dependency",
        config("  base: {context: base}\n  a: {context: base, depends_on: [bsae]}\n"),
        "unknown image 'bsae'; did you mean 'base'?",
        "buildpilot.yaml:5: images.a.depends_on.0: ",
    ),
    Case(
        "unknown-image-context",
        config(
            "  base: {context: base}\n  a:\n    context: base\n    contexts: {b: 'image:bas'}\n"
        ),
        "unknown image 'bas'; did you mean 'base'?",
        "buildpilot.yaml:7: images.a.contexts.b: ",
    ),
    Case(
        "own-context",
        config("  a:\n    context: base\n    contexts: {b: 'image:a'}\n"),
        "an image cannot be its own context",
        "buildpilot.yaml:6: images.a.contexts.b: ",
    ),
    Case(
        "cycle",
        config("  a: {context: base, depends_on: [b]}\n  b: {context: base, depends_on: [a]}\n"),
        "dependency cycle: a -> b -> a",
        "buildpilot.yaml:4: images.a: ",
    ),
    Case(
        "cycle-through-a-context",
        config(
            "  a: {context: base, depends_on: [c]}\n  b: {context: base, depends_on: [a]}\n"
            "  c: {context: base, contexts: {x: 'image:b'}}\n"
        ),
        "dependency cycle: a -> c -> b -> a",
        "buildpilot.yaml:4: images.a: ",
    ),
    Case(
        "tag-template-field",
        config("  a: {context: base, tags: ['{registry}/a:{gitsha}']}\n"),
        "unknown template field {gitsha}",
        "buildpilot.yaml:4: images.a.tags.0: ",
    ),
    Case(
        "release-template-field",
        {
            "buildpilot.yaml": "version: 1\nregistry: r\nrelease:\n  tags: ['{registry}/{name}:{ver}']"
            "\nimages: {a: {context: base}}\n"
        },
        "unknown template field {ver}",
        "buildpilot.yaml:4: release.tags.0: ",
    ),
    Case(
        "cache-repository-template-field",
        {
            "buildpilot.yaml": "version: 1\nregistry: r\ncache: {repository: '{registry}/c/{nam}'}\n"
            "images: {a: {context: base}}\n"
        },
        "unknown template field {nam}",
        "buildpilot.yaml:3: cache.repository: ",
        command=("build", "--dry-run"),
    ),
    Case(
        "registry-empty",
        {"buildpilot.yaml": "version: 1\nregistry: ''\nimages: {a: {context: base}}\n"},
        "is not a registry and repository prefix",
        "buildpilot.yaml:2: registry: ",
    ),
    Case(
        "registry-uppercase",
        {"buildpilot.yaml": "version: 1\nregistry: Localhost/Team\nimages: {a: {context: base}}\n"},
        "is not a registry and repository prefix",
        "buildpilot.yaml:2: registry: ",
        command=("build", "--dry-run"),
    ),
    Case(
        "unknown-image-built",
        config(A),
        "unknown image 'nope'",
        command=("build", "--dry-run", "nope"),
    ),
    Case("unknown-image-planned", config(A), "unknown image 'b'", command=("plan", "b")),
    # --- paths ------------------------------------------------------------------------------
    Case(
        "context-missing",
        config("  a: {context: nope}\n"),
        "does not exist",
        "buildpilot.yaml:4: images.a.context: ",
    ),
    Case(
        "context-is-a-file",
        config("  a: {context: base/x}\n"),
        "does not exist",
        "buildpilot.yaml:4: images.a.context: ",
    ),
    Case(
        "dockerfile-missing",
        config("  a: {context: base, dockerfile: Dockerfile.prod}\n"),
        "Dockerfile.prod does not exist",
        "buildpilot.yaml:4: images.a.dockerfile: ",
    ),
    Case(
        "context-escapes",
        config("  a: {context: ..}\n"),
        "outside the repository",
        "buildpilot.yaml:4: images.a.context: ",
    ),
    Case(
        "context-absolute",
        config("  a: {context: /tmp}\n"),
        "allow_paths_outside: true",
        "buildpilot.yaml:4: images.a.context: ",
    ),
    Case(
        "context-symlink-out",
        config("  a: {context: out}\n"),
        "outside the repository",
        "buildpilot.yaml:4: images.a.context: ",
        links={"out": "/tmp"},
    ),
    Case(
        "dockerfile-escapes",
        config("  a: {context: base, dockerfile: ../../Dockerfile}\n"),
        "outside the repository",
        "buildpilot.yaml:4: images.a.dockerfile: ",
        command=("plan",),
    ),
    Case(
        "secret-file-escapes",
        config("  a:\n    context: base\n    secrets: [{id: s, src: /etc/hostname}]\n"),
        "outside the repository",
        "buildpilot.yaml:6: images.a.secrets.0.src: ",
        command=("build", "--dry-run"),
    ),
    Case(
        "named-context-escapes",
        config("  a:\n    context: base\n    contexts: {lib: ../lib}\n"),
        "outside the repository",
        "buildpilot.yaml:6: images.a.contexts.lib: ",
    ),
    Case(
        "secret-file-missing",
        {
            **config("  a:\n    context: base\n    secrets: [{id: s, src: secret.txt}]\n"),
            ".gitignore": "secret.txt\n",
        },
        "secret file",
        "buildpilot.yaml: images.a.secrets.0: ",
        command=("build",),  # refused before the engine is asked anything
    ),
    Case(
        "secret-looking-arg",
        config("  a:\n    context: base\n    args: {API_TOKEN: abc}\n"),
        "pass it as a secret instead (secrets: [{id: api_token, env: API_TOKEN}]",
        "buildpilot.yaml:6: images.a.args.API_TOKEN: ",
    ),
    Case(
        "secret-looking-arg-lowercase",
        config("  a:\n    context: base\n    args: {db_password: abc}\n"),
        "allow_secret_args: true",
        "buildpilot.yaml:6: images.a.args.db_password: ",
        command=("build", "--dry-run"),
    ),
    # --- Dockerfiles ----------------------------------------------------------------------
    Case("dockerfile-empty", dockerfile(""), "no instructions", "buildpilot.yaml:4: images.a: "),
    Case(
        "dockerfile-no-from",
        dockerfile("RUN echo hi\n"),
        "Dockerfile:1: RUN before the first FROM",
        "buildpilot.yaml:4: images.a: ",
    ),
    Case(
        "dockerfile-unknown-instruction",
        dockerfile("FROM scratch\nFORM x\n"),
        "Dockerfile:2: unknown instruction: FORM (did you mean FROM?)",
        "buildpilot.yaml:4: images.a: ",
        command=("build", "--dry-run"),
    ),
    Case(
        "dockerfile-from-arguments",
        dockerfile("FROM scratch AS\n"),
        "Dockerfile:1: FROM requires either one or three arguments",
        "buildpilot.yaml:4: images.a: ",
    ),
    Case(
        "dockerfile-shell-not-json",
        dockerfile("FROM scratch\nSHELL sh -c\n"),
        "Dockerfile:2: SHELL requires the arguments in JSON form",
        "buildpilot.yaml:4: images.a: ",
        command=("plan",),
    ),
    Case(
        "dockerfile-heredoc",
        dockerfile("FROM scratch\nRUN <<EOF\necho\n"),
        "unterminated heredoc",
    ),
    Case(
        "dockerfile-variable",
        dockerfile("FROM scratch\nENV A=${B\n"),
        "Dockerfile:2: failed to process",
        "buildpilot.yaml:4: images.a: ",
    ),
    Case("dockerfile-not-utf8", dockerfile(b"\xff\xfeFROM"), "cannot read"),
    Case(
        "target-unknown",
        config("  a: {context: base, target: runtime}\n"),
        "target stage 'runtime' could not be found",
        "buildpilot.yaml:4: images.a.target: ",
    ),
    Case(
        "target-unknown-planned",
        dockerfile("FROM scratch AS build\nFROM scratch\n", extra="target: runtme"),
        "could not be found (stages: build)",
        "buildpilot.yaml:4: images.a.target: ",
        command=("plan",),
    ),
    Case(
        "target-unknown-dry-run",
        config("  a: {context: base, target: runtime}\n"),
        "could not be found",
        "images.a.target: ",
        command=("build", "--dry-run"),
    ),
    # --- command line ---------------------------------------------------------------------
    Case(
        "since-unknown-ref",
        config(A),
        "has no commit nosuchref",
        command=("plan", "--since", "nosuchref"),
    ),
    Case(
        "jobs-zero",
        config(A),
        "Invalid value for '--jobs'",
        command=("build", "--dry-run", "-j", "0"),
    ),
]


def _run(case: Case, root: Path) -> Done:
    root.mkdir(parents=True)
    write_tree(root, {"base/Dockerfile": GOOD_DOCKERFILE, "base/x": "x", **case.files})
    for link, target in case.links.items():
        (root / link).symlink_to(target)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "init")
    return buildpilot(root / "buildpilot.yaml", *case.command, timeout=60)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Done]:
    """Every case run once, four processes at a time."""
    base = tmp_path_factory.mktemp("bad-input")
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = pool.map(lambda c: _run(c, base / c.id / secrets.token_hex(2)), CASES)
        return {case.id: result for case, result in zip(CASES, done, strict=True)}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_exits_2_with_one_clear_message(case: Case, outcomes: dict[str, Done]) -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    done = outcomes[case.id]
    assert done.code == 2, done.output
    assert "Traceback" not in done.output, done.output
    assert "internal error" not in done.output, done.output
    # One message: one `error:` line, perhaps followed by a hint line; nothing on stdout
    # but the cache policy line of a build.
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert sum("error:" in line.lower() for line in lines) == 1, done.stderr
    assert len(lines) <= 3 if case.id == "jobs-zero" else len(lines) <= 2, done.stderr
    assert case.expected in done.stderr, done.stderr
    assert case.where in done.stderr, done.stderr
