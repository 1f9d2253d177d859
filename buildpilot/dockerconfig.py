"""The docker CLI's config directory and its JSON files, found as the CLI finds them.

`$DOCKER_CONFIG` when set and not empty, else `~/.docker`. Registry credentials
(`registry.py`), the current context (`engineapi.py`) and extra plugin directories
(`buildx_plugin.py`) are all read from there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def config_dir(env: Mapping[str, str]) -> Path:
    """The docker CLI's config directory, under the `HOME` of `env` as the CLI run with
    `env` would find it."""
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return Path(env.get("DOCKER_CONFIG") or home / ".docker")


def config_file(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The CLI's `config.json`; None when there is none. Raises OSError or ValueError when
    it cannot be read or holds no JSON object."""
    return json_object(config_dir(env) / "config.json")


def json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None when there is no such file. Raises OSError or
    ValueError when it cannot be read or holds no JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds no JSON object")
    return data
