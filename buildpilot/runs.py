"""Where runs are kept: one JSON file per run and an append-only history, under .buildpilot/."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from buildpilot.errors import ReportError
from buildpilot.results import RunResult

STATE_DIR = ".buildpilot"


def runs_dir(root: Path) -> Path:
    """The directory that holds one JSON file per run."""
    return root / STATE_DIR / "runs"


def history_file(root: Path) -> Path:
    """The append-only history: one JSON line per run."""
    return root / STATE_DIR / "history.jsonl"


def new_run_id(now: datetime) -> str:
    """A sortable, unique run id: `20261121T051500Z-3fa2`."""
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def save_run(root: Path, run: RunResult) -> Path:
    """Write the run atomically and append its summary to the history; return the run's file."""
    directory = runs_dir(root)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{run.id}.json"
    _write_atomic(target, run.model_dump_json(indent=2))
    line = json.dumps(_summary(run), separators=(",", ":")) + "\n"
    with history_file(root).open("a", encoding="utf-8") as history:
        fcntl.flock(history, fcntl.LOCK_EX)  # concurrent runs append whole lines
        history.write(line)
        history.flush()
        os.fsync(history.fileno())
    return target


def load_run(root: Path, ref: str | None = None) -> RunResult:
    """A run by id, id prefix or file path; the latest one when `ref` is None."""
    path = _find(root, ref)
    try:
        return RunResult.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        raise ReportError(f"{path}: not a readable buildpilot run: {exc}") from None


def _find(root: Path, ref: str | None) -> Path:
    if ref is not None and Path(ref).is_file():
        return Path(ref)
    directory = runs_dir(root)
    runs = sorted(directory.glob("*.json")) if directory.is_dir() else []
    if ref is not None:
        runs = [p for p in runs if p.stem.startswith(ref)]
    if not runs:
        where = f"run '{ref}'" if ref else "no run"
        raise ReportError(
            f"{where} found in {directory}", hint="`buildpilot build` records a run there."
        )
    return runs[-1]


def _summary(run: RunResult) -> dict[str, Any]:
    return {
        "id": run.id,
        "started": run.started.isoformat(),
        "duration": round(run.duration, 3),
        "interrupted": run.interrupted,
        "commit": run.commit,
        "branch": run.branch,
        "images": {
            image.name: {
                "status": image.status.value,
                "duration": round(image.duration, 3),
                "steps": image.steps_total,
                "cached": image.steps_cached,
                "digest": image.digest,
            }
            for image in run.images
        },
    }


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
