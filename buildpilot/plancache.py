"""A config's snapshots on disk, and whether they still hold.

After a full `plan`, what a forecast needs of the config (`planinputs.py`) is kept as JSON
under `.buildpilot/cache/` beside the config, with the state of every path it was read
from or checked against: inode, mode, size, mtime and ctime of a file; the inode and type
of a directory; whether a `.git` is there; or that the path was absent. The buildpilot
version, its own modules and the Dockerfile parser are watched the same way. A snapshot is
used only while every watched path is as it was: any difference, and any unreadable or
corrupt file, means the full path, which writes the snapshot anew. A full reusing
`build` keeps a second kind the same way: what reusing images needs of the config
(`reuseinputs.py`).

A timestamp cannot tell apart two writes within one clock tick, so a snapshot is not
written while a path it watches changed (a directory: its ctime, as when it is moved into
place) less than RACY_NS before the read began; the next run writes it. The file starts
with a CRC of its JSON and is replaced atomically. Standard library only: the warm paths
load it on every run.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from buildpilot import __version__

FORMAT = 1  # bump when what a snapshot holds, or what it means, changes
CACHE_DIR = Path(".buildpilot") / "cache"
RACY_NS = 2_000_000_000
CONTENT = "content"  # a file read: any change of it counts
NODE = "node"  # a directory, or a file only looked up: being replaced counts
EXISTS = "exists"  # a path only tested for existence (`.git` up the tree)
PLAN = "plan"  # what `plan --since` needs (`planinputs.py`)
REUSE = "reuse"  # what a reusing `build` needs (`reuseinputs.py`)
_PACKAGE = Path(__file__).parent

Snapshot = dict[str, Any]
State = list[int] | None


def location(config: Path, kind: str = PLAN) -> Path:
    """Where the `kind` snapshot of the config file `config` (a real path) is kept."""
    digest = zlib.crc32(str(config).encode("utf-8", "surrogateescape"))
    return config.parent / CACHE_DIR / f"{kind}-{config.stem}-{digest:08x}.json"


def state(path: str, kind: str) -> State:
    """What is watched of `path` now (None: absent). Other errors are raised."""
    return _state(path, kind)[0]


def _state(path: str, kind: str) -> tuple[State, int]:
    """The watched state of `path`, and when it last changed (ns; 0: never mind)."""
    if kind == EXISTS:
        return ([1] if Path(path).exists() else None), 0
    try:
        found = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None, 0
    if kind == NODE:  # a directory changes with its entries: only its being replaced counts
        return [stat.S_IFMT(found.st_mode), found.st_ino, found.st_dev], found.st_ctime_ns
    changed = max(found.st_mtime_ns, found.st_ctime_ns)
    return [
        found.st_mode,
        found.st_ino,
        found.st_dev,
        found.st_size,
        found.st_mtime_ns,
        found.st_ctime_ns,
    ], changed


def load(config: Path, kind: str = PLAN) -> Snapshot | None:
    """The `kind` snapshot of `config` (a real path) if every path it watches is unchanged."""
    try:
        raw = location(config, kind).read_bytes()
        head, _, body = raw.partition(b"\n")
        if head != _header(body, kind):
            return None
        data = json.loads(body)
        if data["version"] != __version__ or data["config"] != str(config):
            return None
        if any(state(path, kind) != was for path, kind, was in data["watched"]):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def save(
    config: Path,
    body: Snapshot,
    watched: Iterable[tuple[str, str]],
    *,
    read_since: int,
    kind: str = PLAN,
) -> bool:
    """Write the `kind` snapshot of `config` with the state of every watched path (and of what
    loading any config depends on: `_loading`); False, and nothing written, when one changed
    too recently to be trusted, i.e. at or after `read_since - RACY_NS` (`time.time_ns()`
    before the read)."""
    paths = list(dict.fromkeys([*watched, *_loading(config.parent)]))
    found = [_state(path, kind) for path, kind in paths]
    states = [state for state, _ in found]
    if max(changed for _, changed in found) >= read_since - RACY_NS:
        return False
    data = {
        **body,
        "version": __version__,
        "config": str(config),
        "watched": [[path, kind, s] for (path, kind), s in zip(paths, states, strict=True)],
    }
    text = json.dumps(data, separators=(",", ":")).encode()
    _write_atomic(location(config, kind), _header(text, kind) + b"\n" + text)
    return True


def _loading(root: Path) -> list[tuple[str, str]]:
    """What loading a config in `root` depends on beyond the config's own files: this
    package's modules, the Dockerfile parser, and the `.git` lookups up the tree
    (`config.repository_root`)."""
    found = [(str(module), CONTENT) for module in sorted(_PACKAGE.glob("*.py"))]
    parser = getattr(sys.modules.get("dockerfile"), "__file__", None)
    if parser is not None:
        found.append((parser, CONTENT))
    for candidate in (root, *root.parents):
        found.append((str(candidate / ".git"), EXISTS))
        if (candidate / ".git").exists():
            break
    return found


def forget(config: Path, kind: str = PLAN) -> None:
    """Remove the `kind` snapshot of `config`, if there is one."""
    location(config, kind).unlink(missing_ok=True)


def _header(body: bytes, kind: str) -> bytes:
    return f"buildpilot {kind} snapshot {FORMAT} {zlib.crc32(body):08x}".encode()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ignore = path.parent / ".gitignore"
    if not ignore.exists():  # keeps the cache out of `git status` and of changed-file sets
        ignore.write_text("*\n", encoding="utf-8")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
