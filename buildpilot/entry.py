"""The console entry point: a warm `plan` (`warmplan.py`) or a warm reusing `build`
(`warmbuild.py`) where it can, else the full CLI.

It imports nothing beyond the standard library until it knows which: most of a warm run is
Python starting up. Before the full CLI of a `build` or `release` it starts the engine probe
(`prestart`), which then answers while the CLI loads. A warm `build` that declines leaves
what it asked the engine or the registry to the full CLI (`handoff`), and has started the
builds it could (`prebuild`). The console script (`run`) ends the process without the
interpreter's teardown, once exit handlers have run and output is flushed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys

from buildpilot import handoff, prestart
from buildpilot.errors import EXIT_INTERNAL, EXIT_INTERRUPTED

FORCED = frozenset({"--no-skip-existing", "--no-cache"})  # a build that reuses nothing


def main() -> None:
    """`buildpilot ARGS` and `python -m buildpilot ARGS`."""
    argv = sys.argv[1:]
    if argv[:1] == ["plan"] or (argv[:1] == ["build"] and not FORCED.intersection(argv)):
        output = _warm(argv[0], argv[1:])
        if output is not None:
            _write(output)
            return
    prestart.start(prestart.probe_commands(argv))  # the engine probe, while the rest loads
    from buildpilot.cli import main as full  # noqa: PLC0415 - typer, pydantic, rich: not above

    full()


def run() -> None:
    """The console script and `python -m buildpilot`: `main`, then exit at once. Tearing
    down an interpreter that loaded typer, pydantic and rich takes ~80 ms; nothing of
    buildpilot's is left to it (files are closed, thread pools shut down)."""
    try:
        main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:  # on the warm path or while the full CLI loads: as it says it
        sys.stderr.write("error: interrupted\n")
        code = EXIT_INTERRUPTED
    atexit._run_exitfuncs()  # what a normal exit runs first: ends processes nobody took
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"), as the interpreter reports it
        sys.stderr.write(f"{code}\n")
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing can reach it
            stream.flush()
    os._exit(code)


def _warm(command: str, argv: list[str]) -> str | None:
    try:
        if command == "plan":
            from buildpilot import warmplan  # noqa: PLC0415 - only for `plan`

            return warmplan.run(argv)
        from buildpilot import warmbuild  # noqa: PLC0415 - only for a reusing `build`
    except Exception:  # noqa: BLE001 - whatever is wrong there, the full CLI runs
        return None
    handoff.arm()  # what a declining warm build asked, the full CLI need not ask again
    return warmbuild.run(argv, os.environ)


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
