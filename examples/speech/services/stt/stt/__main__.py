"""`python -m stt`: serve POST /transcribe (WAV in, JSON out) on $PORT (8000).

`python -m stt --self-test` transcribes a synthetic clip, prints the result and exits.
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from audio import Clip, tone, write_wav

from stt import transcribe


class Handler(BaseHTTPRequestHandler):
    def _reply(self, code: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, {"status": "ok", "service": "stt"})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path != "/transcribe":
            self._reply(404, {"error": "not found"})
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            self._reply(200, transcribe(body))
        except ValueError as exc:
            self._reply(400, {"error": str(exc)})


def self_test() -> int:
    speech = tone(440, 0.3).samples + tone(0, 0.2).samples + tone(220, 0.3).samples
    result = transcribe(write_wav(Clip(speech)))
    print(json.dumps(result))
    return 0 if result["text"] == "word1 word2" else 1


def main(argv: list[str]) -> int:
    if "--self-test" in argv:
        return self_test()
    port = int(os.environ.get("PORT", "8000"))
    print(f"stt listening on :{port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()  # noqa: S104
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
