"""`buildpilot doctor`: every rule on a failing and a passing Dockerfile, ignores, rendering."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from buildpilot import doctor
from buildpilot.cli import app
from buildpilot.config import Project, load_config
from buildpilot.doctor import Finding, Severity, check_image, run_doctor
from buildpilot.doctor_report import (
    OutputFormat,
    github_annotations,
    gitlab_code_quality,
    render_text,
    summary_line,
)
from buildpilot.errors import ConfigError, UnknownImageError
from tests.conftest import write_tree

REPO = Path(__file__).resolve().parents[1]
IGNORE = ".git\n**/__pycache__\n"
SLIM = "FROM python:3.12-slim\n"


def make_project(
    tmp_path: Path,
    dockerfile: str,
    files: Mapping[str, object] | None = None,
    image: Mapping[str, object] | None = None,
) -> Project:
    """A config with one image `app` (context `app/`), its Dockerfile and context files."""
    config = {
        "version": 1,
        "registry": "localhost:5000/demo",
        "images": {"app": {"context": "app", **(image or {})}},
    }
    tree: dict[str, object] = {"buildpilot.yaml": config, "app/Dockerfile": dockerfile}
    tree.update({f"app/{rel}": content for rel, content in (files or {}).items()})
    write_tree(tmp_path, tree)
    return load_config(tmp_path / "buildpilot.yaml")


def hits(
    tmp_path: Path,
    rule: str,
    dockerfile: str,
    files: Mapping[str, object] | None = None,
    image: Mapping[str, object] | None = None,
    *,
    release: bool = False,
) -> list[tuple[int, str]]:
    project = make_project(tmp_path, dockerfile, files, image)
    return [
        (f.line, f.severity.value)
        for f in check_image(project, "app", release=release)
        if f.rule == rule
    ]


WARN, ERR, INFO = "warning", "error", "info"
CACHE_PIP = "--mount=type=cache,target=/root/.cache/pip"
UV_BINDS = (
    "--mount=type=cache,target=/root/.cache/uv "
    "--mount=type=bind,source=uv.lock,target=uv.lock "
    "--mount=type=bind,source=pyproject.toml,target=pyproject.toml"
)
APT_CLEAN = "apt-get update && apt-get install -y --no-install-recommends curl"
CPU = "https://download.pytorch.org/whl/cpu"

# (rule, Dockerfile, context files, image config, expected (line, severity) of that rule)
CASES: list[Any] = [
    # BP001: an install after a broad COPY
    pytest.param(
        "BP001",
        SLIM + f"WORKDIR /app\nCOPY . .\nRUN {CACHE_PIP} pip install -r requirements.txt\n",
        {".dockerignore": IGNORE, "requirements.txt": "flask\n"},
        {},
        [(4, WARN)],
        id="BP001-pip-after-copy-all",
    ),
    pytest.param(
        "BP001",
        SLIM + f"WORKDIR /app\nCOPY requirements.txt .\nRUN {CACHE_PIP} pip install -r "
        f"requirements.txt\nCOPY . .\nRUN {CACHE_PIP} pip install --no-deps .\n",
        {".dockerignore": IGNORE, "requirements.txt": "flask\n"},
        {},
        [],
        id="BP001-requirements-first",
    ),
    pytest.param(
        "BP001",
        SLIM + f"WORKDIR /app\nRUN {UV_BINDS} uv sync --locked --no-install-project\n"
        "COPY . /app\nRUN --mount=type=cache,target=/root/.cache/uv uv sync --locked\n",
        {".dockerignore": IGNORE, "uv.lock": "", "pyproject.toml": ""},
        {},
        [],
        id="BP001-uv-documented-pattern",
    ),
    pytest.param(
        "BP001",
        "FROM node:22-slim\nWORKDIR /app\nCOPY . .\nRUN npm ci\n",
        {".dockerignore": IGNORE, "package.json": "{}"},
        {},
        [(4, WARN)],
        id="BP001-npm-after-copy-all",
    ),
    pytest.param(
        "BP001",
        "FROM node:22-slim\nWORKDIR /app\nCOPY package.json package-lock.json ./\n"
        "RUN npm ci\nCOPY . .\nRUN npm run build\n",
        {".dockerignore": IGNORE, "package.json": "{}", "package-lock.json": "{}"},
        {},
        [],
        id="BP001-npm-manifests-first",
    ),
    pytest.param(
        "BP001",
        SLIM + f"COPY . /app\nRUN {APT_CLEAN} && rm -rf /var/lib/apt/lists/*\n",
        {".dockerignore": IGNORE},
        {},
        [(3, WARN)],
        id="BP001-apt-after-copy-all",
    ),
    pytest.param(
        "BP001",
        "FROM python:3.12-slim AS src\nCOPY . /app\nFROM src\n"
        f"RUN {CACHE_PIP} pip install -r /app/requirements.txt\n",
        {".dockerignore": IGNORE, "requirements.txt": "flask\n"},
        {},
        [(4, WARN)],
        id="BP001-inherited-from-parent-stage",
    ),
    # BP002: a broad COPY and the ignore file
    pytest.param(
        "BP002",
        SLIM + "COPY . /app\n",
        {".git/HEAD": "ref: refs/heads/main\n", "node_modules/x/index.js": "", "main.py": ""},
        {},
        [(2, WARN)],
        id="BP002-no-ignore-file-volatile-present",
    ),
    pytest.param(
        "BP002",
        SLIM + "COPY . /app\n",
        {"main.py": ""},
        {},
        [(2, INFO)],
        id="BP002-no-ignore-file-nothing-volatile",
    ),
    pytest.param(
        "BP002",
        SLIM + "COPY . /app\n",
        {
            ".dockerignore": ".git\n",
            "pkg/__pycache__/m.cpython-312.pyc": "",
            "data/big.bin": "",
            "logs/app.txt": "",
            "pkg/data/schema.json": "",
        },
        {},
        [(2, WARN)],
        id="BP002-ignore-file-misses-folders",
    ),
    pytest.param(
        "BP002",
        SLIM + "COPY . /app\n",
        {
            ".dockerignore": ".git\n**/__pycache__\n/data\n**/*.log\n.venv\n",
            ".git/HEAD": "",
            "pkg/__pycache__/m.pyc": "",
            "data/big.bin": "",
            "run.log": "",
            ".venv/bin/python": "",
        },
        {},
        [],
        id="BP002-ignore-file-covers-folders",
    ),
    pytest.param(
        "BP002",
        SLIM + "COPY . /app\n",
        {"Dockerfile.dockerignore": "node_modules\n", "node_modules/x/index.js": ""},
        {},
        [],
        id="BP002-dockerfile-specific-ignore-file",
    ),
    pytest.param(
        "BP002",
        SLIM + "COPY main.py /app/\n",
        {".git/HEAD": "", "main.py": ""},
        {},
        [],
        id="BP002-narrow-copy",
    ),
    # BP003: caches left in the layer
    pytest.param("BP003", SLIM + "RUN pip install flask\n", {}, {}, [(2, WARN)], id="BP003-pip"),
    pytest.param(
        "BP003",
        SLIM + "RUN pip install --no-cache-dir flask\n",
        {},
        {},
        [],
        id="BP003-pip-no-cache-dir",
    ),
    pytest.param(
        "BP003",
        SLIM + f"RUN {CACHE_PIP} python3 -m pip install flask\n",
        {},
        {},
        [],
        id="BP003-pip-cache-mount",
    ),
    pytest.param(
        "BP003",
        SLIM + "USER app\nRUN --mount=type=cache,target=/home/app/.cache,uid=1000 "
        "pip install --user flask\n",
        {},
        {},
        [],
        id="BP003-pip-cache-mount-other-home",
    ),
    pytest.param(
        "BP003",
        SLIM + "ENV PIP_NO_CACHE_DIR=1\nRUN pip install flask\n",
        {},
        {},
        [],
        id="BP003-pip-no-cache-env",
    ),
    pytest.param(
        "BP003",
        SLIM + f"RUN {APT_CLEAN}\n",
        {},
        {},
        [(2, WARN)],
        id="BP003-apt-lists-kept",
    ),
    pytest.param(
        "BP003",
        SLIM + f"RUN {APT_CLEAN} \\\n && rm -rf /var/lib/apt/lists/*\n",
        {},
        {},
        [],
        id="BP003-apt-lists-removed",
    ),
    pytest.param(
        "BP003",
        SLIM + "RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\\n"
        "    --mount=type=cache,target=/var/lib/apt,sharing=locked \\\n"
        f"    {APT_CLEAN}\n",
        {},
        {},
        [],
        id="BP003-apt-cache-mounts",
    ),
    pytest.param("BP003", "FROM node:22\nRUN npm ci\n", {}, {}, [(2, WARN)], id="BP003-npm"),
    pytest.param(
        "BP003",
        "FROM node:22\nRUN npm ci && npm cache clean --force\n",
        {},
        {},
        [],
        id="BP003-npm-cache-clean",
    ),
    pytest.param(
        "BP003", "FROM alpine:3.20\nRUN apk add curl\n", {}, {}, [(2, WARN)], id="BP003-apk"
    ),
    pytest.param(
        "BP003",
        "FROM alpine:3.20\nRUN apk add --no-cache curl\n",
        {},
        {},
        [],
        id="BP003-apk-no-cache",
    ),
    pytest.param(
        "BP003",
        SLIM + "RUN uv pip install --system flask\n",
        {},
        {},
        [(2, WARN)],
        id="BP003-uv",
    ),
    pytest.param(
        "BP003",
        SLIM + "ENV UV_NO_CACHE=1\nRUN uv pip install --system flask\n",
        {},
        {},
        [],
        id="BP003-uv-no-cache-env",
    ),
    # BP004: removed in a later layer
    pytest.param(
        "BP004",
        SLIM + "COPY app.tar.gz /tmp/\nRUN tar -xzf /tmp/app.tar.gz -C /opt\n"
        "RUN rm /tmp/app.tar.gz\n",
        {"app.tar.gz": b"\x1f\x8b"},
        {},
        [(4, WARN)],
        id="BP004-copied-file-removed-later",
    ),
    pytest.param(
        "BP004",
        SLIM + "RUN apt-get update && apt-get install -y curl\nRUN rm -rf /var/lib/apt/lists/*\n",
        {},
        {},
        [(3, WARN)],
        id="BP004-apt-lists-removed-later",
    ),
    pytest.param(
        "BP004",
        SLIM + "WORKDIR /app\nCOPY . .\nRUN rm -rf tests\n",
        {".dockerignore": IGNORE, "tests/test_x.py": "", "main.py": ""},
        {},
        [(4, WARN)],
        id="BP004-copied-folder-removed-later",
    ),
    pytest.param(
        "BP004",
        SLIM + "RUN curl -fsSLo /tmp/x.deb https://example.com/x.deb\nRUN rm /tmp/x.deb\n",
        {},
        {},
        [(3, WARN)],
        id="BP004-download-removed-later",
    ),
    pytest.param(
        "BP004",
        SLIM + "RUN curl -fsSLo /tmp/x.deb https://example.com/x.deb \\\n"
        " && dpkg -i /tmp/x.deb && rm /tmp/x.deb\n",
        {},
        {},
        [],
        id="BP004-removed-in-same-run",
    ),
    pytest.param(
        "BP004",
        SLIM + "WORKDIR /app\nCOPY . .\nRUN make build && rm -rf build/tmp\n",
        {".dockerignore": IGNORE, "Makefile": ""},
        {},
        [],
        id="BP004-removes-what-the-same-run-made",
    ),
    pytest.param(
        "BP004",
        "FROM python:3.12-slim AS build\nCOPY . /src\nRUN rm -rf /src/tests\n"
        "FROM python:3.12-slim\nCOPY --from=build /src /app\n",
        {".dockerignore": IGNORE, "tests/t.py": ""},
        {},
        [],
        id="BP004-builder-stage-does-not-ship",
    ),
    pytest.param(
        "BP004",
        "FROM python:3.12-slim AS base\nCOPY big.bin /opt/big.bin\nFROM base\nRUN rm /opt/big.bin\n",
        {"big.bin": b"\0"},
        {},
        [(4, WARN)],
        id="BP004-removed-in-child-stage",
    ),
    pytest.param(
        "BP004",
        SLIM + "RUN rm -f /etc/apt/apt.conf.d/docker-clean\n",
        {},
        {},
        [],
        id="BP004-base-image-file",
    ),
    # BP005: apt-get update alone
    pytest.param(
        "BP005",
        SLIM + "RUN apt-get update\nRUN apt-get install -y curl\n",
        {},
        {},
        [(2, WARN)],
        id="BP005-update-alone",
    ),
    pytest.param("BP005", SLIM + f"RUN {APT_CLEAN}\n", {}, {}, [], id="BP005-update-with-install"),
    # BP006: base images
    pytest.param("BP006", "FROM python\n", {}, {}, [(1, ERR)], id="BP006-no-tag"),
    pytest.param("BP006", "FROM python:latest\n", {}, {}, [(1, ERR)], id="BP006-latest"),
    pytest.param(
        "BP006",
        "ARG BASE=python\nFROM ${BASE}\n",
        {},
        {},
        [(2, ERR)],
        id="BP006-no-tag-through-arg",
    ),
    pytest.param(
        "BP006",
        SLIM + "COPY --from=ghcr.io/astral-sh/uv:latest /uv /bin/uv\n",
        {},
        {},
        [(2, ERR)],
        id="BP006-copy-from-latest-image",
    ),
    pytest.param("BP006", SLIM, {}, {}, [], id="BP006-tag"),
    pytest.param("BP006", "FROM scratch\n", {}, {}, [], id="BP006-scratch"),
    pytest.param(
        "BP006",
        "FROM base\n",
        {},
        {"contexts": {"base": "docker-image://python:3.12"}},
        [],
        id="BP006-named-context",
    ),
    pytest.param(
        "BP006",
        "FROM python:3.12-slim AS build\nFROM build\n",
        {},
        {},
        [],
        id="BP006-stage",
    ),
    # BP007: CUDA in a CPU-only image
    pytest.param(
        "BP007",
        SLIM
        + "COPY requirements.txt /tmp/\nRUN pip install --no-cache-dir -r /tmp/requirements.txt\n",
        {"requirements.txt": "numpy\nnvidia-cublas-cu12==12.1.3.1\n"},
        {"gpu": False},
        [(2, ERR)],
        id="BP007-nvidia-in-requirements",
    ),
    pytest.param(
        "BP007",
        SLIM
        + "COPY requirements.txt /tmp/\nRUN pip install --no-cache-dir -r /tmp/requirements.txt\n",
        {"requirements.txt": "torch==2.3.1\n"},
        {"gpu": False},
        [(2, ERR)],
        id="BP007-torch-in-requirements-without-cpu-index",
    ),
    pytest.param(
        "BP007",
        SLIM + "RUN pip install --no-cache-dir torch torchvision\n",
        {},
        {"gpu": False},
        [(2, ERR)],
        id="BP007-torch-from-pypi",
    ),
    pytest.param(
        "BP007",
        SLIM + f"RUN pip install --no-cache-dir torch --index-url {CPU}\n",
        {},
        {"gpu": False},
        [],
        id="BP007-torch-cpu-index",
    ),
    pytest.param(
        "BP007",
        SLIM + "RUN uv pip install --system --no-cache torch --torch-backend=cpu\n",
        {},
        {"gpu": False},
        [],
        id="BP007-uv-torch-backend-cpu",
    ),
    pytest.param(
        "BP007",
        SLIM
        + "COPY requirements.txt /tmp/\nRUN pip install --no-cache-dir -r /tmp/requirements.txt\n",
        {"requirements.txt": f"--extra-index-url {CPU}\ntorch==2.3.1\ntorchmetrics\n"},
        {"gpu": False},
        [],
        id="BP007-requirements-with-cpu-index",
    ),
    pytest.param(
        "BP007",
        SLIM
        + "COPY requirements.txt /tmp/\nRUN pip install --no-cache-dir -r /tmp/requirements.txt\n",
        {"requirements.txt": "torch==2.3.1+cpu\n"},
        {"gpu": False},
        [],
        id="BP007-cpu-local-version",
    ),
    pytest.param(
        "BP007",
        SLIM + "RUN pip install --no-cache-dir torch\n",
        {},
        {"gpu": True},
        [],
        id="BP007-gpu-image",
    ),
    pytest.param(
        "BP007",
        SLIM + "RUN pip install --no-cache-dir torch\n",
        {},
        {},
        [],
        id="BP007-gpu-unset",
    ),
    # BP008: build tools in the final stage
    pytest.param(
        "BP008",
        SLIM + "RUN apt-get update && apt-get install -y --no-install-recommends \\\n"
        "    build-essential libpq-dev && rm -rf /var/lib/apt/lists/*\n",
        {},
        {},
        [(2, WARN)],
        id="BP008-apt-in-final",
    ),
    pytest.param(
        "BP008",
        "FROM alpine:3.20\nRUN apk add --no-cache gcc musl-dev\n",
        {},
        {},
        [(2, WARN)],
        id="BP008-apk-in-final",
    ),
    pytest.param(
        "BP008",
        "FROM python:3.12-slim AS builder\n"
        "RUN apt-get update && apt-get install -y gcc && rm -rf /var/lib/apt/lists/*\n"
        "FROM python:3.12-slim\nCOPY --from=builder /usr/local /usr/local\n",
        {},
        {},
        [],
        id="BP008-builder-stage",
    ),
    pytest.param(
        "BP008",
        "FROM python:3.12-slim AS builder\n"
        "RUN apt-get update && apt-get install -y gcc && rm -rf /var/lib/apt/lists/*\n"
        "FROM python:3.12-slim AS runtime\n",
        {},
        {"target": "builder"},
        [(2, WARN)],
        id="BP008-target-is-the-builder",
    ),
    pytest.param(
        "BP008",
        SLIM + "RUN apt-get update && apt-get install -y gcc \\\n"
        " && pip install --no-cache-dir psutil \\\n"
        " && apt-get purge -y --auto-remove gcc && rm -rf /var/lib/apt/lists/*\n",
        {},
        {},
        [],
        id="BP008-purged-in-same-run",
    ),
    pytest.param(
        "BP008",
        "FROM alpine:3.20\nRUN apk add --no-cache --virtual .build-deps gcc musl-dev \\\n"
        " && pip install --no-cache-dir psutil && apk del .build-deps\n",
        {},
        {},
        [],
        id="BP008-apk-virtual-deleted",
    ),
    # BP009: syntax directive
    pytest.param(
        "BP009", "# syntax=docker/dockerfile:1\n" + SLIM, {}, {}, [(1, WARN)], id="BP009-syntax"
    ),
    pytest.param(
        "BP009",
        "# syntax=docker/dockerfile:1.7@sha256:" + "a" * 64 + "\n" + SLIM,
        {},
        {},
        [(1, INFO)],
        id="BP009-syntax-pinned",
    ),
    pytest.param("BP009", "# a comment\n" + SLIM, {}, {}, [], id="BP009-no-syntax"),
]


@pytest.mark.parametrize(("rule", "dockerfile", "files", "image", "expected"), CASES)
def test_rule(
    tmp_path: Path,
    *,
    rule: str,
    dockerfile: str,
    files: Mapping[str, object],
    image: Mapping[str, object],
    expected: list[tuple[int, str]],
) -> None:
    assert hits(tmp_path, rule, dockerfile, files, image) == expected


def test_every_rule_has_a_failing_and_a_passing_case() -> None:
    failing = {case.values[0] for case in CASES if case.values[4]}
    passing = {case.values[0] for case in CASES if not case.values[4]}
    assert failing == passing == doctor.RULE_IDS


def test_release_wants_digests(tmp_path: Path) -> None:
    assert hits(tmp_path, "BP006", SLIM, release=True) == [(1, WARN)]
    pinned = "FROM python:3.12-slim@sha256:" + "b" * 64 + "\n"
    assert hits(tmp_path, "BP006", pinned, release=True) == []


def test_findings_carry_why_and_fix(tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        SLIM + "COPY . /app\n",
        {".dockerignore": ".git\n", "pkg/__pycache__/m.pyc": "", "data/x": "", "a.log": ""},
    )
    (finding,) = check_image(project, "app")
    assert finding.rule == "BP002"
    assert finding.file == "app/Dockerfile"
    assert finding.message == (
        "`COPY . /app` sends and copies `a.log`, `data`, `pkg/__pycache__` from context "
        "`app`: app/.dockerignore does not leave them out"
    )
    assert finding.fix == "Add to app/.dockerignore: **/*.log, **/__pycache__, data"
    assert "hashed on every build" in finding.why


def test_bp002_fix_makes_it_pass(tmp_path: Path) -> None:
    files = {".dockerignore": ".git\n", "pkg/__pycache__/m.pyc": "", "data/x": "", "a.log": ""}
    project = make_project(tmp_path, SLIM + "COPY . /app\n", files)
    (finding,) = check_image(project, "app")
    patterns = finding.fix.split(": ", 1)[1].split(", ")
    (tmp_path / "app/.dockerignore").write_text(".git\n" + "\n".join(patterns) + "\n")
    assert check_image(load_config(tmp_path / "buildpilot.yaml"), "app") == []


def test_bp002_named_context_reads_its_own_ignore_file(tmp_path: Path) -> None:
    write_tree(tmp_path, {"libs/node_modules/x.js": "", "libs/lib.py": ""})
    project = make_project(
        tmp_path,
        SLIM + "COPY --from=libs . /libs\n",
        {".dockerignore": "node_modules\n"},  # the build context's: not the named context's
        {"contexts": {"libs": "libs"}},
    )
    (finding,) = check_image(project, "app")
    assert (finding.rule, finding.line, finding.severity) == ("BP002", 2, Severity.WARNING)
    assert finding.message == (
        "`COPY --from=libs . /libs` sends and copies all of context `libs`, which has no "
        ".dockerignore; it holds `node_modules`"
    )
    assert finding.fix == "Add to libs/.dockerignore: **/node_modules"


# --- turning rules off -----------------------------------------------------------------------

NOISY = SLIM + "RUN pip install flask\n"


def rules_of(findings: list[Finding]) -> list[str]:
    return [f.rule for f in findings]


def test_config_disable(tmp_path: Path) -> None:
    project = make_project(tmp_path, NOISY, image={"doctor": {"disable": ["BP003"]}})
    assert rules_of(check_image(project, "app")) == []


def test_config_disable_unknown_rule_is_a_config_error(tmp_path: Path) -> None:
    project = make_project(tmp_path, NOISY, image={"doctor": {"disable": ["BP999"]}})
    with pytest.raises(ConfigError, match=r"doctor.disable: unknown rule BP999; known: BP001"):
        check_image(project, "app")


def test_config_disable_takes_rule_ids_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"images.app.doctor.disable.0: String should match"):
        make_project(tmp_path, NOISY, image={"doctor": {"disable": ["pip-cache"]}})


@pytest.mark.parametrize(
    "dockerfile",
    [
        SLIM + "# buildpilot: ignore BP003\nRUN pip install flask\n",
        SLIM + "# the dev tools\n# buildpilot: ignore BP001, BP003\nRUN pip install flask\n",
        SLIM + "RUN pip install flask  # buildpilot: ignore BP003\n",
        SLIM + "RUN pip install \\\n  # buildpilot: ignore BP003\n  flask\n",
        SLIM + "# buildpilot: ignore\nRUN pip install flask\n",
    ],
    ids=["line-before", "comment-block", "same-line", "inside-continuation", "bare-ignore"],
)
def test_inline_ignore(tmp_path: Path, dockerfile: str) -> None:
    project = make_project(tmp_path, dockerfile)
    report = run_doctor(project)
    assert rules_of(report.findings()) == []
    assert report.images[0].suppressed == 1


@pytest.mark.parametrize(
    "dockerfile",
    [
        SLIM + "# buildpilot: ignore BP001\nRUN pip install flask\n",
        SLIM + "# buildpilot: ignore BP003\n\nRUN pip install flask\n",
        SLIM + "RUN pip install flask\n# buildpilot: ignore BP003\n",
    ],
    ids=["other-rule", "blank-line-between", "after-the-instruction"],
)
def test_inline_ignore_does_not_reach(tmp_path: Path, dockerfile: str) -> None:
    assert rules_of(check_image(make_project(tmp_path, dockerfile), "app")) == ["BP003"]


def test_inline_ignore_of_a_directive_follows_it(tmp_path: Path) -> None:
    dockerfile = "# syntax=docker/dockerfile:1\n# buildpilot: ignore BP009\n" + SLIM
    assert rules_of(check_image(make_project(tmp_path, dockerfile), "app")) == []


# --- reading RUN commands ---------------------------------------------------------------------


def test_shell_words_and_writes() -> None:
    commands = doctor._simple_commands(
        "set -eux; if [ -s /x ]; then export A=1; fi && sudo PIP_X=1 python3 -m pip install "
        "'git+https://e/x.git#egg=x' 2>/dev/null > /tmp/log # trailing comment\n"
        'echo "# not a comment" | tee /etc/x'
    )
    tools = [doctor._tool(words, writes) for words, writes in commands]
    pip = next(t for t in tools if t is not None and t.name == "pip")
    assert (pip.sub, pip.args, pip.writes) == (
        "install",
        ("git+https://e/x.git#egg=x",),
        ("/tmp/log",),
    )
    assert [t.name for t in tools if t is not None][-2:] == ["echo", "tee"]


def test_subcommands_after_options() -> None:
    tool = doctor._tool(("apt-get", "-o", "Acquire::Retries=3", "-y", "install", "gcc"), ())
    assert tool is not None
    assert (tool.name, tool.sub, tool.positionals()) == ("apt-get", "install", ["gcc"])
    uv = doctor._tool(("uv", "--no-cache", "pip", "install", "-r", "r.txt", "x"), ())
    assert uv is not None
    assert (uv.sub, uv.positionals(), uv.has("--no-cache")) == ("pip install", ["x"], True)
    mkdir = doctor._tool(("mkdir", "-p", "/out"), ())
    assert mkdir is not None
    assert mkdir.positionals() == ["/out"]


def test_exec_form_and_heredoc_runs(tmp_path: Path) -> None:
    dockerfile = (
        SLIM + 'RUN ["pip", "install", "flask"]\n'
        'RUN ["/bin/sh", "-c", "pip install flask"]\n'
        "RUN <<EOF\nset -e\npip install flask\nEOF\n"
        "RUN python3 <<EOF\nprint('pip install flask')\nEOF\n"
    )
    assert hits(tmp_path, "BP003", dockerfile) == [(2, WARN), (3, WARN), (4, WARN)]


# --- the report and the CLI -------------------------------------------------------------------


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_bundled_example_is_clean() -> None:
    code, output = run_cli("doctor", "-c", str(REPO / "buildpilot.yaml"))
    assert (code, output.strip()) == (0, "4 images checked: no findings.")


def test_bundled_example_has_no_findings_per_image() -> None:
    project = load_config(REPO / "buildpilot.yaml")
    assert {name: check_image(project, name) for name in project.config.images} == {
        name: [] for name in project.config.images
    }


@pytest.fixture
def noisy(tmp_path: Path) -> Path:
    make_project(
        tmp_path,
        "# syntax=docker/dockerfile:1\n" + SLIM + "RUN pip install flask\n",
        image={"doctor": {"severity": "error"}},
    )
    return tmp_path / "buildpilot.yaml"


def test_cli_table_and_exit_codes(noisy: Path) -> None:
    code, output = run_cli("doctor", "-c", str(noisy))
    assert code == 0  # two warnings, and the image fails only at error
    assert "BP003" in output
    assert "BP009" in output
    assert output.rstrip().endswith(
        "1 image checked: 2 findings (2 warnings); none at the threshold."
    )
    assert run_cli("doctor", "-c", str(noisy), "--severity", "warning")[0] == 1
    assert run_cli("doctor", "-c", str(noisy), "--severity", "error")[0] == 0


def test_cli_json(noisy: Path) -> None:
    code, output = run_cli("doctor", "-c", str(noisy), "--json", "--severity", "info")
    data = json.loads(output)
    assert code == 1
    assert data["summary"] == {"findings": 2, "error": 0, "warning": 2, "info": 0, "failing": 2}
    first = data["images"][0]["findings"][0]
    assert {k: first[k] for k in ("file", "line", "end_line", "rule", "severity")} == {
        "file": "app/Dockerfile",
        "line": 1,
        "end_line": 1,
        "rule": "BP009",
        "severity": "warning",
    }
    assert data["images"][0]["threshold"] == "info"


def test_cli_github_annotations(noisy: Path) -> None:
    code, output = run_cli("doctor", "-c", str(noisy), "--format", "github")
    lines = output.splitlines()
    assert code == 0
    assert len(lines) == 2
    assert lines[0].startswith(
        "::warning file=app/Dockerfile,line=1,endLine=1,"
        "title=BP009 syntax directive fetches a frontend (app)::"
    )
    assert "%0AFix%3A" not in lines[0]  # data is escaped, but not like a property
    assert "%0AFix: Remove the line" in lines[0]


def test_cli_gitlab_code_quality(noisy: Path) -> None:
    code, output = run_cli("doctor", "-c", str(noisy), "--format", "gitlab")
    issues = json.loads(output)
    assert code == 0
    assert [(i["check_name"], i["severity"], i["location"]) for i in issues] == [
        ("BP009", "major", {"path": "app/Dockerfile", "lines": {"begin": 1, "end": 1}}),
        ("BP003", "major", {"path": "app/Dockerfile", "lines": {"begin": 3, "end": 3}}),
    ]
    assert len({i["fingerprint"] for i in issues}) == 2


def test_cli_unknown_image_exits_2(noisy: Path) -> None:
    code, output = run_cli("doctor", "-c", str(noisy), "nope")
    assert code == 2
    assert "unknown image 'nope'" in output


def test_unknown_image_error(tmp_path: Path) -> None:
    with pytest.raises(UnknownImageError):
        run_doctor(make_project(tmp_path, SLIM), ["api"])


def test_github_escaping() -> None:
    finding = Finding(
        image="a,b",
        file="x/Dockerfile",
        line=3,
        end_line=4,
        rule="BP001",
        severity=Severity.ERROR,
        title="t: 1",
        message="100% of\nit",
        why="w",
        fix="f",
    )
    report = doctor.DoctorReport(
        images=(doctor.ImageReport("a,b", "x/Dockerfile", Severity.WARNING, (finding,)),)
    )
    assert github_annotations(report) == (
        "::error file=x/Dockerfile,line=3,endLine=4,title=BP001 t%3A 1 (a%2Cb)"
        "::100%25 of%0Ait%0Aw%0AFix: f"
    )
    assert json.loads(gitlab_code_quality(report))[0]["severity"] == "critical"
    assert render_text(report, OutputFormat.JSON).startswith("{")
    assert summary_line(report) == (
        "1 image checked: 1 finding (1 error); 1 at or above the threshold."
    )
    assert doctor.exit_code(report) == 1
