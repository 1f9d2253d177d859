"""Speech-to-text service (a toy: it finds the voiced segments of a WAV clip)."""

from stt.transcribe import Segment, transcribe

__all__ = ["Segment", "transcribe"]
