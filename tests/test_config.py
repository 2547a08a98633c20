import dataclasses

import pytest

from audio_dann.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
)


def test_yaml_round_trip(tmp_path):
    cfg = apply_overrides(Config(), ["train.steps=77", "model.channels=[8,16]", "features.f_max=3000"])
    path = tmp_path / "c.yaml"
    dump_config(cfg, path)
    back = load_config(path)
    assert back == cfg
    assert back.model.channels == (8, 16)
    assert back.train.steps == 77


def test_dotted_overrides_parse_yaml_values():
    cfg = apply_overrides(Config(), ["train.lr=0.05", "train.method=source-only", "train.sync_bn=true"])
    assert cfg.train.lr == 0.05 and cfg.train.method == "source-only" and cfg.train.sync_bn is True
    # an int where a float is expected is accepted and widened
    assert apply_overrides(Config(), ["train.lr=1"]).train.lr == 1.0
    # YAML 1.1 reads 1e-7 (no dot) as a string: still a number
    assert apply_overrides(Config(), ["features.log_floor=1e-7"]).features.log_floor == 1e-7


@pytest.mark.parametrize(
    "override,match",
    [
        ("train.stepz=3", r"train\.stepz: unknown key"),
        ("trian.steps=3", r"trian: unknown section"),
        ("train.steps=abc", r"train\.steps: expected an integer"),
        ("train.lr=fast", r"train\.lr: expected a number"),
        ("train.steps=2.5", r"train\.steps: expected an integer"),
        ("train.sync_bn=3", r"train\.sync_bn: expected true or false"),
        ("train.method=magic", r"train\.method: must be one of"),
        ("features.n_mels=0", r"features\.n_mels: must be > 0"),
        ("features.n_mels=1000", r"features\.n_mels: \d+ of 1000 mel bands between 20 and 8000 Hz hold no FFT bin"),
        ("model.freq_warp=0.6", r"model\.freq_warp: must lie in \[0, 0\.5\)"),
        ("model.mixstyle_p=2", r"model\.mixstyle_p: must lie in \[0, 1\]"),
        ("train.self_training=magic", r"train\.self_training: must be one of"),
        ("train.self_training_threshold=1.5", r"train\.self_training_threshold: must lie in \[0, 1\]"),
        ("train.latent_ensemble=[2,2]", r"train\.latent_ensemble: distinct K"),
        ("train.latent_ensemble=[1]", r"train\.latent_ensemble: distinct K = 0 or >= 2"),
        ("train.ensemble_teacher=mean", r"train\.ensemble_teacher: must be one of"),
        ("steps=3", r"section\.key"),
        ("train.steps", r"section\.key=value"),
    ],
)
def test_config_errors_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(Config(), [override])


def test_unknown_key_in_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  chanels: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"model\.chanels: unknown key"):
        load_config(path)


def test_config_is_frozen_and_dict_is_plain():
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.steps = 5  # type: ignore[misc]
    d = config_to_dict(cfg)
    assert isinstance(d["model"]["channels"], list)
    assert config_from_dict(d) == cfg
