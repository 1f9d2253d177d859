"""`python -m buildpilot`."""

from __future__ import annotations

from buildpilot.entry import run

run()
