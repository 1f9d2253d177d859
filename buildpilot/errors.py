"""The errors buildpilot reports to users, each with the exit code it ends the run with."""

from __future__ import annotations

from collections.abc import Sequence

EXIT_OK = 0
EXIT_BUILD_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


class BuildpilotError(Exception):
    """Root of every error shown to a user: a message, an optional hint and an exit code."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n{self.hint}"


class ConfigError(BuildpilotError):
    """The config file cannot be read or is invalid; carries one line per problem."""

    def __init__(self, problems: Sequence[str], *, hint: str | None = None) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems), hint=hint)


class CycleError(ConfigError):
    """Images depend on each other in a loop; the message names the loop."""


class UnknownImageError(BuildpilotError):
    """An image named on the command line is not in the config."""


class GitError(BuildpilotError):
    """A git command failed or the repository lacks what was asked of it."""


class EngineError(BuildpilotError):
    """The docker CLI, the engine or buildx is missing, stopped or too old."""


class ReportError(BuildpilotError):
    """A recorded run cannot be found or read."""
