"""The worker entry point."""

QUEUE = "jobs"
