"""What `buildpilot doctor` can be asked for: a severity threshold and an output format.

Their own module, free of the checks, because the CLI declares its options with them and
every command, `plan` included, imports the CLI.
"""

from __future__ import annotations

import enum


class Severity(enum.StrEnum):
    """How bad a finding is; ordered info < warning < error."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """0 for info, 1 for warning, 2 for error."""
        return (Severity.INFO, Severity.WARNING, Severity.ERROR).index(self)

    def at_least(self, threshold: Severity) -> bool:
        """Whether this severity is `threshold` or worse."""
        return self.rank >= threshold.rank


class OutputFormat(enum.StrEnum):
    """How `buildpilot doctor` shows its findings."""

    TABLE = "table"
    JSON = "json"
    GITHUB = "github"
    GITLAB = "gitlab"
