"""How buildpilot runs buildx: the plugin itself where that is the same, else `docker buildx`.

`docker buildx ARGS` starts the docker CLI, which runs the plugin once for its metadata and
again for the command: about 45 ms of wall and CPU time before buildx starts, on every build
and probe. buildx also runs standalone (`docker-buildx ARGS`), and then reads the same
environment, config file, contexts and builders as under the CLI. So when the docker command
is the plain `docker` and the `docker` on PATH is a program (not a script, which may do more
than run the plugin), buildpilot runs the plugin that CLI would run: the first
`docker-buildx` in its plugin directories, in its order (the config directory's
`cli-plugins`, the config's `cliPluginsExtraDirs`, the system directories). Anything else
goes through the CLI.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from buildpilot.dockerconfig import config_dir, config_file

PLUGIN = "docker-buildx"
SYSTEM_DIRS = (
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)
_PROGRAM_MAGIC = (b"\x7fELF", b"\xcf\xfa\xed\xfe")  # ELF, 64-bit Mach-O


def command(docker: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    """The argv prefix that runs `docker buildx`: the plugin itself for the plain `docker`
    program, else `[*docker, "buildx"]`."""
    env = os.environ if env is None else env
    if list(docker) == ["docker"] and _is_program(shutil.which("docker", path=env.get("PATH"))):
        plugin = find(env)
        if plugin is not None:
            return [str(plugin)]
    return [*docker, "buildx"]


def find(env: Mapping[str, str]) -> Path | None:
    """The buildx plugin the docker CLI would run, or None."""
    for directory in plugin_dirs(env):
        candidate = Path(directory) / PLUGIN
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def plugin_dirs(env: Mapping[str, str]) -> list[str]:
    """The directories the docker CLI searches for plugins, in its order."""
    try:
        extra = (config_file(env) or {}).get("cliPluginsExtraDirs")
    except (OSError, ValueError):
        extra = None
    extra_dirs = [d for d in extra if isinstance(d, str)] if isinstance(extra, list) else []
    return [str(config_dir(env) / "cli-plugins"), *extra_dirs, *SYSTEM_DIRS]


def _is_program(path: str | None) -> bool:
    if path is None:
        return False
    try:
        with Path(path).open("rb") as file:
            return file.read(4) in _PROGRAM_MAGIC
    except OSError:
        return False
