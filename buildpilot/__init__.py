"""buildpilot: build many Docker images from one repository, fast, on BuildKit."""

from __future__ import annotations

__version__ = "0.1.0"
CONFIG_NAME = "buildpilot.yaml"  # looked for in the working directory and its parents
