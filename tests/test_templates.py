"""CI templates: valid YAML with the steps a build needs, scripts that pick the right --since,
and the generated files of the bundled example in sync with the code."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from buildpilot import templates
from buildpilot.cli import app
from buildpilot.config import Project, load_config, parse_config
from tests.conftest import MakeRepo

ROOT = Path(__file__).resolve().parent.parent
ZERO = "0" * 40


def project(registry: str, where: Path = Path("/repo")) -> Project:
    path = where / "buildpilot.yaml"
    text = yaml.safe_dump({"version": 1, "registry": registry, "images": {"api": {}}})
    return Project(path=path, config=parse_config(text, path))


def github(registry: str = "registry.example.com/speech", **kwargs: Any) -> dict[str, Any]:
    data = yaml.safe_load(templates.github_workflow(project(registry), **kwargs))
    assert isinstance(data, dict)
    return data


def gitlab(registry: str = "registry.example.com/speech", **kwargs: Any) -> dict[str, Any]:
    data = yaml.safe_load(templates.gitlab_job(project(registry), **kwargs))
    assert isinstance(data, dict)
    job = data["buildpilot"]
    assert isinstance(job, dict)
    return job


def steps_by_action(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    steps = workflow["jobs"]["build"]["steps"]
    return {step.get("uses", step["name"]).split("@")[0]: step for step in steps}


# --- GitHub ------------------------------------------------------------------------------------


def test_github_workflow_steps() -> None:
    workflow = github(python="3.12")
    assert set(workflow[True]) == {"push", "pull_request"}  # YAML 1.1 reads `on` as true
    assert workflow["permissions"] == {"contents": "read"}
    steps = steps_by_action(workflow)
    assert list(steps) == [
        "actions/checkout",
        "actions/setup-python",
        "Install buildpilot",
        "docker/setup-buildx-action",
        "docker/login-action",
        "actions/cache",
        "Build what changed",
        "actions/upload-artifact",
    ]
    assert steps["actions/checkout"]["with"] == {"fetch-depth": 0}
    assert steps["actions/setup-python"]["with"] == {"python-version": "3.12"}
    assert steps["Install buildpilot"]["run"] == "pip install buildpilot"
    assert steps["docker/login-action"]["with"] == {
        "registry": "registry.example.com",
        "username": "${{ secrets.REGISTRY_USERNAME }}",
        "password": "${{ secrets.REGISTRY_PASSWORD }}",
    }
    cache = steps["actions/cache"]["with"]
    assert cache["path"] == ".buildpilot/cache-mounts"
    assert cache["key"] == "buildpilot-cache-mounts-${{ runner.os }}-${{ github.sha }}"
    build = steps["Build what changed"]
    assert build["env"]["PR_BASE"] == "${{ github.base_ref }}"
    assert build["env"]["BEFORE"] == "${{ github.event.before }}"
    assert 'buildpilot build --since "$since" --push' in build["run"]
    upload = steps["actions/upload-artifact"]
    assert upload["if"] == "always()"
    assert upload["with"]["path"].split() == [".buildpilot/", "!.buildpilot/cache-mounts/"]
    assert upload["with"]["include-hidden-files"] is True


def test_github_registry_logins() -> None:
    ghcr = github("ghcr.io/acme/speech")
    assert ghcr["permissions"] == {"contents": "read", "packages": "write"}
    assert steps_by_action(ghcr)["docker/login-action"]["with"] == {
        "registry": "ghcr.io",
        "username": "${{ github.actor }}",
        "password": "${{ secrets.GITHUB_TOKEN }}",
    }
    hub = steps_by_action(github("acme"))["docker/login-action"]["with"]
    assert "registry" not in hub  # Docker Hub is login-action's default
    assert "docker/login-action" not in steps_by_action(github("localhost:5000/speech"))


def test_github_install_from_the_repository() -> None:
    assert steps_by_action(github(package="."))["Install buildpilot"]["run"] == "pip install ."
    weird = steps_by_action(github(package="buildpilot[x]>=1"))
    assert weird["Install buildpilot"]["run"] == "pip install 'buildpilot[x]>=1'"


def fake_tools(tmp_path: Path) -> Path:
    """A PATH directory where `buildpilot` and `git` print what they were asked to do."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("buildpilot", "git"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*"\n', encoding="utf-8")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def run_script(script: str, env: dict[str, str], tmp_path: Path) -> list[str]:
    path = f"{fake_tools(tmp_path)}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(
        ["sh", "-eu", "-c", script],
        env={"PATH": path, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


GITHUB_EVENTS = {
    "pull request": (
        {"PR_BASE": "main", "BEFORE": "", "REF_TYPE": "branch"},
        "buildpilot build --since origin/main --push",
    ),
    "push": (
        {"PR_BASE": "", "BEFORE": "1" * 40, "REF_TYPE": "branch"},
        f"buildpilot build --since {'1' * 40} --push",
    ),
    "new branch": (
        {"PR_BASE": "", "BEFORE": ZERO, "REF_TYPE": "branch"},
        "buildpilot build --since origin/trunk --push",
    ),
    "tag": ({"PR_BASE": "", "BEFORE": ZERO, "REF_TYPE": "tag"}, "buildpilot build --push"),
}


@pytest.mark.parametrize("event", list(GITHUB_EVENTS))
def test_github_script_picks_since(event: str, tmp_path: Path) -> None:
    env, expected = GITHUB_EVENTS[event]
    script = steps_by_action(github())["Build what changed"]["run"]
    assert run_script(script, {**env, "DEFAULT_BRANCH": "trunk"}, tmp_path) == [expected]


# --- GitLab ------------------------------------------------------------------------------------


def test_gitlab_job() -> None:
    job = gitlab()
    assert job["image"] == "python:3.11-trixie"
    assert job["services"] == [{"name": "docker:27-dind", "alias": "docker"}]
    assert job["variables"]["GIT_DEPTH"] == "0"
    assert job["cache"] == {
        "key": "buildpilot-cache-mounts-$CI_COMMIT_REF_SLUG",
        "fallback_keys": ["buildpilot-cache-mounts-$CI_DEFAULT_BRANCH"],
        "paths": [".buildpilot/cache-mounts/"],
    }
    before = job["before_script"]
    assert "pip install buildpilot" in before
    assert (
        "docker buildx create buildpilot --name buildpilot --driver docker-container --use"
        in before
    )
    assert before[-1] == (
        'echo "$CI_JOB_TOKEN" | docker login --username "$CI_REGISTRY_USER" --password-stdin '
        "registry.example.com"
    )
    assert job["artifacts"] == {
        "when": "always",
        "paths": [".buildpilot/"],
        "exclude": [".buildpilot/cache-mounts/**/*"],
        "reports": {"junit": ".buildpilot/junit.xml", "dotenv": ".buildpilot/digests.env"},
    }
    assert {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'} in job["rules"]


def test_gitlab_loopback_registry_has_no_login() -> None:
    before = gitlab("127.0.0.1:5000/speech")["before_script"]
    assert not [line for line in before if "docker login" in line]


GITLAB_PIPELINES = {
    "merge request": (
        {"CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "release/1.x", "CI_COMMIT_BEFORE_SHA": ZERO},
        [
            "git fetch --quiet origin +refs/heads/release/1.x:refs/remotes/origin/release/1.x",
            "buildpilot build --since origin/release/1.x --push",
        ],
    ),
    "push": (
        {"CI_COMMIT_BEFORE_SHA": "1" * 40},
        [f"buildpilot build --since {'1' * 40} --push"],
    ),
    "new branch": (
        {"CI_COMMIT_BEFORE_SHA": ZERO},
        [
            "git fetch --quiet origin +refs/heads/main:refs/remotes/origin/main",
            "buildpilot build --since origin/main --push",
        ],
    ),
    "tag": (
        {"CI_COMMIT_TAG": "v1.0.0", "CI_COMMIT_BEFORE_SHA": ZERO},
        ["buildpilot build --push"],
    ),
}


@pytest.mark.parametrize("pipeline", list(GITLAB_PIPELINES))
def test_gitlab_script_picks_since(pipeline: str, tmp_path: Path) -> None:
    env, expected = GITLAB_PIPELINES[pipeline]
    defaults = {"CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "", "CI_COMMIT_TAG": ""}
    (script,) = gitlab()["script"]
    full_env = {**defaults, "CI_DEFAULT_BRANCH": "main", **env}
    assert run_script(script, full_env, tmp_path) == expected


# --- shared ------------------------------------------------------------------------------------


def test_config_below_the_repository_root(tmp_path: Path) -> None:
    deploy = project("registry.example.com/speech", tmp_path / "deploy")
    workflow = yaml.safe_load(templates.github_workflow(deploy, repo_root=tmp_path))
    steps = steps_by_action(workflow)
    assert steps["actions/cache"]["with"]["path"] == "deploy/.buildpilot/cache-mounts"
    assert "buildpilot build -c deploy/buildpilot.yaml --push" in steps["Build what changed"]["run"]
    job = yaml.safe_load(templates.gitlab_job(deploy, repo_root=tmp_path))["buildpilot"]
    assert job["artifacts"]["reports"]["junit"] == "deploy/.buildpilot/junit.xml"
    assert "buildpilot build -c deploy/buildpilot.yaml --push" in job["script"][0]


@pytest.mark.parametrize(
    ("registry", "host"),
    [
        ("ghcr.io/acme/speech", "ghcr.io"),
        ("localhost:5000/speech", "localhost:5000"),
        ("localhost/speech", "localhost"),
        ("registry.example.com", "registry.example.com"),
        ("acme", "docker.io"),
        ("acme/speech", "docker.io"),
    ],
)
def test_registry_host(registry: str, host: str) -> None:
    assert templates.registry_host(registry) == host


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost:5000", True), ("127.0.0.1", True), ("[::1]:5000", True), ("ghcr.io", False)],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert templates.is_loopback(host) is loopback


def test_example_ci_files_are_in_sync() -> None:
    """ci/*.yml are generated: regenerate them with `buildpilot ci github --package .`
    (and `gitlab`) from the repository's root when this fails."""
    example = load_config(ROOT / "buildpilot.yaml")
    github_file = (ROOT / "ci" / "github-workflow.yml").read_text(encoding="utf-8")
    gitlab_file = (ROOT / "ci" / "gitlab-ci.yml").read_text(encoding="utf-8")
    assert github_file == templates.github_workflow(example, package=".")
    assert gitlab_file == templates.gitlab_job(example, package=".")


def test_cli_prints_the_templates(make_repo: MakeRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    config = {"version": 1, "registry": "ghcr.io/acme", "images": {"api": {"context": "../api"}}}
    root = make_repo({"api/Dockerfile": "FROM scratch\n", "deploy/buildpilot.yaml": config})
    monkeypatch.chdir(root / "api")
    runner = CliRunner()
    loaded = load_config(root / "deploy" / "buildpilot.yaml")
    for command, render in (
        ("github", templates.github_workflow),
        ("gitlab", templates.gitlab_job),
    ):
        result = runner.invoke(
            app, ["ci", command, "-c", "../deploy/buildpilot.yaml"], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        assert result.output == render(loaded, repo_root=root.resolve())
        assert "-c deploy/buildpilot.yaml" in result.output


def test_cli_reports_a_missing_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["ci", "github"], catch_exceptions=False)
    assert result.exit_code == 2
    assert "no buildpilot.yaml" in result.output
