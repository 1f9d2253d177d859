"""Smoke test of the api, run outside any image."""

EXPECTED_STATUS = 200
