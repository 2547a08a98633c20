"""The target's background and channel on source clips (audio_dann/adaptation/target_sound.py)."""

from __future__ import annotations

import pytest
import torch

from audio_dann.adaptation.target_sound import build_target_sound, late_reverb, mel_power, signal_and_noise
from audio_dann.config import Config, ConfigError, apply_overrides

FLOOR = 1e-3
MELS, FRAMES = 16, 50


def clips(n: int, signal: float, noise: float, gain: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """Log-mel clips ``log(power + FLOOR)``: a tone-like burst (frames 20-39) of mean mel power ``signal``
    over stationary noise of mean mel power ``noise``; ``gain`` (per band) colours both."""
    g = torch.Generator().manual_seed(seed)
    shape = torch.linspace(0.5, 1.5, MELS)[:, None]  # a spectral tilt, mean 1
    power = noise * shape * torch.empty(n, MELS, FRAMES).exponential_(generator=g)
    power[:, :, 20:40] += signal * shape
    if gain is not None:
        power = power * gain[:, None]
    return torch.log(power + FLOOR)


def snr_db(x: torch.Tensor) -> torch.Tensor:
    s, n = signal_and_noise(mel_power(x, FLOOR), FLOOR)
    return 10 * torch.log10(s / n)


def bank_for(target: torch.Tensor, source: torch.Tensor):
    files = [f"f{i}" for i in range(len(target))]
    bank = build_target_sound(target, files, source, FLOOR, seed=0)
    assert bank is not None
    return bank


def test_nothing_changes_when_neither_is_drawn():
    source, target = clips(20, 1.0, 1e-4), clips(20, 1.0, 0.1, seed=1)
    torch.manual_seed(0)
    assert torch.equal(bank_for(target, source)(source, 0.0, 0.0), source)


def test_background_brings_a_clean_source_to_the_targets_signal_to_noise_ratio():
    source, target = clips(40, 1.0, 1e-5), clips(40, 1.0, 0.1, seed=1)  # target at about 10 dB
    torch.manual_seed(0)
    mixed = bank_for(target, source)(source, 1.0, 0.0)
    assert snr_db(source).median() > 30
    assert abs(float(snr_db(mixed).median() - snr_db(target).median())) < 1.5
    assert float((mixed[:, :, 20:40] - source[:, :, 20:40]).abs().mean()) < 0.2  # the burst itself barely moves


def test_a_source_noisier_than_the_target_gets_no_more_noise():
    source, target = clips(20, 1.0, 0.3), clips(20, 1.0, 1e-3, seed=1)
    torch.manual_seed(0)
    assert torch.allclose(bank_for(target, source)(source, 1.0, 0.0), source, atol=1e-5)


def test_channel_moves_the_source_spectrum_to_the_targets():
    gain = torch.logspace(-1, 1, MELS)  # -10 to +10 dB across the bands
    source, target = clips(30, 1.0, 1e-4), clips(30, 1.0, 1e-4, gain=gain, seed=1)
    torch.manual_seed(0)
    moved = bank_for(target, source)(source, 0.0, 1.0)
    band_source = mel_power(source, FLOOR)[:, :, 20:40].mean((0, 2))
    band_moved = mel_power(moved, FLOOR)[:, :, 20:40].mean((0, 2))
    assert torch.allclose(band_moved / band_source, gain, rtol=0.25)


def test_digital_silence_stays_silent():
    source, target = clips(10, 1.0, 1e-5), clips(10, 1.0, 0.1, seed=1)
    source[:, :, :5] = torch.log(torch.tensor(FLOOR))  # zeros before the recording starts
    torch.manual_seed(0)
    mixed = bank_for(target, source)(source, 1.0, 1.0)
    assert torch.allclose(mixed[:, :, :5], source[:, :, :5])


def test_no_bank_from_a_silent_target():
    silent = torch.full((8, MELS, FRAMES), float(torch.log(torch.tensor(FLOOR))))
    assert build_target_sound(silent, [f"f{i}" for i in range(8)], clips(8, 1.0, 1e-4), FLOOR) is None


@pytest.mark.parametrize("key", ["target_background", "target_channel"])
def test_shares_outside_zero_to_one_are_refused(key):
    with pytest.raises(ConfigError, match=key):
        apply_overrides(Config(), [f"train.{key}=1.5"])


def test_train_puts_the_target_sound_on_source_batches_and_says_so(tmp_path):
    from audio_files import TINY_RUN, class_folders

    from audio_dann.api import prepare, train

    src = class_folders(tmp_path / "src", per_class=4)
    tgt = class_folders(tmp_path / "tgt", per_class=3, shift=1.3)
    cfg = apply_overrides(
        Config(), [*TINY_RUN, "train.target_background=1.0", "train.target_channel=1.0", "train.self_training=none"]
    )
    prepare(src, [tgt], tmp_path / "prep", config=cfg)
    s = train(tmp_path / "prep", tmp_path / "run", config=cfg, method="source-only", device="cpu", report=False)
    assert s["target_sound"]["background"] == 1.0 and s["target_sound"]["target_clips"] > 0


def test_the_plan_takes_the_methods_default_or_what_was_asked_and_none_without_target():
    from dataclasses import replace

    from audio_dann.config import TrainConfig
    from audio_dann.training.plan import TARGET_SOUND, Plan, make_plan

    for method, shares in TARGET_SOUND.items():
        plan = make_plan(TrainConfig(method=method), has_target=True)
        assert (plan.background, plan.channel, plan.reverb) == shares
    asked = make_plan(replace(TrainConfig(), target_background=0.25, target_channel=0.5, target_reverb=0.5), True)
    assert (asked.background, asked.channel, asked.reverb) == (0.25, 0.5, 0.5)
    assert (
        "with the target's background and recording conditions and room reverberation on the source" in asked.describe()
    )
    room = make_plan(replace(TrainConfig(), target_reverb=0.5), True)
    assert "training with room reverberation on the source clips" in room.describe()
    only = make_plan(replace(TrainConfig(method="source-only"), target_channel=0.5), True)
    assert "the target's recording conditions on the source clips" in only.describe()
    assert make_plan(replace(TrainConfig(), target_background=0.5), has_target=False).background == 0.0
    old = {"asked": "auto", "training": "source-only", "stage": "latent-bn", "ensemble": []}  # saved before
    assert Plan.from_dict(old).background == 0.0 and Plan.from_dict(old).reverb == 0.0
    assert Plan.from_dict(asked.to_dict()) == asked


def test_a_band_the_source_lacks_is_not_invented_from_float16_rounding():
    source = clips(20, 1.0, 1e-4)
    source[:, 12:, :] = torch.log(torch.tensor(FLOOR))  # the source's top bands are empty (band-limited)
    source = source.half()  # as prepare stores features
    target = clips(20, 1.0, 1e-4, seed=1).half()
    torch.manual_seed(0)
    moved = bank_for(target, source)(source, 0.0, 1.0)  # the channel alone (a background may fill the band)
    assert float(mel_power(moved[:, 12:, :], FLOOR).max()) == 0.0


def test_event_free_target_clips_lend_no_ratio_below_zero_db():
    target = torch.cat([clips(10, 1.0, 0.1, seed=1), clips(10, 0.0, 0.1, seed=2)])  # half: background only
    bank = bank_for(target, clips(10, 1.0, 1e-4))
    assert float(bank.snr_db.min()) >= 0.0


def test_a_rooms_tail_decays_60_db_over_its_reverberation_time_and_carries_the_drawn_energy():
    power = torch.zeros(2, 3, 200)
    power[:, :, 10] = 1.0  # an impulse in every band at frame 10
    rt60, drr = torch.tensor([0.5, 0.3]), torch.tensor([0.0, 6.0])
    out = late_reverb(power, 0.01, rt60, drr)
    assert torch.equal(out[:, :, :11], power[:, :, :11])  # nothing before the sound, the direct sound kept
    tail = out[:, 0, 11:]
    assert float(tail[0].sum()) == pytest.approx(1.0, rel=1e-4)  # 0 dB: as much energy as the direct sound
    assert float(tail[1].sum()) == pytest.approx(10**-0.6, rel=1e-4)  # 6 dB under it
    # 60 dB down after rt60 (50 frames for the first room, 30 for the second), 30 dB down after half
    assert float(tail[0, 49] / tail[0, 0]) == pytest.approx(10 ** (-6 * 0.49 / 0.5), rel=1e-3)
    assert float(tail[1, 14] / tail[1, 0]) == pytest.approx(10 ** (-6 * 0.14 / 0.3), rel=1e-3)


def test_rooms_are_drawn_only_when_asked_and_after_the_other_draws():
    source, target = clips(20, 1.0, 1e-4), clips(20, 1.0, 0.1, seed=1)
    bank = bank_for(target, source)
    torch.manual_seed(3)
    without = bank(source, 0.5, 0.5)
    torch.manual_seed(3)
    assert torch.equal(bank(source, 0.5, 0.5, 0.0), without)  # no room: the same draws as before rooms
    torch.manual_seed(3)
    with_rooms = bank(source, 0.0, 0.0, 1.0)
    after = mel_power(with_rooms, FLOOR)[:, :, 40:45].mean()  # just after the burst: its tail
    assert float(after) > 5 * float(mel_power(source, FLOOR)[:, :, 40:45].mean())
