"""Mirrors and the CA bundle reach only the builds whose Dockerfile asks for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from buildpilot.config import load_config
from buildpilot.errors import ConfigError
from buildpilot.fingerprint import FileIndex
from buildpilot.fingerprint_inputs import fingerprints
from buildpilot.mirrors import mirror_inputs
from buildpilot.plan import make_plan
from buildpilot.request import BuildOptions
from tests.conftest import write_tree

MIRRORS = {
    "pip_index_url": "https://pypi.internal/simple",
    "pip_extra_index_url": "https://extra.internal/simple",
    "apt_mirror": "http://deb.internal/debian",
    "npm_registry": "https://npm.internal/",
    "ca_bundle": "certs/ca.pem",
}
DOCKERFILES = {
    # a stage ARG, a global ARG, a CA bundle mount
    "pip": (
        "ARG APT_MIRROR\n"
        "FROM scratch\n"
        "ARG PIP_INDEX_URL\n"
        "RUN --mount=type=secret,id=ca_bundle pip install x\n"
    ),
    # asks for nothing
    "plain": "FROM scratch\nARG OTHER=1\nRUN --mount=type=secret,id=token true\n",
    # declares the ARGs only in a stage its target does not build
    "unused": (
        "FROM scratch AS docs\n"
        "ARG NPM_CONFIG_REGISTRY\n"
        "RUN --mount=type=secret,id=ca_bundle true\n"
        "FROM scratch AS app\n"
        "RUN true\n"
    ),
    # several ARGs on one line; a secret mount without an id takes the target's name
    "npm": (
        "FROM scratch\n"
        "ARG NPM_CONFIG_REGISTRY PIP_EXTRA_INDEX_URL=https://pypi.org/simple\n"
        "RUN --mount=type=secret,target=/run/secrets/ca_bundle npm ci\n"
    ),
}


def _project(tmp_path: Path, mirrors: dict[str, Any] | None, **images: dict[str, Any]) -> Path:
    files: dict[str, object] = {f"{name}/Dockerfile": text for name, text in DOCKERFILES.items()}
    files["certs/ca.pem"] = "-----BEGIN CERTIFICATE-----\n"
    config: dict[str, Any] = {"version": 1, "registry": "localhost:5000/m"}
    if mirrors is not None:
        config["mirrors"] = mirrors
    config["images"] = {name: {"context": name, **images.get(name, {})} for name in DOCKERFILES}
    files["buildpilot.yaml"] = config
    write_tree(tmp_path, files)
    return tmp_path / "buildpilot.yaml"


def test_only_images_that_declare_the_arg_get_the_mirror(tmp_path: Path) -> None:
    project = load_config(_project(tmp_path, MIRRORS, unused={"target": "app"}))
    plan = make_plan(project, [], BuildOptions())
    ca = (tmp_path / "certs/ca.pem").resolve()
    pip = plan.requests["pip"]
    assert dict(pip.args) == {
        "PIP_INDEX_URL": "https://pypi.internal/simple",
        "APT_MIRROR": "http://deb.internal/debian",
    }
    assert pip.secrets == (f"id=ca_bundle,src={ca}",)
    assert dict(plan.requests["plain"].args) == {}
    assert plan.requests["plain"].secrets == ()
    assert dict(plan.requests["unused"].args) == {}
    assert plan.requests["unused"].secrets == ()
    npm = plan.requests["npm"]
    assert dict(npm.args) == {
        "NPM_CONFIG_REGISTRY": "https://npm.internal/",
        "PIP_EXTRA_INDEX_URL": "https://extra.internal/simple",
    }
    assert npm.secrets == (f"id=ca_bundle,src={ca}",)
    argv = plan.requests["pip"].argv({})
    assert "PIP_INDEX_URL=https://pypi.internal/simple" in argv
    assert not any("internal" in word for word in plan.requests["plain"].argv({}))


def test_the_image_s_own_args_and_secret_win(tmp_path: Path) -> None:
    own = {
        "args": {"PIP_INDEX_URL": "https://mine/simple"},
        "secrets": [{"id": "ca_bundle", "env": "MY_CA"}],
    }
    project = load_config(_project(tmp_path, MIRRORS, pip=own))
    request = make_plan(project, ["pip"], BuildOptions()).requests["pip"]
    assert request.args["PIP_INDEX_URL"] == "https://mine/simple"
    assert request.secrets == ("id=ca_bundle,env=MY_CA",)


def test_no_mirrors_leaves_every_request_alone(tmp_path: Path) -> None:
    project = load_config(_project(tmp_path, None))
    assert mirror_inputs(project, "pip").args == {}
    plan = make_plan(project, [], BuildOptions())
    assert all(not r.args and not r.secrets for r in plan.requests.values())


def test_a_missing_ca_bundle_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mirrors\.ca_bundle: file .*nope\.pem does not exist"):
        load_config(_project(tmp_path, {"ca_bundle": "nope.pem"}))
    with pytest.raises(ConfigError, match="did you mean 'pip_index_url'"):
        load_config(_project(tmp_path, {"pip_index": "x"}))


def test_fingerprints_change_only_for_the_images_that_get_the_mirror(tmp_path: Path) -> None:
    before = load_config(_project(tmp_path, {**MIRRORS, "pip_index_url": "https://a/simple"}))
    after = load_config(_project(tmp_path, {**MIRRORS, "pip_index_url": "https://b/simple"}))
    names = list(DOCKERFILES)
    old = fingerprints(before, names, FileIndex.scan(tmp_path))
    new = fingerprints(after, names, FileIndex.scan(tmp_path))
    assert old["pip"] != new["pip"]
    assert {name for name in names if old[name] != new[name]} == {"pip"}
    none = load_config(_project(tmp_path, None))
    bare = fingerprints(none, names, FileIndex.scan(tmp_path))
    assert bare["plain"] == new["plain"]  # nothing asked, nothing changed
    assert bare["npm"] != new["npm"]
