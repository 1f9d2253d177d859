"""`python3 gateway.pyz`: serve the gateway on $PORT (8080).

POST /v1/transcribe and /v1/synthesize are forwarded to $STT_URL and $TTS_URL;
GET /healthz answers itself, GET /readyz also asks both services.
`--self-test` checks the routing table against a throwaway upstream and exits.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gateway import ROUTES

TIMEOUT = float(os.environ.get("UPSTREAM_TIMEOUT", "10"))


def upstream(env: str) -> str:
    return os.environ.get(env, "").rstrip("/")


def forward(url: str, body: bytes | None, content_type: str) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:  # noqa: S310
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")
    except (urllib.error.URLError, OSError) as exc:
        return 502, json.dumps({"error": f"upstream {url}: {exc}"}).encode(), "application/json"


class Handler(BaseHTTPRequestHandler):
    def _reply(self, code: int, data: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, b'{"status": "ok", "service": "gateway"}')
        elif self.path == "/readyz":
            status = {
                env: forward(upstream(env) + "/healthz", None, "")[0]
                for env, _ in sorted(set(ROUTES.values()))
            }
            ready = all(code == 200 for code in status.values())
            self._reply(200 if ready else 503, json.dumps(status).encode())
        else:
            self._reply(404, b'{"error": "not found"}')

    def do_POST(self) -> None:
        if self.path not in ROUTES:
            self._reply(404, b'{"error": "not found"}')
            return
        env, path = ROUTES[self.path]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        content_type = self.headers.get("Content-Type", "application/octet-stream")
        self._reply(*forward(upstream(env) + path, body, content_type))


def serve(port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:  # noqa: S104
    return ThreadingHTTPServer((host, port), Handler)


def self_test() -> int:
    """Route a request through a gateway to a fake upstream, both on loopback."""

    class Echo(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            data = json.dumps({"path": self.path, "bytes": len(body)}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    fake = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    for env, _ in ROUTES.values():
        os.environ[env] = f"http://127.0.0.1:{fake.server_address[1]}"
    gw = serve(0, "127.0.0.1")
    threading.Thread(target=gw.serve_forever, daemon=True).start()
    port = gw.server_address[1]
    code, data, _ = forward(f"http://127.0.0.1:{port}/v1/synthesize", b"hi", "text/plain")
    for server in (gw, fake):
        server.shutdown()
        server.server_close()
    print(code, data.decode())
    return 0 if code == 200 and json.loads(data) == {"path": "/synthesize", "bytes": 2} else 1


def main() -> int:
    if "--self-test" in sys.argv[1:]:
        return self_test()
    port = int(os.environ.get("PORT", "8080"))
    print(f"gateway listening on :{port} (stt {upstream('STT_URL')}, tts {upstream('TTS_URL')})")
    serve(port).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
