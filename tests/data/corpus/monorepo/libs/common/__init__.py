"""Helpers shared by api and worker."""
