"""A minimal OCI distribution client: tag a manifest by digest without changing it.

`buildx imagetools create` wraps a single image manifest in a new index (a new digest)
unless buildx has `--prefer-index=false` (0.14+). Putting the very manifest bytes under a
tag, as `crane tag` does, keeps the tag's digest equal to the digest that was built. It
authenticates as the docker CLI does: `auths` in the docker config, credential helpers,
and the registry's Bearer token challenge.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from buildpilot.dockerconfig import config_file
from buildpilot.errors import BuildpilotError
from buildpilot.tags import tag_name

MANIFEST_TYPES = ",".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
_LOOPBACK = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$")
DOCKER_HUB = "registry-1.docker.io"


class RegistryError(BuildpilotError):
    """The registry refused or could not be reached."""

    exit_code = 1

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status, when the registry answered


@dataclass(frozen=True)
class Repository:
    """`host[:port]/path` of an image."""

    host: str
    path: str

    @classmethod
    def parse(cls, reference: str) -> Repository:
        """The repository of `reference` (tag and digest dropped)."""
        name = reference.split("@", 1)[0]
        host, _, rest = name.partition("/")
        if not rest or ("." not in host and ":" not in host and host != "localhost"):
            host, rest = DOCKER_HUB, name if rest else f"library/{name}"
        last = rest.rsplit("/", 1)
        if ":" in last[-1]:
            rest = rest.rsplit(":", 1)[0]
        return cls(host=host, path=rest)

    @property
    def base_url(self) -> str:
        """`http` on loopback (as docker treats it), `https` elsewhere."""
        scheme = "http" if _LOOPBACK.match(self.host) else "https"
        return f"{scheme}://{self.host}/v2/{self.path}"


def tag_digest(
    repository: Repository, digest: str, tags: list[str], *, timeout: float = 30
) -> None:
    """Put the manifest `digest` of `repository` under each of `tags` (bare tag names)."""
    client = _Client(repository, timeout)
    body, media_type = client.get_manifest(digest)
    for tag in tags:
        client.put_manifest(tag, body, media_type)


def manifest_digest(reference: str, *, timeout: float = 30) -> str | None:
    """The digest the registry serves for `host/name:tag`, or None if it has no such tag.

    One HEAD request: a fraction of what `buildx imagetools inspect` costs in process start-up.
    """
    client = _Client(Repository.parse(reference), timeout)
    tag = urllib.parse.quote(tag_name(reference) or "latest")
    url = f"{client.repository.base_url}/manifests/{tag}"
    try:
        _, headers = client.request("HEAD", url, headers={"Accept": MANIFEST_TYPES})
    except RegistryError as exc:
        if exc.status == 404:
            return None
        raise
    digest = headers.get("Docker-Content-Digest", "")
    return digest if digest.startswith("sha256:") else None


class _Client:
    def __init__(self, repository: Repository, timeout: float) -> None:
        self.repository = repository
        self.timeout = timeout
        self.authorization: str | None = _basic_auth(repository.host)

    def get_manifest(self, digest: str) -> tuple[bytes, str]:
        url = f"{self.repository.base_url}/manifests/{digest}"
        body, headers = self.request("GET", url, headers={"Accept": MANIFEST_TYPES})
        return body, headers.get("Content-Type", "application/vnd.oci.image.manifest.v1+json")

    def put_manifest(self, tag: str, body: bytes, media_type: str) -> None:
        url = f"{self.repository.base_url}/manifests/{urllib.parse.quote(tag)}"
        self.request("PUT", url, data=body, headers={"Content-Type": media_type})

    def request(
        self, method: str, url: str, *, data: bytes | None = None, headers: dict[str, str]
    ) -> tuple[bytes, dict[str, str]]:
        for attempt in range(2):
            request = urllib.request.Request(url, data=data, method=method, headers=dict(headers))  # noqa: S310 - URL built from the config's registry
            if self.authorization:
                request.add_header("Authorization", self.authorization)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                    return response.read(), dict(response.headers)
            except urllib.error.HTTPError as exc:
                challenge = exc.headers.get("WWW-Authenticate", "")
                if exc.code == 401 and attempt == 0 and challenge.lower().startswith("bearer"):
                    self.authorization = self._token(challenge)
                    continue
                detail = exc.read().decode("utf-8", errors="replace")[:300]
                raise RegistryError(
                    f"{method} {url}: HTTP {exc.code} {detail}".strip(), status=exc.code
                ) from None
            except OSError as exc:
                raise RegistryError(f"{method} {url}: {exc}") from None
        raise RegistryError(f"{method} {url}: not authorized")

    def _token(self, challenge: str) -> str:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        query = urllib.parse.urlencode(params)
        request = urllib.request.Request(f"{realm}?{query}")  # noqa: S310 - the registry's own realm
        basic = _basic_auth(self.repository.host)
        if basic:
            request.add_header("Authorization", basic)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                data = json.load(response)
        except (OSError, ValueError) as exc:
            raise RegistryError(f"token from {realm}: {exc}") from None
        return f"Bearer {data.get('token') or data.get('access_token', '')}"


def _basic_auth(host: str) -> str | None:
    """`Basic …` from the docker config's `auths` or its credential helper, if any."""
    try:
        config = config_file(os.environ)
    except (OSError, ValueError):
        return None
    if config is None:
        return None
    keys = [host, f"https://{host}", f"http://{host}"]
    if host == DOCKER_HUB:
        keys.append("https://index.docker.io/v1/")
    helper = config.get("credHelpers", {}).get(host) or config.get("credsStore")
    for key in keys:
        entry = config.get("auths", {}).get(key) or {}
        if entry.get("auth"):
            return f"Basic {entry['auth']}"
    if helper:
        return _from_helper(helper, keys[0])
    return None


def _from_helper(helper: str, host: str) -> str | None:
    try:
        done = subprocess.run(
            [f"docker-credential-{helper}", "get"],
            input=host,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        data = json.loads(done.stdout) if done.returncode == 0 else {}
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    if not data.get("Username"):
        return None
    pair = f"{data['Username']}:{data.get('Secret', '')}".encode()
    return "Basic " + base64.b64encode(pair).decode()
