"""How the console script ends: the exit code, the last words and nothing lost, without a
traceback, whatever ended it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from buildpilot.errors import EXIT_INTERRUPTED

# `entry.run` with `main` replaced by BODY, in a process of its own (it ends the process).
SCRIPT = """
import sys
from buildpilot import entry
def main():
    print("on stdout", end="")  # flushed by run, never by the interpreter's teardown
{body}
entry.main = main
entry.run()
"""


@pytest.mark.parametrize(
    ("body", "code", "stderr"),
    [
        ("    pass", 0, ""),
        ("    sys.exit(3)", 3, ""),
        ("    sys.exit('error: it says why')", 1, "error: it says why\n"),
        ("    raise KeyboardInterrupt", EXIT_INTERRUPTED, "error: interrupted\n"),
    ],
    ids=["done", "exit-code", "exit-message", "interrupted"],
)
def test_the_console_script_ends_with_its_code_and_its_output(
    body: str, code: int, stderr: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(body=body)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (code, "on stdout", stderr)
