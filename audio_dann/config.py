"""Frozen configuration dataclasses, YAML in and out, dotted overrides.

Every value is plain YAML (numbers, strings, booleans, lists). Unknown keys and
wrong types are errors that name the key, e.g. ``train.stepz: unknown key``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

__all__ = [
    "ConfigError",
    "FeatureConfig",
    "ModelConfig",
    "TrainConfig",
    "DataConfig",
    "Config",
    "load_config",
    "dump_config",
    "config_from_dict",
    "config_to_dict",
    "apply_overrides",
]


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes log-mel "images" (fixed at ``prepare`` time)."""

    sample_rate: int = 16000
    clip_seconds: float = 1.0  # every clip is this long
    hop_seconds: float = 0.5  # hop between clips cut from one long file
    pad_mode: str = "tile"  # short files: "tile" (repeat) or "zero" (pad with silence)
    n_fft: int = 512
    win_seconds: float = 0.025
    frame_hop_seconds: float = 0.010
    n_mels: int = 64
    f_min: float = 20.0
    f_max: float | None = None  # None: sample_rate / 2
    log_floor: float = 1e-3  # log(mel + floor); a floor well above 0 ignores the noise floor

    def validate(self) -> None:
        _positive(
            self,
            "sample_rate",
            "clip_seconds",
            "hop_seconds",
            "n_fft",
            "win_seconds",
            "frame_hop_seconds",
            "n_mels",
            "log_floor",
        )
        _choice(self, "pad_mode", ("tile", "zero"))
        if self.win_length > self.n_fft:
            raise ConfigError(f"features.win_seconds: window of {self.win_length} samples exceeds n_fft={self.n_fft}")
        top = self.sample_rate / 2 if self.f_max is None else self.f_max
        if not (0 <= self.f_min < top <= self.sample_rate / 2):
            raise ConfigError(
                f"features.f_max: need 0 <= f_min < f_max <= sample_rate/2, got f_min={self.f_min} f_max={top}"
            )
        empty = empty_mel_bands(self.sample_rate, self.n_fft, self.n_mels, self.f_min, top)
        if empty:
            raise ConfigError(
                f"features.n_mels: {empty} of {self.n_mels} mel bands between {self.f_min:g} and "
                f"{top:g} Hz hold no FFT bin (n_fft={self.n_fft}); use fewer bands or a larger n_fft"
            )

    @property
    def win_length(self) -> int:
        return int(round(self.win_seconds * self.sample_rate))

    @property
    def hop_length(self) -> int:
        return int(round(self.frame_hop_seconds * self.sample_rate))

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    @property
    def n_frames(self) -> int:
        return self.clip_samples // self.hop_length + 1


def _hz_to_mel(f: float) -> float:
    """Slaney's mel scale (linear to 1 kHz, logarithmic above), as the frontend's filterbank."""
    return f * 3 / 200 if f < 1000 else 15 + math.log(f / 1000) / (math.log(6.4) / 27)


def _mel_to_hz(m: float) -> float:
    return m * 200 / 3 if m < 15 else 1000 * math.exp((m - 15) * math.log(6.4) / 27)


def empty_mel_bands(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> int:
    """How many triangular mel bands hold no FFT bin strictly inside them (all-zero filters)."""
    n_freqs = n_fft // 2 + 1
    bins = [i * (sample_rate // 2) / (n_freqs - 1) for i in range(n_freqs)]
    lo, hi = _hz_to_mel(f_min), _hz_to_mel(f_max)
    edges = [_mel_to_hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    return sum(not any(edges[i] < f < edges[i + 2] for f in bins) for i in range(n_mels))


@dataclass(frozen=True)
class ModelConfig:
    """The network: backbone, heads and the input normalisation inside the model."""

    backbone: str = "cnn"
    channels: tuple[int, ...] = (16, 32, 64, 128)
    embedding_dim: int = 128
    dropout: float = 0.2
    domain_hidden: int = 128
    domain_layers: int = 2  # hidden layers of the domain head (0: logistic regression)
    domain_dropout: float = 0.5
    domain_condition: str = "none"  # "cdan": the domain head sees embedding x class probabilities (CDAN)
    input_norm: str = (
        "clip_mean"  # "global": per-mel standardisation; "clip_mean": then remove each clip's per-mel mean
    )
    freq_masks: int = 0  # SpecAugment in training (source and target alike): masks over mel bands
    freq_mask_width: int = 7  #   up to this many bands each
    time_masks: int = 0  #   and masks over frames
    time_mask_width: int = 10  #   up to this many frames each
    freq_warp: float = 0.0  # training: stretch the mel axis by up to +-this (0.1: factors 0.9-1.1)
    time_warp: float = 0.0  #   and the time axis by up to +-this (speed perturbation)
    mixstyle_p: float = 0.0  # training: Freq-MixStyle on a batch with this probability
    mixstyle_alpha: float = 0.3  #   Beta(alpha, alpha) mixing weights

    def validate(self) -> None:
        _positive(self, "embedding_dim", "domain_hidden", "freq_mask_width", "time_mask_width")
        _choice(self, "input_norm", ("global", "clip_mean"))
        _choice(self, "domain_condition", ("none", "cdan"))
        for name in ("freq_masks", "time_masks", "domain_layers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model.{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("freq_warp", "time_warp"):
            if not 0.0 <= getattr(self, name) < 0.5:
                raise ConfigError(f"model.{name}: must lie in [0, 0.5), got {getattr(self, name)}")
        if not 0.0 <= self.mixstyle_p <= 1.0:
            raise ConfigError(f"model.mixstyle_p: must lie in [0, 1], got {self.mixstyle_p}")
        _positive(self, "mixstyle_alpha")
        if not self.channels or any(c <= 0 for c in self.channels):
            raise ConfigError(f"model.channels: need positive channel counts, got {list(self.channels)}")
        for name in ("dropout", "domain_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"model.{name}: must lie in [0, 1), got {getattr(self, name)}")


@dataclass(frozen=True)
class TrainConfig:
    """The training loop. Defaults follow the paper where it speaks."""

    method: str = "auto"  # auto | dann | source-only, resolved into a plan by training/plan.py:
    #   auto: source-only training, then (with target audio) the latent-bn stage;
    #   dann: domain-adversarial; source-only: the pure baseline (no stage)
    steps: int = 1500
    batch_size: int = 32  # per domain and per step: 32 source + 32 target
    optimizer: str = "sgd"  # "sgd" (momentum 0.9, paper) or "adamw"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_alpha: float = 10.0  # lr_p = lr / (1 + alpha p) ** beta
    lr_beta: float = 0.75
    domain_weight: float = 1.0  # weight of the domain loss; 0 keeps only target batch-norm statistics
    lambda_max: float = 1.0  # lambda_p = lambda_max * (2 / (1 + exp(-gamma p)) - 1)
    lambda_gamma: float = 10.0
    domain_lr_mult: float = 1.0  # the domain head's learning rate relative to lr
    entropy_weight: float = 0.1  # target entropy minimisation (0: the paper's DANN)
    eval_every: int = 100
    amp: str = "auto"  # "auto" (bf16 on CUDA), "off", "bf16", "fp16"
    select: str = "source-val"  # picks model.pt: source-val | dev | snd | rv (never target labels)
    rv_steps: int = 25  # reverse-validation training steps per evaluation (0: skip rv)
    selection_clips: int = 1000  # at most this many source / target clips per criterion
    sync_bn: bool = False  # DDP only: SyncBatchNorm (statistics over the global batch)
    latent_domains: int = 0  # a target with no domain names: 0 one domain, K>1 K clusters, -1 K by silhouette
    #   (-1 measured worse than 0 on FSDD: experiments/fsdd_speakers/NOTES.md)
    latent_ensemble: tuple[int, ...] = (2, 3, 4)  # DANN, one unnamed target domain: one more network per K
    #   listed (0 = one domain; latent_domains' own K skipped), trained in
    #   RUN/members/; their mean target predictions with this run's are the
    #   pseudo-labels the shipped model is self-trained on (4 trainings by
    #   default; [] = one network, the previous default)
    ensemble_teacher: str = "latent-bn"  # each network's teacher probabilities: latent-bn (batch-norm statistics
    #   per latent target condition, K = 1-4, averaged) or adabn (the pool's)
    self_training: str = "auto"  # after training, on the target pool: none | adabn | tent | shot |
    #   shot-file | latent-bn;
    #   auto: decided by the method (training/plan.py)
    self_training_epochs: int = 10
    self_training_threshold: float = 0.0  # shot-file: pseudo-labels only where the smoothed probability reaches this
    self_training_max_clips: int = 20000  # the trained stages hold the pool in memory: at most this many target
    #   clips (adaptation.target.choose_windows, the rule of `adapt --max-clips`); AdaBN reads all
    self_training_guard: bool = True  # undo the stage when its estimate falls below the lower bound before (as adapt)
    diversity_target: str = "uniform"  # the stage's diversity term pulls the target predictions towards:
    #   uniform (equal class shares, SHOT's) | estimated (the target's class shares estimated without labels,
    #   adaptation/label_shift.py, from the model before the stage)
    target_background: float | None = None  # training: this share of source clips get a target clip's
    #   background (its frames within 3 dB of its noise floor) at that clip's signal-to-noise ratio
    #   (adaptation/target_sound.py); None: the method's default (training/plan.py: 0 for every method
    #   today; 0.5 is what was measured)
    target_channel: float | None = None  # training: this share of source clips get the long-term spectrum
    #   (level and colour) of the target recording condition the background comes from; None as above
    target_reverb: float | None = None  # training: this share of source clips get late reverberation of a
    #   random room (reverberation time 0.2-0.8 s, direct-to-reverberant ratio -5 to +5 dB); None as above
    class_weights: str = "none"  # source loss weights: none | balanced (each class weighted by the inverse
    #   of its share of the source training clips, so a rare class counts as much as a common one)
    seed: int = 0

    def validate(self) -> None:
        _choice(self, "method", ("auto", "dann", "source-only"))
        _choice(self, "optimizer", ("sgd", "adamw"))
        _choice(self, "amp", ("auto", "off", "bf16", "fp16"))
        _choice(self, "select", ("source-val", "dev", "snd", "rv"))
        _choice(self, "ensemble_teacher", ("latent-bn", "adabn"))
        _choice(self, "class_weights", ("none", "balanced"))
        _choice(self, "diversity_target", ("uniform", "estimated"))
        _choice(self, "self_training", ("auto", "none", "adabn", "tent", "shot", "shot-file", "latent-bn"))
        if self.latent_domains < -1 or self.latent_domains == 1:
            raise ConfigError(f"train.latent_domains: 0 (off), -1 (choose K) or K >= 2, got {self.latent_domains}")
        if any(k < 0 or k == 1 for k in self.latent_ensemble) or len(set(self.latent_ensemble)) != len(
            self.latent_ensemble
        ):
            raise ConfigError(f"train.latent_ensemble: distinct K = 0 or >= 2, got {list(self.latent_ensemble)}")
        if not 0.0 <= self.self_training_threshold <= 1.0:
            raise ConfigError(f"train.self_training_threshold: must lie in [0, 1], got {self.self_training_threshold}")
        for name in ("target_background", "target_channel", "target_reverb"):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"train.{name}: must lie in [0, 1], got {getattr(self, name)}")
        if self.self_training_max_clips < 1:
            raise ConfigError(f"train.self_training_max_clips: must be >= 1, got {self.self_training_max_clips}")
        if self.self_training_epochs < 1:
            raise ConfigError(f"train.self_training_epochs: must be >= 1, got {self.self_training_epochs}")
        if self.select == "rv" and self.rv_steps <= 0:
            raise ConfigError("train.rv_steps: must be > 0 when train.select is rv")
        _positive(self, "steps", "batch_size", "lr", "eval_every")
        for name in ("domain_weight", "lambda_max", "entropy_weight", "weight_decay", "domain_lr_mult"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name}: must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class DataConfig:
    """How ``prepare`` splits and reads the data."""

    val_fraction: float = 0.1
    seed: int = 0
    workers: int | None = None  # decoding processes; None: one per core
    batch_size: int = 64  # clips per frontend batch in prepare

    def validate(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction: must lie in [0, 1), got {self.val_fraction}")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"data.workers: must be >= 0, got {self.workers}")
        _positive(self, "batch_size")


@dataclass(frozen=True)
class Config:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def validate(self) -> Config:
        for f in fields(self):
            getattr(self, f.name).validate()
        self._check_clip_fits_the_network()
        return self

    def _check_clip_fits_the_network(self) -> None:
        """A clip must survive the CNN's pooling steps (each halves mel bands and frames)."""
        if self.model.backbone != "cnn":
            return
        need = 2 ** (len(self.model.channels) - 1)
        f = self.features
        if f.n_frames < need:
            least = (need - 1) * f.hop_length / f.sample_rate
            raise ConfigError(
                f"features.clip_seconds: {f.clip_seconds} s gives {f.n_frames} frame(s); the model's "
                f"{need.bit_length() - 1} pooling steps need at least {need} (clip_seconds >= {least:.3f})"
            )
        if f.n_mels < need:
            raise ConfigError(
                f"features.n_mels: {f.n_mels} bands; the model's {need.bit_length() - 1} pooling steps "
                f"need at least {need}"
            )


def _section_name(obj: Any) -> str:
    return {FeatureConfig: "features", ModelConfig: "model", TrainConfig: "train", DataConfig: "data"}[type(obj)]


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        if not getattr(obj, name) > 0:
            raise ConfigError(f"{_section_name(obj)}.{name}: must be > 0, got {getattr(obj, name)}")


def _choice(obj: Any, name: str, options: Iterable[str]) -> None:
    options = tuple(options)
    if getattr(obj, name) not in options:
        raise ConfigError(
            f"{_section_name(obj)}.{name}: must be one of {', '.join(options)}; got {getattr(obj, name)!r}"
        )


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the type hint ``hint``; ints widen to floats, lists to tuples."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner[0])
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-7 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {hint}")  # pragma: no cover


def _section_from_dict(cls: type, prefix: str, values: Mapping[str, Any], base: Any = None) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{prefix}: expected a mapping of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{prefix}.{key}: unknown key (known: {', '.join(sorted(known))})")
        kwargs[key] = _coerce(f"{prefix}.{key}", value, hints[key])
    return replace(base, **kwargs) if base is not None else cls(**kwargs)


def config_from_dict(values: Mapping[str, Any] | None, base: Config | None = None) -> Config:
    """Build (and validate) a :class:`Config` from nested plain values, on top of ``base``."""
    base = base or Config()
    values = values or {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(values).__name__}")
    sections = {f.name: f for f in fields(Config)}
    updated = {}
    for name, sub in values.items():
        if name not in sections:
            raise ConfigError(f"{name}: unknown section (known: {', '.join(sections)})")
        current = getattr(base, name)
        updated[name] = _section_from_dict(type(current), name, sub or {}, current)
    return replace(base, **updated).validate()


def config_to_dict(config: Config) -> dict[str, dict[str, Any]]:
    """Plain nested dict (tuples as lists) for YAML and checkpoints."""
    out = {}
    for f in fields(config):
        section = dataclasses.asdict(getattr(config, f.name))
        out[f.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in section.items()}
    return out


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (), base: Config | None = None) -> Config:
    """Read a YAML file (optional) and apply ``section.key=value`` overrides."""
    config = base or Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            values = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        except (UnicodeDecodeError, OSError) as exc:
            raise ConfigError(f"{path}: cannot be read as a YAML text file ({type(exc).__name__})") from None
        try:
            config = config_from_dict(values, config)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return apply_overrides(config, overrides)


def named_settings(path: str | Path | None = None, overrides: Iterable[str] = ()) -> list[str]:
    """The ``section.key`` names a YAML file and overrides set (valid input assumed: :func:`load_config`
    has read them), e.g. for ``train --resume`` to compare with the saved run even where a value
    equals the default."""
    names = []
    if path is not None:
        values = yaml.safe_load(Path(path).read_text()) or {}
        names += [f"{sec}.{key}" for sec, body in values.items() if isinstance(body, dict) for key in body]
    return names + [item.split("=", 1)[0].strip() for item in overrides]


def apply_overrides(config: Config, overrides: Iterable[str]) -> Config:
    """Apply dotted overrides such as ``train.steps=3000`` (values parsed as YAML)."""
    nested: dict[str, dict[str, Any]] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{item}: an override must look like section.key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2:
            raise ConfigError(f"{key}: an override key must look like section.key")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        nested.setdefault(parts[0], {})[parts[1]] = value
    return config_from_dict(nested, config) if nested else config.validate()


def dump_config(config: Config, path: str | Path | None = None) -> str:
    """YAML text of ``config``; written atomically to ``path`` when given."""
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    if path is not None:
        from .files import atomic_write_text

        atomic_write_text(Path(path), text)
    return text
