"""Runs kept under .buildpilot/ (see `runlog.py`), saved from and read back as validated records."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from buildpilot.errors import ReportError
from buildpilot.results import RunResult
from buildpilot.runlog import runs_dir, write_run


def save_run(root: Path, run: RunResult) -> Path:
    """Write the run atomically and append its summary to the history; return the run's file."""
    return write_run(root, run, run.model_dump_json(indent=2))


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
    runs = sorted(directory.glob("*.json"), key=_order) if directory.is_dir() else []
    if ref is not None:
        runs = [p for p in runs if p.stem.startswith(ref)]
    if not runs:
        where = f"run '{ref}'" if ref else "no run"
        raise ReportError(
            f"{where} found in {directory}", hint="`buildpilot build` records a run there."
        )
    return runs[-1]


def _order(path: Path) -> tuple[str, int]:
    """Runs in the order they were recorded: an id names its second (`20261121T051500Z-3fa2`),
    and of two runs started within one second the one written later is the later run."""
    try:
        written = path.stat().st_mtime_ns
    except OSError:
        written = 0
    return path.stem.partition("-")[0], written
