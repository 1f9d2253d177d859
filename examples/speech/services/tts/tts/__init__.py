"""Text-to-speech service (a toy: one tone per word, silence between words)."""

from tts.synth import normalize, synthesize

__all__ = ["normalize", "synthesize"]
