"""Voice activity detection standing in for a real recognizer."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import six
from audio import frames, read_wav, rms

FRAME_MS = 20
THRESHOLD = 0.05


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str


def transcribe(wav: bytes | str) -> dict[str, object]:
    """Find the voiced segments of a WAV clip; each one is "transcribed" as a word."""
    clip = read_wav(six.ensure_binary(wav, encoding="latin-1"))
    segments: list[Segment] = []
    start = None
    t = 0.0
    for frame in frames(clip, FRAME_MS):
        voiced = rms(frame) >= THRESHOLD
        if voiced and start is None:
            start = t
        elif not voiced and start is not None:
            segments.append(Segment(round(start, 3), round(t, 3), f"word{len(segments) + 1}"))
            start = None
        t += len(frame) / clip.rate
    if start is not None:
        segments.append(Segment(round(start, 3), round(t, 3), f"word{len(segments) + 1}"))
    return {
        "seconds": round(clip.seconds, 3),
        "text": six.ensure_text(" ".join(s.text for s in segments)),
        "segments": [asdict(s) for s in segments],
    }
