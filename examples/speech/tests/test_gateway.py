from gateway.app import self_test

from gateway import ROUTES


def test_routes() -> None:
    assert ROUTES["/v1/transcribe"] == ("STT_URL", "/transcribe")
    assert ROUTES["/v1/synthesize"] == ("TTS_URL", "/synthesize")


def test_gateway_forwards_to_upstream(monkeypatch) -> None:
    monkeypatch.setenv("STT_URL", "")
    monkeypatch.setenv("TTS_URL", "")
    assert self_test() == 0
