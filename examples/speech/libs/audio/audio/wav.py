"""16-bit mono PCM WAV: read, write, synthesize and measure, with the standard library."""

from __future__ import annotations

import io
import math
import struct
import wave
from collections.abc import Iterator
from dataclasses import dataclass

SAMPLE_RATE = 16_000
_MAX = 32_767


@dataclass(frozen=True)
class Clip:
    """Samples in [-1.0, 1.0] at a sample rate."""

    samples: tuple[float, ...]
    rate: int = SAMPLE_RATE

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def tone(freq: float, seconds: float, rate: int = SAMPLE_RATE, volume: float = 0.5) -> Clip:
    """A sine tone (freq 0 gives silence)."""
    n = int(seconds * rate)
    step = 2 * math.pi * freq / rate
    return Clip(tuple(volume * math.sin(step * i) for i in range(n)), rate)


def write_wav(clip: Clip) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(clip.rate)
        pcm = (max(-_MAX, min(_MAX, round(s * _MAX))) for s in clip.samples)
        out.writeframes(b"".join(struct.pack("<h", v) for v in pcm))
    return buf.getvalue()


def read_wav(data: bytes) -> Clip:
    """Decode a WAV file; ValueError when it is not 16-bit mono PCM WAV."""
    try:
        with wave.open(io.BytesIO(data), "rb") as src:
            if src.getsampwidth() != 2 or src.getnchannels() != 1:
                raise ValueError("only 16-bit mono PCM WAV is supported")
            rate = src.getframerate()
            raw = src.readframes(src.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a WAV file: {exc}") from exc
    values = struct.unpack(f"<{len(raw) // 2}h", raw)
    return Clip(tuple(v / _MAX for v in values), rate)


def frames(clip: Clip, ms: int = 20) -> Iterator[tuple[float, ...]]:
    """Consecutive frames of `ms` milliseconds (the last one may be shorter)."""
    size = max(1, clip.rate * ms // 1000)
    for start in range(0, len(clip.samples), size):
        yield clip.samples[start : start + size]


def rms(samples: tuple[float, ...]) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0
