"""Run the buildpilot CLI in this process and write its own CPU seconds (user+sys) to a file.

RUSAGE_SELF counts every thread of this process and none of its children, so the figure is
buildpilot's own orchestration cost, apart from the docker/buildx processes it drives.
Usage: python cpu_wrapper.py OUTFILE buildpilot-args...
"""

from __future__ import annotations

import atexit
import resource
import sys
from pathlib import Path

out = Path(sys.argv[1])


def _write() -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.write_text(f"{usage.ru_utime + usage.ru_stime:.6f}\n", encoding="utf-8")


atexit.register(_write)
sys.argv = ["buildpilot", *sys.argv[2:]]
from buildpilot.entry import run  # noqa: E402 - the console script's entry, timed from its import

run()
