import pytest

pytest.importorskip("six")
pytest.importorskip("idna")

from stt import transcribe
from tts import normalize, synthesize


def test_tts_then_stt_finds_every_word() -> None:
    result = transcribe(synthesize("one two three"))
    assert result["text"] == "word1 word2 word3"


def test_normalize_reads_punycode_hosts_in_unicode() -> None:
    assert normalize("see xn--bcher-kva.example now") == ["see", "bücher.example", "now"]


def test_transcribe_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a WAV file"):
        transcribe(b"not a wav file")
