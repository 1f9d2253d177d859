"""Job definitions."""

JOBS = ("resize", "mail")
