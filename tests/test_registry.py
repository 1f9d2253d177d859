from __future__ import annotations

import pytest

from buildpilot.registry import DOCKER_HUB, Repository
from buildpilot.tags import tag_name


@pytest.mark.parametrize(
    ("reference", "host", "path", "url"),
    [
        (
            "localhost:5000/speech/stt:1.0",
            "localhost:5000",
            "speech/stt",
            "http://localhost:5000/v2/speech/stt",
        ),
        ("127.0.0.1:5000/a@sha256:ab", "127.0.0.1:5000", "a", "http://127.0.0.1:5000/v2/a"),
        ("ghcr.io/org/app:v2", "ghcr.io", "org/app", "https://ghcr.io/v2/org/app"),
        (
            "python:3.11-slim",
            DOCKER_HUB,
            "library/python",
            f"https://{DOCKER_HUB}/v2/library/python",
        ),
        ("org/app", DOCKER_HUB, "org/app", f"https://{DOCKER_HUB}/v2/org/app"),
    ],
)
def test_repository_parse(reference: str, host: str, path: str, url: str) -> None:
    repository = Repository.parse(reference)
    assert (repository.host, repository.path, repository.base_url) == (host, path, url)


@pytest.mark.parametrize(
    ("reference", "tag"),
    [
        ("localhost:5000/a/b:1.0", "1.0"),
        ("localhost:5000/a/b", None),
        ("x:latest@sha256:00", "latest"),
    ],
)
def test_tag_name(reference: str, tag: str | None) -> None:
    assert tag_name(reference) == tag
