"""`python -m buildpilot`."""

from __future__ import annotations

from buildpilot.cli import main

main()
