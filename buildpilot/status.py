"""The outcome of one image in a run: shared by the run records and the warm reuse path."""

from __future__ import annotations

import enum


class Status(enum.StrEnum):
    """The outcome of one image in a run."""

    SUCCESS = "success"
    FAILED = "failed"
    ABORTED = "aborted"  # not run: a dependency failed, or --fail-fast stopped scheduling
    SKIPPED = "skipped"  # not run: nothing to do
    INTERRUPTED = "interrupted"
