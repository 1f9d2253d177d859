"""The console entry point: a warm `plan` where it can (`warmplan.py`), else the full CLI.

It imports nothing beyond the standard library until it knows which: most of a warm `plan`
is Python starting up.
"""

from __future__ import annotations

import sys

from buildpilot.errors import EXIT_INTERNAL, EXIT_INTERRUPTED


def main() -> None:
    """`buildpilot ARGS` and `python -m buildpilot ARGS`."""
    argv = sys.argv[1:]
    if argv[:1] == ["plan"]:
        try:
            output = _warm_plan(argv[1:])
        except KeyboardInterrupt:  # as the full CLI says it
            sys.stderr.write("error: interrupted\n")
            sys.exit(EXIT_INTERRUPTED)
        if output is not None:
            _write(output)
            return
    from buildpilot.cli import main as full  # noqa: PLC0415 - typer, pydantic, rich: not above

    full()


def _warm_plan(argv: list[str]) -> str | None:
    try:
        from buildpilot.warmplan import run  # noqa: PLC0415 - only for `plan`
    except Exception:  # noqa: BLE001 - whatever is wrong there, the full CLI runs
        return None
    return run(argv)


def _write(output: str) -> None:
    try:
        sys.stdout.write(output)
        sys.stdout.flush()
    except OSError as exc:  # a closed pipe, a full disk: as cli.main reports it
        sys.stderr.write(
            f"error: internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in buildpilot; please report it with the command you ran.\n"
        )
        sys.exit(EXIT_INTERNAL)
