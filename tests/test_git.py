"""The changed-file set since a ref, asked of git concurrently, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildpilot import git as gitops
from buildpilot.errors import GitError
from tests.conftest import MakeRepo, git, write_tree

IDENTITY = ("-c", "user.email=t@example.com", "-c", "user.name=t")
COMMIT = (*IDENTITY, "commit", "-qm")


@pytest.fixture
def repo(make_repo: MakeRepo) -> Path:
    root = make_repo(
        {
            "app/Dockerfile": "FROM scratch\n",
            "app/src/old.py": "old\n",
            "app/src/gone.py": "gone\n",
            "app/src/edited.py": "v1\n",
            "docs/readme.md": "docs\n",
            ".gitignore": "*.log\n",
        }
    )
    git(root, "checkout", "-qb", "feature")
    write_tree(root, {"docs/readme.md": "committed on the branch\n"})
    git(root, "add", "-A")
    git(root, *COMMIT, "branch")
    git(root, "mv", "app/src/old.py", "app/src/new.py")  # staged rename
    (root / "app/src/gone.py").unlink()  # unstaged deletion
    write_tree(
        root,
        {
            "app/src/edited.py": "v2\n",  # unstaged edit
            "app/src/fresh.py": "untracked\n",
            "app/src/noise.log": "ignored\n",
        },
    )
    return root


EXPECTED = {
    "app/src/edited.py",
    "app/src/fresh.py",
    "app/src/gone.py",
    "app/src/new.py",
    "app/src/old.py",
    "docs/readme.md",
}


@pytest.mark.parametrize("where", [".", "app", "app/src"])
def test_the_same_set_from_any_directory_and_either_way(repo: Path, where: str) -> None:
    git(repo, "config", "diff.relative", "true")  # would make a diff's paths relative
    changes = gitops.changed_files(repo / where, "main")
    assert changes.files == EXPECTED
    assert changes.deleted == {"app/src/gone.py", "app/src/old.py"}
    assert changes.root == repo
    assert changes.base == git(repo, "rev-parse", "main")
    assert gitops._changed_files_stepwise(repo / where, "main") == changes


def test_unrelated_histories_have_no_merge_base(repo: Path) -> None:
    git(repo, "checkout", "-q", "--orphan", "island")
    git(repo, "add", "-A")
    git(repo, *COMMIT, "island")
    with pytest.raises(GitError, match="no merge base between main and HEAD"):
        gitops.changed_files(repo, "main")


def test_a_missing_ref_and_no_repository(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(GitError, match="this repository has no commit nope"):
        gitops.changed_files(repo, "nope")
    outside = tmp_path / "plain"
    outside.mkdir()
    with pytest.raises(GitError, match="rev-parse --show-toplevel` failed"):
        gitops.changed_files(outside, "main")


def test_several_merge_bases_as_before(repo: Path) -> None:
    """A criss-cross history has two merge bases; git picks one, as it always did."""
    git(repo, "add", "-A")
    git(repo, *COMMIT, "work in progress")
    git(repo, "checkout", "-qb", "other", "main")
    write_tree(repo, {"other.txt": "o\n"})
    git(repo, "add", "-A")
    git(repo, *COMMIT, "other")
    git(repo, "checkout", "-q", "feature")
    git(repo, *IDENTITY, "merge", "-q", "other", "-m", "merge other")
    git(repo, "checkout", "-q", "other")
    git(repo, *IDENTITY, "merge", "-q", "feature~1", "-m", "merge feature")
    git(repo, "checkout", "-q", "feature")
    write_tree(repo, {"app/src/late.py": "late\n"})
    assert len(git(repo, "merge-base", "--all", "other", "HEAD").split()) == 2
    changes = gitops.changed_files(repo, "other")
    assert changes == gitops._changed_files_stepwise(repo, "other")
    assert changes.base == git(repo, "merge-base", "other", "HEAD")
    assert "app/src/late.py" in changes.files
