"""The only place that runs git."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
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


@dataclass(frozen=True)
class ChangeSet:
    """Files changed since a ref's merge base, as paths relative to the repository root."""

    ref: str
    base: str  # the merge-base commit
    root: Path  # the repository's top level
    files: frozenset[str]
    deleted: frozenset[str]


def toplevel(root: Path) -> Path:
    """The top level of the git repository that holds `root`."""
    return Path(run_git(root, "rev-parse", "--show-toplevel"))


def changed_files(root: Path, ref: str) -> ChangeSet:
    """Committed changes since the merge base of `ref` and HEAD, plus staged, unstaged and
    untracked (not ignored) files. A rename counts on both sides; a deletion counts too."""
    return PendingChanges(root, ref).result()


class PendingChanges:
    """`changed_files(root, ref)`, asked of git as soon as this is made.

    Three git processes run at once: the top level with the merge base (`rev-parse REF...HEAD`
    names both commits, then every merge base), the diff from the merge base (`--merge-base`,
    git 2.30) and the untracked files. If any of them fails (an old git, several merge bases,
    a missing ref...), the questions are asked again one after the other, as before, for the
    answer or the error that says why.
    """

    def __init__(self, root: Path, ref: str, *, within: Sequence[str] = ()) -> None:
        """`within`: paths from the top level the answer may be limited to (all if empty)."""
        self.root = root
        self.ref = ref
        specs = [f":(top,literal){path}" for path in within]
        self._running = [
            _start(root, "rev-parse", "--show-toplevel", f"{ref}...HEAD"),
            # The untracked-file walk runs beside it: preloading the index with threads
            # would only make the two contend.
            _start(
                root, "-c", "core.preloadIndex=false", *_DIFF, "--merge-base", ref, "--", *specs
            ),
            _start(root, *_UNTRACKED, "--full-name", "--", *(specs or [":/"])),
        ]

    def result(self) -> ChangeSet:
        """Wait for the answer; raise GitError where git has none."""
        found, diff, untracked = (_finish(process) for process in self._running)
        lines = [] if found is None else found.splitlines()
        bases = [line[1:] for line in lines[3:] if line.startswith("^")]
        if len(lines) != 4 or len(bases) != 1 or diff is None or untracked is None:
            return _changed_files_stepwise(self.root, self.ref)
        return _change_set(self.ref, bases[0], Path(lines[0]), diff, untracked)

    def cancel(self) -> None:
        """Stop git where it still runs: the answer is not wanted."""
        for process in self._running:
            if process is not None and process.poll() is None:
                process.kill()
            if process is not None:
                process.communicate()


_UNTRACKED = ("ls-files", "--others", "--exclude-standard", "-z")
# A diff prints paths from the top level, unless `diff.relative` says otherwise.
_DIFF = ("-c", "diff.relative=false", "diff", "--name-status", "--no-renames", "-z")


def _changed_files_stepwise(root: Path, ref: str) -> ChangeSet:
    top = toplevel(root)
    _require_ref(top, ref)
    try:
        base = run_git(top, "merge-base", ref, "HEAD")
    except GitError:
        raise GitError(
            f"no merge base between {ref} and HEAD: the history between them is missing",
            hint=_FETCH_HINT.format(ref=ref),
        ) from None
    diff = run_git(top, *_DIFF, base)
    untracked = run_git(top, *_UNTRACKED)
    return _change_set(ref, base, top, diff, untracked)


def _change_set(ref: str, base: str, top: Path, diff: str, untracked: str) -> ChangeSet:
    # --no-renames lists a rename as a deletion and an addition: both sides count.
    files: set[str] = set()
    deleted: set[str] = set()
    fields = diff.split("\0")
    for status, path in zip(fields[0::2], fields[1::2], strict=False):
        if path:
            files.add(path)
            if status.startswith("D"):
                deleted.add(path)
    files.update(p for p in untracked.split("\0") if p)
    return ChangeSet(
        ref=ref, base=base.strip(), root=top, files=frozenset(files), deleted=frozenset(deleted)
    )


def _start(root: Path, *args: str) -> subprocess.Popen[str] | None:
    """git running in `root`, its stdout piped; None when it cannot start."""
    try:
        return subprocess.Popen(
            ["git", "-C", str(root), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
    except OSError:
        return None


def _finish(process: subprocess.Popen[str] | None) -> str | None:
    """The stdout of a git started by `_start`, or None when it failed."""
    if process is None:
        return None
    try:
        out, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return None
    return out if process.returncode == 0 else None


def file_at(top: Path, commit: str, path: str) -> str | None:
    """The text of `path` (relative to the top level) at `commit`, or None if absent."""
    command = ["git", "-C", str(top), "show", f"{commit}:{path}"]
    done = subprocess.run(command, capture_output=True, check=False, timeout=60)
    if done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", errors="replace")


def index_entries(top: Path, within: Sequence[str] = ()) -> dict[str, tuple[str, str] | None]:
    """path -> (mode, blob sha) of every file in the index (below `within`, if given), and
    None for each file whose working copy differs from the index or that git does not
    track, ignored ones included: BuildKit sends what is on disk, not what git tracks. The
    three listings run at once."""
    listings = [
        ["ls-files", "--stage", "-z", "--", *within],
        ["ls-files", "--modified", "-z", "--", *within],
        ["ls-files", "--others", "-z", "--", *within],
    ]
    started = [(args, _start(top, *args)) for args in listings]
    outputs = []
    for args, process in started:
        out = _finish(process)
        if out is None:
            raise GitError(f"`git -C {top} {' '.join(args)}` failed")
        outputs.append(out)
    staged, modified, others = outputs
    entries: dict[str, tuple[str, str] | None] = {}
    for entry in staged.split("\0"):
        if entry:
            meta, _, path = entry.partition("\t")
            mode, sha, _stage = meta.split()
            entries[path] = (mode, sha)
    for path in (modified + "\0" + others).split("\0"):
        if path:
            entries[path] = None
    return entries


_FETCH_HINT = (
    "Fetch it, e.g. `git fetch origin {ref}` (a shallow CI clone also needs "
    "`git fetch --deepen=200` or `--unshallow`), or drop `--since`: reusing images by "
    "fingerprint needs no history."
)


def _require_ref(top: Path, ref: str) -> None:
    try:
        run_git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except GitError:
        shallow = _try(top, "rev-parse", "--is-shallow-repository") == "true"
        where = "this shallow clone" if shallow else "this repository"
        raise GitError(
            f"--since {ref}: {where} has no commit {ref}", hint=_FETCH_HINT.format(ref=ref)
        ) from None
