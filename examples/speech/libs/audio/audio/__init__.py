"""Tiny shared audio helpers of the speech services: 16-bit mono PCM WAV in and out."""

from audio.wav import Clip, frames, read_wav, rms, tone, write_wav

__all__ = ["Clip", "frames", "read_wav", "rms", "tone", "write_wav"]
