"""The Docker engine's HTTP API over its local socket, for the two local-store questions of a run.

Is an image under this tag, and which tags does it have (`docker image inspect`); put a tag on
an image (`docker tag`). Each CLI call starts the docker binary: 20-60 ms, more on a busy
2-core runner and several per run. The engine answers the same over its socket in about a
millisecond, with the same JSON (the CLI prints the engine's answer as it is).

Only for the engine the docker CLI itself would talk to over a unix socket: `DOCKER_HOST=
unix://…`, or no DOCKER_HOST and the default context or a context whose endpoint is such a
socket. Anything else (tcp, ssh, TLS, a context that cannot be read) gives no `Engine`, and
the caller runs the CLI, which also reports whatever is wrong in its own words.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from buildpilot.dockerconfig import config_dir, config_file, json_object

DEFAULT_SOCKET = "/var/run/docker.sock"
TIMEOUT = 30.0  # seconds; an engine that stopped answering is an error, not a hang


class EngineApiError(Exception):
    """The socket could not be reached or gave an answer this module does not expect."""


def socket_path(env: Mapping[str, str]) -> str | None:
    """The unix socket the docker CLI would use with `env`, or None when it would use another
    transport (or the context cannot be read)."""
    host = env.get("DOCKER_HOST")
    if host:
        return host.removeprefix("unix://") if host.startswith("unix://") else None
    name = env.get("DOCKER_CONTEXT")
    try:
        if not name:
            config = config_file(env)
            name = str(config.get("currentContext") or "") if config is not None else ""
        if name in ("", "default"):
            return DEFAULT_SOCKET
        digest = hashlib.sha256(name.encode()).hexdigest()
        meta = json_object(config_dir(env) / "contexts" / "meta" / digest / "meta.json") or {}
        endpoint = str(meta["Endpoints"]["docker"]["Host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return endpoint.removeprefix("unix://") if endpoint.startswith("unix://") else None


def image_id(answer: object) -> str | None:
    """The image ID (`sha256:…`) in the engine's answer about one image, if it holds one."""
    found = answer.get("Id") if isinstance(answer, dict) else None
    return found if isinstance(found, str) and found.startswith("sha256:") else None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(TIMEOUT)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Engine:
    """One engine's API at `path`; each call opens its own connection (thread-safe)."""

    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def local(cls, env: Mapping[str, str] | None = None) -> Engine | None:
        """The engine the docker CLI would reach over a unix socket, if it would."""
        path = socket_path(os.environ if env is None else env)
        return None if path is None else cls(path)

    def inspect(self, ref: str) -> dict[str, Any] | None:
        """`docker image inspect REF` as the engine answers it; None when there is no such image."""
        status, body = self._request("GET", f"/images/{quote(ref, safe='/:@')}/json")
        if status == http.client.NOT_FOUND:
            return None
        data = json.loads(body) if status == http.client.OK else None
        if not isinstance(data, dict):
            raise EngineApiError(f"image inspect {ref}: HTTP {status}")
        return data

    def tag(self, source: str, target: str) -> None:
        """`docker tag SOURCE TARGET`."""
        slash = target.rfind("/")
        colon = target.rfind(":")
        repo, tag = (target[:colon], target[colon + 1 :]) if colon > slash else (target, "latest")
        query = urlencode({"repo": repo, "tag": tag})
        status, body = self._request("POST", f"/images/{quote(source, safe='/:@')}/tag?{query}")
        if status != http.client.CREATED:
            message = body.decode("utf-8", errors="replace").strip()
            raise EngineApiError(f"cannot tag {source} as {target}: HTTP {status} {message}")

    def _request(self, method: str, path: str) -> tuple[int, bytes]:
        connection = _UnixConnection(self.path)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise EngineApiError(f"{self.path}: {exc}") from exc
        finally:
            connection.close()
