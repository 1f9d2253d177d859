"""Turn text into a WAV clip: a tone per word, pitched by the word."""

from __future__ import annotations

import zlib

import idna
from audio import Clip, tone, write_wav

WORD_SECONDS = 0.25
GAP_SECONDS = 0.1


def normalize(text: str) -> list[str]:
    """Split into words; punycode host names (xn--...) are read out in Unicode."""
    return [_readable(word) for word in text.split()]


def _readable(word: str) -> str:
    if "xn--" in word:
        try:
            return idna.decode(word)
        except idna.IDNAError:
            return word
    return word


def synthesize(text: str) -> bytes:
    samples: list[float] = []
    for i, word in enumerate(normalize(text)):
        if i:
            samples.extend(tone(0, GAP_SECONDS).samples)
        pitch = 200 + zlib.crc32(word.encode()) % 600
        samples.extend(tone(pitch, WORD_SECONDS).samples)
    return write_wav(Clip(tuple(samples)))
