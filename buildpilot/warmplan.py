"""`buildpilot plan --since REF` from a planning snapshot, without the full CLI.

The console entry (`entry.py`) tries this before it imports typer, pydantic or rich. It takes
only what it is sure of, and returns None (the full CLI then runs, and reports any error)
for anything else:

- `plan` with `--since REF`, and optionally `--json`, `-c/--config PATH` and image names;
- JSON, or the table where it goes to a pipe, a file or a CI log (rich writes no escape
  codes there, so `texttable` lays it out exactly as rich does);
- a snapshot of the config that still holds (`plancache`);
- a change since REF that touches none of the snapshot's guards: the config, a Dockerfile,
  an ignore file (those need the full predictor, which reads them at REF).

Then the forecast comes from `warmpredict` instead of `changes`; git, the graph, the
decisions (`selection`) and the rendering (`planreport`) are the full path's own, so the
output is the same, byte for byte. For the table, git is asked only about the paths the
images read and the guards (the snapshot's `reads`): the table names no other file, and no
other file changes a forecast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from buildpilot import CONFIG_NAME, plancache
from buildpilot.git import PendingChanges
from buildpilot.texttable import PLAIN_WIDTH


class _Options(NamedTuple):
    images: list[str]
    since: str
    config: str | None
    as_json: bool


def run(argv: Sequence[str]) -> str | None:
    """The whole output of `buildpilot plan ARGV`, or None: the full CLI must run."""
    try:
        options = _options(argv)
        config = None if options is None else config_file(options.config)
        width = None if options is None or options.as_json else plain_width()
        if options is None or config is None or not (options.as_json or width):
            return None
        snapshot = plancache.load(config)
        if snapshot is None:
            return None
        # The table shows only what the images read; JSON lists every changed file.
        within = () if options.as_json else snapshot["reads"] or ()
        changes = PendingChanges(config.parent, options.since, within=within)
        try:
            return _output(options, snapshot, width, changes)
        finally:
            changes.cancel()  # when the full CLI takes over, it asks again
    except Exception:  # noqa: BLE001 - any doubt at all: the full CLI runs, and reports
        return None


def _output(
    options: _Options, snapshot: dict[str, Any], width: int | None, changes: PendingChanges
) -> str | None:
    # Imported here, not above, while git works (the forecast may need the ignore rules).
    from buildpilot import graph, ignore, planreport, warmpredict  # noqa: F401, PLC0415
    from buildpilot.selection import Action, Forecast, decide  # noqa: PLC0415

    changed = changes.result()
    if str(changed.root.resolve()) != snapshot["top"] or changed.files & set(snapshot["guards"]):
        return None
    deps = snapshot["deps"]
    names = graph.closure(deps, options.images or list(deps))
    order = [name for wave in graph.waves(deps, names) for name in wave]
    prediction = warmpredict.predict(
        snapshot, order, since=options.since, base=changed.base, changed=changed.files
    )
    # workflow.make_forecast, without fingerprints
    decisions = decide(order, deps, prediction=prediction, fingerprints={}, skip_existing=False)
    to_build = [name for name in order if decisions[name].action is Action.BUILD]
    forecast = Forecast(
        order=order,
        waves=graph.waves(deps, to_build),
        prediction=prediction,
        decisions=decisions,
        fingerprints={},
    )
    data = planreport.plan_data(forecast)
    if width is None:
        return planreport.plan_json(data) + "\n"  # as typer.echo prints it
    return planreport.plan_text(data, width=width)


def _options(argv: Sequence[str]) -> _Options | None:
    """`[IMAGES]... --since REF [--json] [-c/--config PATH]`, each option once; None for
    anything else (`--help`, `--fingerprints`, `--`, a value that looks like an option)."""
    images: list[str] = []
    values: dict[str, str] = {}
    flags: list[str] = []
    words = list(argv)
    while words:
        word = words.pop(0)
        name, equals, value = word.partition("=")
        if name in ("--since", "--config", "-c") and not (equals and name == "-c"):
            if not equals:
                value = words.pop(0) if words else ""
            key = "--config" if name == "-c" else name
            if key in values or not value or value.startswith("-"):
                return None
            values[key] = value
        elif word == "--json" and not flags:
            flags.append(word)
        elif word.startswith("-") or not word:
            return None
        else:
            images.append(word)
    if "--since" not in values:
        return None
    return _Options(images, values["--since"], values.get("--config"), as_json=bool(flags))


def plain_width() -> int | None:
    """The width the full path's console gets where it writes no escape codes (stdout is no
    terminal, and nothing tells rich to pretend otherwise; see Terminal.show); else None."""
    env = os.environ
    stdout = sys.stdout
    if "FORCE_COLOR" in env or "TTY_COMPATIBLE" in env or sys.platform == "win32":
        return None
    if stdout is None or stdout.isatty():
        return None
    if not (getattr(stdout, "encoding", None) or "utf-8").lower().startswith("utf"):
        return None
    columns = env.get("COLUMNS")
    if columns is None:
        return PLAIN_WIDTH
    return int(columns) if columns.isdigit() else None


def config_file(given: str | None) -> Path | None:
    """The real path of the config `load_config` would read (config.find_config), if any."""
    if given is not None:
        path: Path | None = Path(given)
    else:
        here = Path.cwd()
        path = next(
            (d / CONFIG_NAME for d in (here, *here.parents) if (d / CONFIG_NAME).is_file()), None
        )
    return path.resolve() if path is not None and path.is_file() else None
