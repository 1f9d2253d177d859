"""Which engine socket the docker CLI would use, read as the CLI reads it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from buildpilot.engineapi import DEFAULT_SOCKET, socket_path


def context(config_dir: Path, name: str, host: str) -> None:
    """A docker context `name` with endpoint `host`, stored where `docker context create` puts it."""
    meta = config_dir / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    endpoints = {"docker": {"Host": host, "SkipTLSVerify": False}}
    (meta / "meta.json").write_text(json.dumps({"Name": name, "Endpoints": endpoints}))


def test_docker_host_wins_and_only_a_unix_socket_counts(tmp_path: Path) -> None:
    assert socket_path({"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}) == (
        "/run/user/1000/docker.sock"
    )
    assert socket_path({"DOCKER_HOST": "tcp://10.0.0.5:2376"}) is None
    assert socket_path({"DOCKER_HOST": "ssh://builder@ci"}) is None


def test_default_context_is_the_default_socket(tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path)}
    assert socket_path(env) == DEFAULT_SOCKET  # no config.json at all
    (tmp_path / "config.json").write_text(json.dumps({"auths": {}}))
    assert socket_path(env) == DEFAULT_SOCKET
    assert socket_path({**env, "DOCKER_CONTEXT": "default"}) == DEFAULT_SOCKET


def test_a_named_context_is_read_from_its_meta_file(tmp_path: Path) -> None:
    context(tmp_path, "rootless", "unix:///run/user/1000/docker.sock")
    context(tmp_path, "remote", "tcp://10.0.0.5:2376")
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "rootless"}))
    env = {"DOCKER_CONFIG": str(tmp_path)}
    assert socket_path(env) == "/run/user/1000/docker.sock"
    assert socket_path({**env, "DOCKER_CONTEXT": "remote"}) is None
    assert socket_path({**env, "DOCKER_CONTEXT": "missing"}) is None  # the CLI reports it


def test_an_unreadable_config_leaves_it_to_the_cli(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    assert socket_path({"DOCKER_CONFIG": str(tmp_path)}) is None
