from audio import Clip, frames, read_wav, rms, tone, write_wav


def test_wav_round_trip() -> None:
    clip = tone(440, 0.1)
    back = read_wav(write_wav(clip))
    assert back.rate == clip.rate
    assert len(back.samples) == len(clip.samples)
    assert max(abs(a - b) for a, b in zip(back.samples, clip.samples, strict=True)) < 1e-3


def test_frames_and_rms() -> None:
    clip = Clip(tone(0, 0.05).samples + tone(300, 0.05).samples)
    levels = [rms(f) for f in frames(clip, 25)]
    assert levels[0] == 0.0
    assert levels[-1] > 0.3
