"""The engine's API over its socket answers as the docker CLI does, and the CLI stands in."""

from __future__ import annotations

import json

from buildpilot.backend import DockerBackend
from buildpilot.engineapi import Engine
from tests.engine.conftest import Repo, docker
from tests.engine.test_build import service_repo


def test_the_api_answers_as_the_cli_does(repo: Repo, namespace: str) -> None:
    service_repo(repo, namespace, sleep=0)
    assert repo.buildpilot("build", "base")[0] == 0
    ref = f"{namespace}/base:latest"
    engine = Engine.local()
    assert engine is not None
    cli = json.loads(docker("image", "inspect", ref))[0]
    api = engine.inspect(ref)
    assert api is not None
    assert (api["Id"], sorted(api["RepoTags"])) == (cli["Id"], sorted(cli["RepoTags"]))
    assert engine.inspect(f"{namespace}/base:nosuch") is None

    engine.tag(api["Id"], f"{namespace}/base:extra")
    extra = docker("image", "inspect", "--format", "{{.Id}}", f"{namespace}/base:extra")
    assert extra.strip() == cli["Id"]


def test_the_backend_asks_the_cli_when_the_socket_fails(repo: Repo, namespace: str) -> None:
    service_repo(repo, namespace, sleep=0)
    assert repo.buildpilot("build", "base")[0] == 0
    ref = f"{namespace}/base:latest"
    backend = DockerBackend()
    backend._engine = Engine("/nonexistent/docker.sock")  # type: ignore[misc]
    found = backend.find([ref, f"{namespace}/base:nosuch"], registry=False)
    assert list(found) == [ref]
    backend.tag(found[ref].digest, f"{namespace}/base:again")
    again = docker("image", "inspect", "--format", "{{.Id}}", f"{namespace}/base:again")
    assert again.strip() == found[ref].digest
