import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
from audio_files import tone, write

from audio_dann.data.audio import load_mono, read_audio, slice_windows
from audio_dann.errors import AudioError
from audio_dann.nn.frontend import LogMel


@pytest.mark.parametrize(
    "sr,n_fft,win,hop,n_mels,fmin,fmax",
    [
        (16000, 512, 400, 160, 64, 20.0, None),
        (8000, 256, 200, 80, 40, 0.0, 3800.0),
        (22050, 1024, 1024, 256, 128, 50.0, 8000.0),
    ],
)
def test_logmel_matches_librosa(sr, n_fft, win, hop, n_mels, fmin, fmax):
    """Tolerance: 1e-3 absolute on log(mel + 1e-3) in float32 (float32 STFT vs librosa's float64 path)."""
    x = tone(440, 1.0, sr) + 0.1 * np.random.default_rng(0).standard_normal(sr).astype(np.float32)
    ours = LogMel(sr, n_fft, win, hop, n_mels, fmin, fmax, 1e-3)(torch.from_numpy(x)[None])[0].numpy()
    ref = np.log(
        librosa.feature.melspectrogram(
            y=x,
            sr=sr,
            n_fft=n_fft,
            hop_length=hop,
            win_length=win,
            n_mels=n_mels,
            fmin=fmin,
            fmax=fmax,
            power=2.0,
            center=True,
            pad_mode="constant",
            htk=False,
            norm="slaney",
        )
        + 1e-3
    )
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_logmel_batch_equals_single():
    m = LogMel()
    x = torch.randn(4, 16000)
    batch = m(x)
    assert batch.shape == (4, 64, 101)
    for i in range(4):
        torch.testing.assert_close(batch[i], m(x[i : i + 1])[0], rtol=1e-5, atol=1e-5)


def test_logmel_equals_torchaudio_melspectrogram():
    """The forward computes |X|^2 itself (faster); it must equal torchaudio's own module."""
    m = LogMel()
    x = torch.randn(3, 12000)
    ref = torch.log(m.mel(x) + m.log_floor)
    torch.testing.assert_close(m(x), ref, rtol=1e-5, atol=1e-5)


def test_mix_to_mono_averages_any_channel_count(tmp_path):
    rng = np.random.default_rng(1)
    for channels in (1, 2, 3, 6):
        data = (0.3 * rng.standard_normal((800, channels))).astype(np.float32)
        path = write(tmp_path / f"c{channels}.wav", data if channels > 1 else data[:, 0], 8000, "FLOAT")
        x, _ = read_audio(path)
        np.testing.assert_allclose(x, data.mean(1), atol=1e-6)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_integer_reads_equal_libsndfile_float_conversion(tmp_path, subtype):
    data = (0.4 * np.random.default_rng(2).standard_normal((4000, 2))).clip(-1, 1).astype(np.float32)
    path = write(tmp_path / "x.wav", data, 16000, subtype)
    ref = sf.read(str(path), dtype="float64", always_2d=True)[0].mean(1)
    x, sr = read_audio(path)
    assert x.dtype == np.float32 and sr == 16000
    np.testing.assert_allclose(x, ref, atol=1e-6)


def test_read_formats_mono_and_resample(tmp_path):
    sr = 44100
    stereo = tone(1000, 0.5, sr, channels=2)
    cases = {
        "pcm24.wav": ("PCM_24", None),
        "float.wav": ("FLOAT", None),
        "clip.flac": ("PCM_16", None),
        "clip.ogg": ("VORBIS", "OGG"),
    }
    for name, (subtype, fmt) in cases.items():
        path = write(tmp_path / name, stereo, sr, subtype, fmt)
        x, rate = read_audio(path)
        assert rate == sr and x.ndim == 1 and len(x) == len(stereo)
        y = load_mono(path, 16000)
        assert abs(len(y) - len(stereo) * 16000 / sr) <= 1
        if subtype != "VORBIS":
            np.testing.assert_allclose(x, stereo.mean(1), atol=1e-3)


def test_bad_audio_errors_name_file_and_reason(tmp_path):
    (tmp_path / "text.wav").write_text("hello, I am not audio")
    (tmp_path / "empty.wav").write_bytes(b"")
    nan = tone(100, 0.1, 8000)
    nan[5] = np.nan
    write(tmp_path / "nan.wav", nan, 8000, "FLOAT")
    write(tmp_path / "zero.wav", np.zeros(0, np.float32), 8000)
    for name, reason in (
        ("text.wav", "cannot decode"),
        ("empty.wav", "cannot decode"),
        ("nan.wav", "NaN"),
        ("zero.wav", "zero-length"),
        ("missing.wav", "not found"),
    ):
        with pytest.raises(AudioError, match=reason) as info:
            read_audio(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)


def test_slice_windows_pad_tile_and_tail():
    x = np.arange(10, dtype=np.float32) + 1
    w, off = slice_windows(x, 25, 5, "zero")
    assert w.shape == (1, 25) and w[0, 10:].sum() == 0 and off.tolist() == [0]
    w, _ = slice_windows(x, 25, 5, "tile")
    assert np.array_equal(w[0, 10:20], x)
    long = np.arange(100, dtype=np.float32)
    w, off = slice_windows(long, 30, 20, "zero")
    assert off.tolist() == [0, 20, 40, 60, 70]  # the last window is aligned to the end
    assert np.array_equal(w[-1], long[70:])
