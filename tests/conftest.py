"""Shared fixtures: small repositories made from dicts, with real git."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import yaml

BUSYBOX = Path("/bin/busybox")
TINY_BASE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
"""

MakeRepo = Callable[[Mapping[str, object]], Path]


def write_tree(root: Path, files: Mapping[str, object]) -> None:
    """Write `files` under `root`: str -> text, bytes -> binary, dict -> YAML."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")


def git(root: Path, *args: str) -> str:
    """Run git in `root` (test helper)."""
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def make_repo(tmp_path: Path) -> MakeRepo:
    """A git repository with one commit on `main`, made from a dict of files."""

    def make(files: Mapping[str, object]) -> Path:
        root = tmp_path / "repo"
        root.mkdir(exist_ok=True)
        write_tree(root, files)
        git(root, "init", "-q", "-b", "main")
        git(root, "-c", "user.email=t@example.com", "-c", "user.name=t", "add", "-A")
        git(root, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "init")
        return root

    return make
