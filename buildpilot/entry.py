"""The console entry point: a warm `plan` where it can (`warmplan.py`), else the full CLI.

It imports nothing beyond the standard library until it knows which: most of a warm `plan`
is Python starting up.
"""

from __future__ import annotations

import sys

from buildpilot.errors import EXIT_INTERNAL


def main() -> None:
    """`buildpilot ARGS` and `python -m buildpilot ARGS`."""
    argv = sys.argv[1:]
    if argv[:1] == ["plan"]:
        from buildpilot.warmplan import run  # noqa: PLC0415 - only for `plan`

        output = run(argv[1:])
        if output is not None:
            try:
                sys.stdout.write(output)
                sys.stdout.flush()
            except OSError as exc:  # a closed pipe, a full disk: as cli.main reports it
                sys.stderr.write(
                    f"error: internal error: {type(exc).__name__}: {exc}\n"
                    "This is a bug in buildpilot; please report it with the command you ran.\n"
                )
                sys.exit(EXIT_INTERNAL)
            return
    from buildpilot.cli import main as full  # noqa: PLC0415 - typer, pydantic, rich: not above

    full()
