"""CI awareness: which CI runs the build, for which branch or pull request, and whether its
registry caches may be written.

Everything comes from the environment the CI sets (and, on GitHub, the event payload file it
names); outside CI, from git. Nothing here runs a process; the one file read is injected.

Variables read (their meaning as the CI's own reference gives it):

- GitHub Actions, "default environment variables": `GITHUB_ACTIONS` (always `true`),
  `GITHUB_EVENT_NAME`, `GITHUB_REF_NAME` (`<pr_number>/merge` for pull requests),
  `GITHUB_REF_TYPE` (`branch` or `tag`), `GITHUB_HEAD_REF` / `GITHUB_BASE_REF` (only for
  `pull_request` and `pull_request_target`), `GITHUB_SHA`, `GITHUB_EVENT_PATH` (the webhook
  payload: `repository.default_branch`, `pull_request.number`, `pull_request.head.repo` and
  `pull_request.base.repo`).
- GitLab CI/CD, "predefined variables": `GITLAB_CI` (`true`), `CI_PIPELINE_SOURCE`,
  `CI_COMMIT_BRANCH` (not set in merge request or tag pipelines), `CI_COMMIT_REF_NAME`,
  `CI_COMMIT_TAG` (only in tag pipelines), `CI_DEFAULT_BRANCH`, `CI_COMMIT_SHA`, and in merge
  request pipelines `CI_MERGE_REQUEST_IID`, `CI_MERGE_REQUEST_SOURCE_BRANCH_NAME`,
  `CI_MERGE_REQUEST_TARGET_BRANCH_NAME`, `CI_MERGE_REQUEST_SOURCE_PROJECT_ID` and
  `CI_MERGE_REQUEST_PROJECT_ID` (they differ for a merge request from a fork).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from buildpilot.git import GitInfo

System = Literal["github", "gitlab", "local"]
WritePolicy = Literal["auto", "always", "never"]

# GitHub events whose build is for a pull request (GITHUB_HEAD_REF is set for these only).
GITHUB_PR_EVENTS = frozenset({"pull_request", "pull_request_target"})


@dataclass(frozen=True)
class CiContext:
    """What a build needs to know about where it runs; None where the CI does not say."""

    system: System
    branch: str | None  # the branch being built (PR/MR: its source branch)
    default_branch: str | None
    sha: str | None
    pull_request: str | None  # PR/MR number
    target_branch: str | None  # PR/MR target branch
    fork: bool  # PR/MR from a fork
    event: str | None  # the CI's own name: push, pull_request, merge_request_event, schedule...
    may_write_cache: bool
    why: str  # one line: why caches may or may not be written
    tag: str | None = None  # the tag being built, for tag (release) builds


def read_file(path: str) -> str | None:
    """The text of the file at `path`, or None when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def detect(
    env: Mapping[str, str],
    git: GitInfo,
    *,
    write_cache: WritePolicy = "auto",
    read_text: Callable[[str], str | None] = read_file,
) -> CiContext:
    """The CI context of this run: GitHub Actions, GitLab CI, or a local run described by git.

    With `write_cache="auto"` a build of a branch may write its cache; a pull/merge request,
    one from a fork, and a tag build only read. "always" and "never" override the policy.
    """
    if env.get("GITHUB_ACTIONS") == "true":
        facts = _github(env, git, read_text)
    elif env.get("GITLAB_CI") == "true":
        facts = _gitlab(env, git)
    else:
        facts = _local(git)
    may_write, why = _policy(facts)
    if write_cache != "auto":
        may_write = write_cache == "always"
        verb = "written" if may_write else "only read"
        why = f"caches are {verb}: write_cache={write_cache} overrides the policy ({why})"
    return CiContext(
        system=facts.system,
        branch=facts.branch,
        default_branch=facts.default_branch,
        sha=facts.sha,
        pull_request=facts.pull_request,
        target_branch=facts.target_branch,
        fork=facts.fork,
        event=facts.event,
        may_write_cache=may_write,
        why=why,
        tag=facts.tag,
    )


@dataclass(frozen=True)
class _Facts:
    """What a CI says about the build, before any policy."""

    system: System
    branch: str | None
    default_branch: str | None
    sha: str | None
    event: str | None
    pull_request: str | None = None
    target_branch: str | None = None
    fork: bool = False
    tag: str | None = None
    is_request: bool = False  # a pull or merge request build


def _policy(facts: _Facts) -> tuple[bool, str]:
    """Whether the build may write its caches under the "auto" policy, and why."""
    if facts.is_request:
        return False, _request_why(facts)
    if facts.tag:
        return False, (
            f"tag {facts.tag}: caches are only read (a tag is no branch: a cache written "
            "for it would never be read again)"
        )
    if facts.system == "local":
        if facts.branch is None:
            return False, "local run on a detached HEAD: caches are only read (no branch)"
        return True, f"local run on branch {facts.branch}: its cache may be written"
    if facts.branch is None:
        return False, f"{facts.event or 'this'} build names no branch: caches are only read"
    return True, f"{facts.event or 'build'} of branch {facts.branch}: its cache may be written"


def _request_why(facts: _Facts) -> str:
    merge_request = facts.system == "gitlab" and facts.event != "external_pull_request_event"
    kind, mark = ("merge request", "!") if merge_request else ("pull request", "#")
    number = f" {mark}{facts.pull_request}" if facts.pull_request else ""
    source = f" from {facts.branch}" if facts.branch else ""
    if facts.fork:
        return (
            f"{kind}{number}{source} comes from a fork: caches are only read (its "
            "credentials cannot write them, and its content must not seed them)"
        )
    return (
        f"{kind}{number}{source}: caches are only read, so that a {kind} never "
        "overwrites a branch's cache"
    )


def _local(git: GitInfo) -> _Facts:
    return _Facts(
        system="local",
        branch=git.branch,
        default_branch=git.default_branch,
        sha=git.sha,
        event=None,
    )


def _github(env: Mapping[str, str], git: GitInfo, read_text: Callable[[str], str | None]) -> _Facts:
    event = env.get("GITHUB_EVENT_NAME") or None
    payload = _payload(env.get("GITHUB_EVENT_PATH"), read_text)
    ref_name = env.get("GITHUB_REF_NAME") or None
    default = _text(_mapping(payload.get("repository")).get("default_branch"))
    push = _Facts(
        system="github",
        branch=ref_name,
        default_branch=default or git.default_branch,
        sha=env.get("GITHUB_SHA") or git.sha,
        event=event,
    )
    if event in GITHUB_PR_EVENTS or env.get("GITHUB_HEAD_REF"):
        pull = _mapping(payload.get("pull_request"))
        return replace(
            push,
            branch=env.get("GITHUB_HEAD_REF") or _text(_mapping(pull.get("head")).get("ref")),
            pull_request=_github_number(pull, payload, ref_name),
            target_branch=env.get("GITHUB_BASE_REF")
            or _text(_mapping(pull.get("base")).get("ref")),
            fork=_github_fork(pull),
            is_request=True,
        )
    if env.get("GITHUB_REF_TYPE") == "tag":
        return replace(push, branch=None, tag=ref_name)
    return push


def _github_number(
    pull: Mapping[str, Any], payload: Mapping[str, Any], ref_name: str | None
) -> str | None:
    """The pull request's number: from the payload, else from `GITHUB_REF_NAME` (`12/merge`)."""
    number = _text(pull.get("number")) or _text(payload.get("number"))
    if number:
        return number
    head, _, rest = (ref_name or "").partition("/")
    return head if rest == "merge" and head.isdigit() else None


def _github_fork(pull: Mapping[str, Any]) -> bool:
    """Whether the pull request's head lives in another repository than its base.

    The repositories' full names say it exactly; `head.repo.fork` only says that the head
    repository is some fork, which a PR between two branches of a fork also has. A head
    repository that is gone (`null`) was a fork that has been deleted.
    """
    head = _mapping(pull.get("head"))
    if "repo" in head and head["repo"] is None:
        return True
    head_repo = _mapping(head.get("repo"))
    head_name = _text(head_repo.get("full_name"))
    base_name = _text(_mapping(_mapping(pull.get("base")).get("repo")).get("full_name"))
    if head_name and base_name:
        return head_name != base_name
    return head_repo.get("fork") is True


def _gitlab(env: Mapping[str, str], git: GitInfo) -> _Facts:
    source = env.get("CI_PIPELINE_SOURCE") or None
    push = _Facts(
        system="gitlab",
        branch=env.get("CI_COMMIT_BRANCH") or env.get("CI_COMMIT_REF_NAME") or None,
        default_branch=env.get("CI_DEFAULT_BRANCH") or git.default_branch,
        sha=env.get("CI_COMMIT_SHA") or git.sha,
        event=source,
    )
    if source == "external_pull_request_event":  # a GitHub pull request, built by GitLab
        source_repo = env.get("CI_EXTERNAL_PULL_REQUEST_SOURCE_REPOSITORY")
        target_repo = env.get("CI_EXTERNAL_PULL_REQUEST_TARGET_REPOSITORY")
        return replace(
            push,
            branch=env.get("CI_EXTERNAL_PULL_REQUEST_SOURCE_BRANCH_NAME") or None,
            pull_request=env.get("CI_EXTERNAL_PULL_REQUEST_IID") or None,
            target_branch=env.get("CI_EXTERNAL_PULL_REQUEST_TARGET_BRANCH_NAME") or None,
            fork=bool(source_repo and target_repo and source_repo != target_repo),
            is_request=True,
        )
    if source == "merge_request_event" or env.get("CI_MERGE_REQUEST_IID"):
        source_project = env.get("CI_MERGE_REQUEST_SOURCE_PROJECT_ID")
        target_project = env.get("CI_MERGE_REQUEST_PROJECT_ID")
        return replace(
            push,
            branch=env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME") or None,
            pull_request=env.get("CI_MERGE_REQUEST_IID") or None,
            target_branch=env.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME") or None,
            fork=bool(source_project and target_project and source_project != target_project),
            is_request=True,
        )
    if env.get("CI_COMMIT_TAG"):
        return replace(push, branch=None, tag=env["CI_COMMIT_TAG"])
    return push


def _payload(path: str | None, read_text: Callable[[str], str | None]) -> Mapping[str, Any]:
    """The GitHub event payload, or an empty mapping when it is missing or not JSON."""
    text = read_text(path) if path else None
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return _mapping(data)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str | None:
    """A payload value as text: strings and numbers (not booleans); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value) or None
