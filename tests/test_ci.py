"""CI detection: GitHub Actions and GitLab CI environments, local runs, and the cache policy."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import pytest

from buildpilot.ci import CiContext, detect, read_file
from buildpilot.git import GitInfo

GIT = GitInfo(sha="a" * 40, branch="local-branch", default_branch="trunk")
EVENT_PATH = "/runner/_temp/event.json"
REPO = {"full_name": "acme/speech", "default_branch": "main", "fork": False}
FORK = {"full_name": "mallory/speech", "default_branch": "main", "fork": True}


def github_env(event: str, ref_name: str, **extra: str) -> dict[str, str]:
    """The default variables GitHub Actions sets for `event` (the subset buildpilot reads)."""
    return {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": event,
        "GITHUB_REF_NAME": ref_name,
        "GITHUB_REF_TYPE": "branch",
        "GITHUB_SHA": "b" * 40,
        "GITHUB_EVENT_PATH": EVENT_PATH,
        "GITHUB_HEAD_REF": "",
        "GITHUB_BASE_REF": "",
        **extra,
    }


def pull_request(number: int, head_repo: dict[str, Any] | None) -> dict[str, Any]:
    """A `pull_request` webhook payload from `head_repo` (None: a deleted fork) into acme/speech."""
    return {
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"ref": "feature/vad", "repo": head_repo},
            "base": {"ref": "main", "repo": REPO},
        },
        "repository": REPO,
    }


def payload_reader(payload: Mapping[str, Any] | None) -> Any:
    """A `read_text` that serves `payload` as the file at EVENT_PATH."""

    def read(path: str) -> str | None:
        assert path == EVENT_PATH
        return None if payload is None else json.dumps(payload)

    return read


PR_ENV = {"GITHUB_HEAD_REF": "feature/vad", "GITHUB_BASE_REF": "main"}

GITHUB_CASES = {
    "push": (
        github_env("push", "main"),
        {"repository": REPO, "ref": "refs/heads/main"},
        {
            "branch": "main",
            "default_branch": "main",
            "pull_request": None,
            "target_branch": None,
            "fork": False,
            "event": "push",
            "tag": None,
            "may_write_cache": True,
            "why": "push of branch main: its cache may be written",
        },
    ),
    "pull request": (
        github_env("pull_request", "12/merge", **PR_ENV),
        pull_request(12, REPO),
        {
            "branch": "feature/vad",
            "default_branch": "main",
            "pull_request": "12",
            "target_branch": "main",
            "fork": False,
            "event": "pull_request",
            "tag": None,
            "may_write_cache": False,
            "why": "pull request #12 from feature/vad: caches are only read, so that a pull "
            "request never overwrites a branch's cache",
        },
    ),
    "pull request from a fork": (
        github_env("pull_request", "13/merge", **PR_ENV),
        pull_request(13, FORK),
        {
            "branch": "feature/vad",
            "default_branch": "main",
            "pull_request": "13",
            "target_branch": "main",
            "fork": True,
            "event": "pull_request",
            "tag": None,
            "may_write_cache": False,
            "why": "pull request #13 from feature/vad comes from a fork: caches are only read "
            "(its credentials cannot write them, and its content must not seed them)",
        },
    ),
    "tag": (
        github_env("push", "v1.2.0", GITHUB_REF_TYPE="tag"),
        {"repository": REPO, "ref": "refs/tags/v1.2.0"},
        {
            "branch": None,
            "default_branch": "main",
            "pull_request": None,
            "target_branch": None,
            "fork": False,
            "event": "push",
            "tag": "v1.2.0",
            "may_write_cache": False,
            "why": "tag v1.2.0: caches are only read (a tag is no branch: a cache written for "
            "it would never be read again)",
        },
    ),
    "schedule": (
        github_env("schedule", "main"),
        {"schedule": "17 3 * * *", "repository": REPO},
        {
            "branch": "main",
            "default_branch": "main",
            "pull_request": None,
            "target_branch": None,
            "fork": False,
            "event": "schedule",
            "tag": None,
            "may_write_cache": True,
            "why": "schedule of branch main: its cache may be written",
        },
    ),
}


@pytest.mark.parametrize("case", list(GITHUB_CASES))
def test_github(case: str) -> None:
    env, payload, expected = GITHUB_CASES[case]
    context = detect(env, GIT, read_text=payload_reader(payload))
    assert asdict(context) == {"system": "github", "sha": "b" * 40, **expected}


def test_github_fork_is_another_repository_not_a_forked_one() -> None:
    # Both sides live in one repository that is itself a fork: a branch PR, not a fork PR.
    inside_a_fork = {**FORK, "full_name": "acme/speech"}
    payload = pull_request(5, inside_a_fork)
    payload["pull_request"]["base"]["repo"] = inside_a_fork
    env = github_env("pull_request", "5/merge", **PR_ENV)
    assert detect(env, GIT, read_text=payload_reader(payload)).fork is False


def test_github_fork_without_full_names_uses_the_fork_flag() -> None:
    payload = pull_request(6, {"fork": True})
    payload["pull_request"]["base"]["repo"] = {}
    env = github_env("pull_request", "6/merge", **PR_ENV)
    assert detect(env, GIT, read_text=payload_reader(payload)).fork is True


def test_github_deleted_fork_counts_as_a_fork() -> None:
    env = github_env("pull_request", "7/merge", **PR_ENV)
    context = detect(env, GIT, read_text=payload_reader(pull_request(7, None)))
    assert context.fork is True
    assert context.may_write_cache is False


@pytest.mark.parametrize("payload", [None, "not json", "[1, 2]"])
def test_github_without_a_usable_payload(payload: str | None) -> None:
    """The variables alone still tell a pull request; the default branch then comes from git."""
    env = github_env("pull_request", "21/merge", **PR_ENV)
    context = detect(env, GIT, read_text=lambda _path: payload)
    assert (context.pull_request, context.branch, context.target_branch) == (
        "21",
        "feature/vad",
        "main",
    )
    assert context.default_branch == "trunk"
    assert context.fork is False
    assert context.may_write_cache is False


def test_github_needs_github_actions_true() -> None:
    env = github_env("push", "main", GITHUB_ACTIONS="false")
    assert detect(env, GIT, read_text=payload_reader(None)).system == "local"


def gitlab_env(source: str, **extra: str) -> dict[str, str]:
    """The predefined variables GitLab sets (the subset buildpilot reads)."""
    return {
        "CI": "true",
        "GITLAB_CI": "true",
        "CI_PIPELINE_SOURCE": source,
        "CI_DEFAULT_BRANCH": "main",
        "CI_COMMIT_SHA": "c" * 40,
        **extra,
    }


MR_ENV = {
    "CI_COMMIT_REF_NAME": "feature/vad",
    "CI_MERGE_REQUEST_IID": "42",
    "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature/vad",
    "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "release/1.x",
    "CI_MERGE_REQUEST_PROJECT_ID": "1000",
}

GITLAB_CASES = {
    "push": (
        gitlab_env("push", CI_COMMIT_BRANCH="feature/vad", CI_COMMIT_REF_NAME="feature/vad"),
        {
            "branch": "feature/vad",
            "pull_request": None,
            "target_branch": None,
            "fork": False,
            "event": "push",
            "tag": None,
            "may_write_cache": True,
            "why": "push of branch feature/vad: its cache may be written",
        },
    ),
    "merge request": (
        gitlab_env("merge_request_event", CI_MERGE_REQUEST_SOURCE_PROJECT_ID="1000", **MR_ENV),
        {
            "branch": "feature/vad",
            "pull_request": "42",
            "target_branch": "release/1.x",
            "fork": False,
            "event": "merge_request_event",
            "tag": None,
            "may_write_cache": False,
            "why": "merge request !42 from feature/vad: caches are only read, so that a merge "
            "request never overwrites a branch's cache",
        },
    ),
    "merge request from a fork": (
        gitlab_env("merge_request_event", CI_MERGE_REQUEST_SOURCE_PROJECT_ID="2000", **MR_ENV),
        {
            "branch": "feature/vad",
            "pull_request": "42",
            "target_branch": "release/1.x",
            "fork": True,
            "event": "merge_request_event",
            "tag": None,
            "may_write_cache": False,
            "why": "merge request !42 from feature/vad comes from a fork: caches are only read "
            "(its credentials cannot write them, and its content must not seed them)",
        },
    ),
    "tag": (
        gitlab_env("push", CI_COMMIT_TAG="v2.0.0", CI_COMMIT_REF_NAME="v2.0.0"),
        {
            "branch": None,
            "pull_request": None,
            "target_branch": None,
            "fork": False,
            "event": "push",
            "tag": "v2.0.0",
            "may_write_cache": False,
            "why": "tag v2.0.0: caches are only read (a tag is no branch: a cache written for "
            "it would never be read again)",
        },
    ),
    "schedule": (
        gitlab_env("schedule", CI_COMMIT_BRANCH="main", CI_COMMIT_REF_NAME="main"),
        {
            "branch": "main",
            "pull_request": None,
            "target_branch": None,
            "fork": False,
            "event": "schedule",
            "tag": None,
            "may_write_cache": True,
            "why": "schedule of branch main: its cache may be written",
        },
    ),
    "external pull request": (
        gitlab_env(
            "external_pull_request_event",
            CI_COMMIT_REF_NAME="feature/vad",
            CI_EXTERNAL_PULL_REQUEST_IID="9",
            CI_EXTERNAL_PULL_REQUEST_SOURCE_BRANCH_NAME="feature/vad",
            CI_EXTERNAL_PULL_REQUEST_TARGET_BRANCH_NAME="main",
            CI_EXTERNAL_PULL_REQUEST_SOURCE_REPOSITORY="mallory/speech",
            CI_EXTERNAL_PULL_REQUEST_TARGET_REPOSITORY="acme/speech",
        ),
        {
            "branch": "feature/vad",
            "pull_request": "9",
            "target_branch": "main",
            "fork": True,
            "event": "external_pull_request_event",
            "tag": None,
            "may_write_cache": False,
            "why": "pull request #9 from feature/vad comes from a fork: caches are only read "
            "(its credentials cannot write them, and its content must not seed them)",
        },
    ),
}


@pytest.mark.parametrize("case", list(GITLAB_CASES))
def test_gitlab(case: str) -> None:
    env, expected = GITLAB_CASES[case]
    context = detect(env, GIT, read_text=payload_reader(None))
    assert asdict(context) == {
        "system": "gitlab",
        "sha": "c" * 40,
        "default_branch": "main",
        **expected,
    }


def test_gitlab_falls_back_to_git_for_what_it_does_not_say() -> None:
    env = {"GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "web", "CI_COMMIT_REF_NAME": "dev"}
    context = detect(env, GIT)
    assert (context.branch, context.default_branch, context.sha) == ("dev", "trunk", "a" * 40)
    assert context.may_write_cache is True


def test_local_run() -> None:
    context = detect({"CI": "true"}, GIT)
    assert context == CiContext(
        system="local",
        branch="local-branch",
        default_branch="trunk",
        sha="a" * 40,
        pull_request=None,
        target_branch=None,
        fork=False,
        event=None,
        may_write_cache=True,
        why="local run on branch local-branch: its cache may be written",
    )


def test_local_detached_head_only_reads() -> None:
    context = detect({}, GitInfo(sha="a" * 40))
    assert context.branch is None
    assert context.may_write_cache is False
    assert context.why == "local run on a detached HEAD: caches are only read (no branch)"


def test_write_cache_always_overrides_a_pull_request() -> None:
    env = github_env("pull_request", "12/merge", **PR_ENV)
    context = detect(
        env, GIT, write_cache="always", read_text=payload_reader(pull_request(12, REPO))
    )
    assert context.may_write_cache is True
    assert context.why == (
        "caches are written: write_cache=always overrides the policy (pull request #12 from "
        "feature/vad: caches are only read, so that a pull request never overwrites a branch's "
        "cache)"
    )


def test_write_cache_never_overrides_a_push() -> None:
    env = gitlab_env("push", CI_COMMIT_BRANCH="main")
    context = detect(env, GIT, write_cache="never")
    assert context.may_write_cache is False
    assert context.why == (
        "caches are only read: write_cache=never overrides the policy "
        "(push of branch main: its cache may be written)"
    )


def test_write_cache_auto_is_the_policy() -> None:
    env = gitlab_env("push", CI_COMMIT_BRANCH="main")
    assert detect(env, GIT) == detect(env, GIT, write_cache="auto")


def test_read_file(tmp_path: Any) -> None:
    event = tmp_path / "event.json"
    event.write_text('{"number": 1}', encoding="utf-8")
    assert read_file(str(event)) == '{"number": 1}'
    assert read_file(str(tmp_path / "missing.json")) is None
