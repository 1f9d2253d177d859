"""Where runs are written: one JSON file per run and an append-only history, under .buildpilot/.

Free of pydantic: the warm reuse path (`warmbuild.py`) records its runs here too. Reading
runs back, as validated records, is `runs.py`.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from buildpilot.runview import RunView

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


def write_run(root: Path, run: RunView, record: str) -> Path:
    """Write `record` (the run as JSON) atomically and append the run's summary to the
    history; return the run's file."""
    directory = runs_dir(root)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{run.id}.json"
    _write_atomic(target, record)
    line = json.dumps(summary(run), separators=(",", ":")) + "\n"
    with history_file(root).open("a", encoding="utf-8") as history:
        fcntl.flock(history, fcntl.LOCK_EX)  # concurrent runs append whole lines
        history.write(line)
        history.flush()
        os.fsync(history.fileno())
    return target


def summary(run: RunView) -> Mapping[str, Any]:
    """The history's line for `run`."""
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
