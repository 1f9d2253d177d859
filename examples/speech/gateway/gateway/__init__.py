"""The speech gateway: one public HTTP front for the stt and tts services."""

ROUTES = {
    "/v1/transcribe": ("STT_URL", "/transcribe"),
    "/v1/synthesize": ("TTS_URL", "/synthesize"),
}
