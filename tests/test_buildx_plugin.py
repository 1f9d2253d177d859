"""buildx run as the plugin itself only where the docker CLI would run that very plugin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from buildpilot import buildx_plugin


def program(path: Path, magic: bytes = b"\x7fELF") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(magic + b"\0" * 60)
    path.chmod(0o755)
    return path


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A PATH with a `docker` program, a docker config dir, and system dirs of the test's own."""
    program(tmp_path / "bin" / "docker")
    system = [str(tmp_path / "system" / str(i)) for i in range(2)]
    monkeypatch.setattr(buildx_plugin, "SYSTEM_DIRS", tuple(system))
    return {"PATH": str(tmp_path / "bin"), "DOCKER_CONFIG": str(tmp_path / "config")}


def test_the_plugin_is_looked_up_in_the_clis_order(tmp_path: Path, env: dict[str, str]) -> None:
    assert buildx_plugin.command(["docker"], env) == ["docker", "buildx"]  # none installed

    system = program(tmp_path / "system" / "1" / "docker-buildx")
    assert buildx_plugin.command(["docker"], env) == [str(system)]
    first_system = program(tmp_path / "system" / "0" / "docker-buildx")
    assert buildx_plugin.command(["docker"], env) == [str(first_system)]

    extra = program(tmp_path / "extra" / "docker-buildx")
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"cliPluginsExtraDirs": [str(extra.parent)]}))
    assert buildx_plugin.command(["docker"], env) == [str(extra)]

    own = program(config / "cli-plugins" / "docker-buildx")
    assert buildx_plugin.command(["docker"], env) == [str(own)]


def test_without_docker_config_the_plugins_of_that_environments_home_come_first(
    tmp_path: Path, env: dict[str, str]
) -> None:
    program(tmp_path / "system" / "0" / "docker-buildx")
    own = program(tmp_path / "home" / ".docker" / "cli-plugins" / "docker-buildx")
    env = {"PATH": env["PATH"], "HOME": str(tmp_path / "home")}  # not this process's HOME
    assert buildx_plugin.command(["docker"], env) == [str(own)]


def test_anything_but_the_plain_docker_program_goes_through_the_cli(
    tmp_path: Path, env: dict[str, str]
) -> None:
    program(tmp_path / "system" / "0" / "docker-buildx")
    flags = ["docker", "--context", "remote"]
    assert buildx_plugin.command(flags, env) == [*flags, "buildx"]  # the CLI's global flags
    assert buildx_plugin.command(["/opt/docker"], env) == ["/opt/docker", "buildx"]

    program(tmp_path / "bin" / "docker", magic=b"#!/b")  # a wrapper script on PATH
    assert buildx_plugin.command(["docker"], env) == ["docker", "buildx"]
    assert buildx_plugin.command(["docker"], {**env, "PATH": str(tmp_path / "nothing")}) == [
        "docker",
        "buildx",
    ]


def test_a_plugin_that_cannot_run_is_skipped(tmp_path: Path, env: dict[str, str]) -> None:
    unusable = program(tmp_path / "system" / "0" / "docker-buildx")
    unusable.chmod(0o644)
    usable = program(tmp_path / "system" / "1" / "docker-buildx")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.json").write_text("{not json")  # the CLI would complain
    assert buildx_plugin.command(["docker"], env) == [str(usable)]
