"""What a run does, decided once: the training method, the self-training stage and the ensemble.

``train.method: auto`` (the default), ``dann`` and ``source-only`` are resolved here and nowhere else,
from the settings and the prepared folder, into a :class:`Plan` that is saved in ``last.pt``,
``model.pt`` and ``summary.json``; resume, reload, the console and the report read it back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..adaptation.methods import DEFAULT_METHOD
from ..config import TrainConfig

__all__ = ["Plan", "make_plan", "TARGET_SOUND"]

# method -> the shares of source clips given the target's (background, channel) where the settings say
# None. Off for every method: on FSDD (A, B, C, S) both at 0.5 lifted auto by 2-14 points, on the demo's synthetic
# studio -> field shift they cost it 26-36 points (3 seeds each, docs/results.md, "The target's own sound"):
# there the stage then fails on 7 of 9 (network, stage seed) pairs, against 0 of 9 without them.
TARGET_SOUND = {"auto": (0.0, 0.0, 0.0), "dann": (0.0, 0.0, 0.0), "source-only": (0.0, 0.0, 0.0)}


@dataclass(frozen=True)
class Plan:
    """A run's resolved method.

    Attributes:
        asked: the method asked for (``auto``, ``dann`` or ``source-only``).
        training: what the training loop runs: ``dann`` or ``source-only``.
        stage: the self-training method applied to the selected model on the target pool, or ``none``.
        ensemble: the latent-domain K of the extra DANN networks whose mean target predictions teach the
            stage (empty: no ensemble).
        background, channel, reverb: the shares of source clips given the target's background, a target
            condition's spectrum and a random room's reverberation in training
            (:mod:`audio_dann.adaptation.target_sound`).
    """

    asked: str
    training: str
    stage: str
    ensemble: tuple[int, ...] = ()
    background: float = 0.0
    channel: float = 0.0
    reverb: float = 0.0

    def describe(self) -> str:
        """One line for the console, the summary and the report."""
        train = {"dann": "domain-adversarial (DANN) training", "source-only": "source-only training"}[self.training]
        heard = [
            name for name, share in (("background", self.background), ("recording conditions", self.channel)) if share
        ]
        parts = [f"the target's {' and '.join(heard)}"] if heard else []
        parts += ["room reverberation"] if self.reverb else []
        if parts:
            train += f" with {' and '.join(parts)} on the source clips"
        if self.stage == "none":
            return f"method {self.asked}: {train}, no self-training stage"
        teacher = f", taught by the mean predictions of {len(self.ensemble) + 1} networks" if self.ensemble else ""
        return f"method {self.asked}: {train}, then the {self.stage} self-training stage on the target audio{teacher}"

    def to_dict(self) -> dict:
        return {**asdict(self), "ensemble": list(self.ensemble)}

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        return cls(
            d["asked"],
            d["training"],
            d["stage"],
            tuple(d.get("ensemble", ())),
            d.get("background", 0.0),  # plans saved before the target's sound: none
            d.get("channel", 0.0),
            d.get("reverb", 0.0),
        )


def make_plan(cfg: TrainConfig, has_target: bool, target_domains: int = 1) -> Plan:
    """The plan for the settings ``cfg`` on a prepared folder with (``has_target``) or without unlabelled
    target training clips in ``target_domains`` named domains.

    - ``auto``: source-only training, then the ``latent-bn`` stage (``train.self_training`` may name another);
    - ``dann``: domain-adversarial training, then ``shot-file`` taught by an ensemble of DANN networks with
      other numbers of latent target domains (``train.latent_ensemble``) where the target is one domain,
      else AdaBN;
    - ``source-only``: no stage unless ``train.self_training`` names one.
    Without target clips there is no stage. The target's background and channel and a room's reverberation
    (``train.target_background``, ``train.target_channel``, ``train.target_reverb``) are what the settings
    say, or where they are None the method's default (:data:`TARGET_SOUND`); none without target clips.
    """
    training = "source-only" if cfg.method == "auto" else cfg.method
    if not has_target:
        return Plan(cfg.method, training, "none")
    default = TARGET_SOUND[cfg.method]
    background = default[0] if cfg.target_background is None else cfg.target_background
    channel = default[1] if cfg.target_channel is None else cfg.target_channel
    reverb = default[2] if cfg.target_reverb is None else cfg.target_reverb
    members = tuple(k for k in cfg.latent_ensemble if k != cfg.latent_domains)
    if cfg.self_training != "auto":
        stage = cfg.self_training
    elif cfg.method == "auto":
        stage = DEFAULT_METHOD
    elif training == "dann":
        stage = "shot-file" if members and target_domains == 1 else "adabn"
    else:
        stage = "none"
    ensemble = members if training == "dann" and stage == "shot-file" and target_domains == 1 else ()
    return Plan(cfg.method, training, stage, ensemble, background, channel, reverb)
