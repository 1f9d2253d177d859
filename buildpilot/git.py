"""The only place that runs git."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from buildpilot.errors import GitError


@dataclass(frozen=True)
class GitInfo:
    """What the builds need to know of the repository; None where git has no answer."""

    sha: str | None = None
    branch: str | None = None
    default_branch: str | None = None
    commit_time: int | None = None


def run_git(root: Path, *args: str) -> str:
    """Run git in `root` and return its stdout; raise GitError naming the command."""
    command = ["git", "-C", str(root), *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    except FileNotFoundError:
        raise GitError(
            "git is not installed", hint="Install git, e.g. `apt-get install git`."
        ) from None
    if done.returncode != 0:
        raise GitError(f"`{' '.join(command)}` failed: {done.stderr.strip()}")
    return done.stdout.strip()


def git_info(root: Path) -> GitInfo:
    """Commit, branch and default branch of the repository at `root` (all None outside git)."""
    try:
        sha, time = run_git(root, "log", "-1", "--format=%H %ct").split()
    except (GitError, ValueError):
        return GitInfo()
    head = _try(root, "rev-parse", "--symbolic-full-name", "HEAD") or ""
    branch = head.removeprefix("refs/heads/") if head.startswith("refs/heads/") else None
    default = None
    remote_head = _try(root, "symbolic-ref", "--short", "-q", "refs/remotes/origin/HEAD")
    if remote_head and "/" in remote_head:
        default = remote_head.split("/", 1)[1]
    return GitInfo(sha=sha, branch=branch, default_branch=default, commit_time=int(time))


def _try(root: Path, *args: str) -> str | None:
    try:
        return run_git(root, *args) or None
    except GitError:
        return None
