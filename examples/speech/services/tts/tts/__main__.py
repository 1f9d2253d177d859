"""`python -m tts`: serve POST /synthesize (text in, WAV out) on $PORT (8000).

`python -m tts --self-test` synthesizes a sentence, checks the clip and exits.
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from audio import read_wav

from tts import normalize, synthesize


class Handler(BaseHTTPRequestHandler):
    def _reply(self, code: int, data: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, b'{"status": "ok", "service": "tts"}', "application/json")
        else:
            self._reply(404, b'{"error": "not found"}', "application/json")

    def do_POST(self) -> None:
        if self.path != "/synthesize":
            self._reply(404, b'{"error": "not found"}', "application/json")
            return
        text = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        self._reply(200, synthesize(text), "audio/wav")


def self_test() -> int:
    text = "hello from xn--bcher-kva.example"
    clip = read_wav(synthesize(text))
    print(json.dumps({"words": normalize(text), "seconds": round(clip.seconds, 3)}))
    return 0 if normalize(text)[-1] == "bücher.example" and clip.seconds > 0.9 else 1


def main(argv: list[str]) -> int:
    if "--self-test" in argv:
        return self_test()
    port = int(os.environ.get("PORT", "8000"))
    print(f"tts listening on :{port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()  # noqa: S104
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
