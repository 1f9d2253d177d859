"""Registry faults on loopback: a throwaway registry of our own and an HTTP proxy in front of it
that delays, refuses, fails chosen requests, or goes down mid-build."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


def free_port() -> int:
    """A loopback port nobody listens on (at the time of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, *, timeout: float = 20) -> None:
    """Wait until `url` answers at all (any HTTP status counts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()  # noqa: S310 - http on loopback
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class Registry:
    """A `docker-registry serve` of this test's own, storage in tmp, on a free loopback port."""

    def __init__(self, directory: Path, *, htpasswd: Path | None = None) -> None:
        self.directory = directory
        self.htpasswd = htpasswd
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Registry:
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            self.port = free_port()
            config = {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {
                    "filesystem": {"rootdirectory": str(self.directory / "data")},
                    "delete": {"enabled": True},
                },
                "http": {"addr": self.host},
            }
            if self.htpasswd is not None:
                config["auth"] = {"htpasswd": {"realm": "faults", "path": str(self.htpasswd)}}
            path = self.directory / "registry.yml"
            path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
            log = (self.directory / "registry.log").open("ab")
            self.process = subprocess.Popen(
                ["docker-registry", "serve", str(path)], stdout=log, stderr=log
            )
            log.close()
            try:
                wait_http(f"http://{self.host}/v2/", timeout=10)
            except OSError:
                self.stop()
                continue
            return self
        raise RuntimeError(f"docker-registry did not start; see {self.directory}/registry.log")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@dataclass
class Rule:
    """Answer `status` instead of the registry to requests matching method and path."""

    method: str
    path: str  # a regular expression searched in the request path
    status: int
    times: int = 1_000_000  # how many matching requests get the fault

    def take(self, method: str, path: str) -> bool:
        if self.times > 0 and method == self.method and re.search(self.path, path):
            self.times -= 1
            return True
        return False


@dataclass
class Seen:
    """One request the proxy saw, and what it answered."""

    method: str
    path: str
    status: int
    injected: bool


@dataclass
class ProxyState:
    """What the proxy does now; tests change it while a build runs."""

    upstream: tuple[str, int]
    delay: float = 0.0
    down: bool = False
    rules: list[Rule] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def rule_for(self, method: str, path: str) -> Rule | None:
        with self.lock:
            return next((r for r in self.rules if r.take(method, path)), None)

    def record(self, method: str, path: str, status: int, *, injected: bool) -> None:
        with self.lock:
            self.seen.append(Seen(method, path, status, injected))

    def injected(self) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.injected]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def handle_one_request(self) -> None:
        # BuildKit tries TLS first and falls back to plain HTTP only when the answer starts
        # with "HTTP/", as a Go server's does.
        if self.rfile.peek(1)[:1] == b"\x16":  # type: ignore[attr-defined]
            self.wfile.write(b"HTTP/1.0 400 Bad Request\r\n\r\nthis server speaks HTTP\n")
            self.close_connection = True
            return
        super().handle_one_request()

    def do_GET(self) -> None:
        self._proxy()

    def do_HEAD(self) -> None:
        self._proxy()

    def do_POST(self) -> None:
        self._proxy()

    def do_PUT(self) -> None:
        self._proxy()

    def do_PATCH(self) -> None:
        self._proxy()

    def do_DELETE(self) -> None:
        self._proxy()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _proxy(self) -> None:
        state = self.server.state
        body = self._body()
        if state.down:
            self._hang_up()
            return
        if state.delay:
            time.sleep(state.delay)
        rule = state.rule_for(self.command, self.path)
        if rule is not None:
            state.record(self.command, self.path, rule.status, injected=True)
            self._answer_error(rule.status)
            return
        try:
            status, headers, data = self._forward(body)
        except OSError:
            self._hang_up()
            return
        state.record(self.command, self.path, status, injected=False)
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP | {"content-length", "date", "server"}:
                self.send_header(name, value)
        length = {k.lower(): v for k, v in headers}.get("content-length")
        self.send_header(
            "Content-Length", length if self.command == "HEAD" and length else str(len(data))
        )
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        host, port = self.server.state.upstream
        connection = http.client.HTTPConnection(host, port, timeout=60)
        try:
            headers: dict[str, str] = {}
            for name, value in self.headers.items():  # repeated headers (Accept) joined
                if name.lower() not in HOP_BY_HOP:
                    headers[name] = f"{headers[name]}, {value}" if name in headers else value
            if body or self.command in ("POST", "PUT", "PATCH"):
                headers["Content-Length"] = str(len(body))
            connection.request(self.command, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
            data = response.read()
            return response.status, response.getheaders(), data
        finally:
            connection.close()

    def _answer_error(self, status: int) -> None:
        code = {401: "UNAUTHORIZED", 403: "DENIED"}.get(status, "UNAVAILABLE")
        data = json.dumps(
            {"errors": [{"code": code, "message": f"fault injected: {status}"}]}
        ).encode()
        with contextlib.suppress(OSError):  # the client may hang up first
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def _hang_up(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ProxyState) -> None:
        self.state = state
        super().__init__(("127.0.0.1", 0), _Handler)


class FaultProxy:
    """An HTTP proxy on a loopback port in front of `upstream`; see ProxyState for the faults."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.partition(":")
        self.state = ProxyState(upstream=(host, int(port)))
        self._server = _Server(self.state)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def go_down(self) -> None:
        """Refuse new connections and hang up on open ones, like a registry that stopped."""
        self.state.down = True
        self._server.shutdown()
        self._server.server_close()

    def close(self) -> None:
        if not self.state.down:
            self.go_down()
