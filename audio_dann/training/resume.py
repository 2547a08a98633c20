"""A run's configuration and where it starts: fresh from the settings asked, or from ``last.pt``
(``--resume``), whose saved settings and plan win; asked settings that differ are refused."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config import Config, config_to_dict
from ..data.store import PreparedData
from ..errors import BundleError, ConfigError, RunError
from ..nn.classifier import AudioClassifier, load_checkpoint
from .loop import TrainState
from .plan import Plan, make_plan

__all__ = ["Start", "fresh_start", "resumed_start", "resolve_config", "asked_settings"]


@dataclass
class Start:
    """Where a run starts: its configuration and plan, the model and, when resumed, the loop and optimizer state."""

    config: Config
    plan: Plan
    model: AudioClassifier | None = None
    state: TrainState | None = None
    optimizer_state: dict | None = None


def resolve_config(config: Config, prep: PreparedData, method: str | None, seed: int | None) -> Config:
    """The run's configuration: features and data settings always from the prepared folder."""
    if config.features != Config().features and config.features != prep.config.features:
        raise ConfigError(
            f"{prep.root}: features.* settings differ from those the folder was prepared with; "
            "they are fixed at prepare time (run `audio-dann prepare` with them)"
        )
    train_cfg = config.train
    if method is not None:
        train_cfg = replace(train_cfg, method=method)
    if seed is not None:
        train_cfg = replace(train_cfg, seed=seed)
    return replace(config, features=prep.config.features, data=prep.config.data, train=train_cfg).validate()


def fresh_start(out: Path, config: Config, prep: PreparedData) -> Start:
    """A new run in ``out`` (refused where ``out`` already holds one) with the plan for ``prep``."""
    if (out / "summary.json").exists() or (out / "last.pt").exists():
        raise RunError(f"{out}: run folder already holds a run; use --resume to continue it or choose a new --out")
    plan = make_plan(config.train, bool(len(prep.rows("train", source=False))), len(prep.domains) - 1)
    return Start(config, plan)


def resumed_start(out: Path, asked: dict[str, Any], prep: PreparedData) -> Start:
    """The run in ``out`` as ``last.pt`` saved it: its configuration, plan, weights and loop state. Asked
    settings that differ from the saved ones, and a prepared folder other than the one the run was
    trained on, are refused."""
    last = out / "last.pt"
    if not last.is_file():
        raise RunError(f"{out}: nothing to resume (no last.pt); drop --resume to start a new run")
    model, bundle = load_checkpoint(last)
    if "loop_state" not in bundle:
        raise BundleError(f"{last}: not a resumable checkpoint (no loop_state)")
    config = model.config
    _check_resume_settings(out, asked, config)
    _check_same_data(out, bundle, prep, model)
    plan = (
        Plan.from_dict(bundle["plan"])
        if "plan" in bundle
        # runs saved before the plan: their config
        else make_plan(config.train, bool(len(prep.rows("train", source=False))), len(prep.domains) - 1)
    )
    ls = bundle["loop_state"]
    state = TrainState(step=int(ls["step"]), history=list(ls["history"]), best=ls["best"], rng=ls["rng"])
    return Start(config, plan, model.train(), state, bundle["optimizer_state"])


def _check_same_data(out: Path, bundle: dict, prep: PreparedData, model: AudioClassifier) -> None:
    """Refuse to continue a run on another prepared folder than the one it was begun with."""
    begun = bundle.get("prepared")
    now = [str(Path(r).resolve()) for r in (prep.roots or [prep.root])]
    if begun is not None and list(begun) != now:
        raise RunError(
            f"{out}: the run was begun on {', '.join(begun)}, not {', '.join(now)}; resume it with the "
            "prepared folder it was trained on, or start a new --out"
        )
    if model.classes != prep.classes:
        raise RunError(
            f"{out}: the run's classes {model.classes} differ from {prep.root}'s {prep.classes}; resume it "
            "with the prepared folder it was trained on, or start a new --out"
        )


def asked_settings(
    config: Config | None, method: str | None, seed: int | None, named: Iterable[str] = ()
) -> dict[str, Any]:
    """The model/train settings a caller asked for: those differing from the defaults, those ``named``
    (``section.key``, set explicitly, maybe to the default), and method/seed."""
    asked: dict[str, Any] = {}
    if config is not None:
        ours, default = config_to_dict(config), config_to_dict(Config())
        named = {tuple(n.split(".", 1)) for n in named if "." in n}
        asked = {
            f"{sec}.{k}": v
            for sec in ("model", "train")
            for k, v in ours[sec].items()
            if v != default[sec][k] or (sec, k) in named
        }
    if method is not None:
        asked["train.method"] = method
    if seed is not None:
        asked["train.seed"] = seed
    return asked


def _check_resume_settings(out: Path, asked: dict[str, Any], saved: Config) -> None:
    """``--resume`` continues with the saved configuration: refuse asked settings that differ from it
    rather than ignore them."""
    have = config_to_dict(saved)
    diffs = [
        f"{key} (saved {have[key.split('.', 1)[0]].get(key.split('.', 1)[1])!r}, asked {value!r})"
        for key, value in asked.items()
        if have[key.split(".", 1)[0]].get(key.split(".", 1)[1]) != value and not _same_plan(key, asked, saved)
    ]
    if diffs:
        raise RunError(
            f"{out}: --resume continues with the run's saved settings; these differ from them: "
            f"{', '.join(diffs)}. Drop them, or start a new --out"
        )


def _same_plan(key: str, asked: dict[str, Any], saved: Config) -> bool:
    """Whether an asked ``train.method`` / ``train.self_training`` resolves to what the saved run does: runs
    saved before the plan existed hold ``auto`` already resolved (``source-only`` + ``latent-bn``)."""
    if key not in ("train.method", "train.self_training"):
        return False
    wanted = {k.split(".", 1)[1]: v for k, v in asked.items() if k in ("train.method", "train.self_training")}
    mine, theirs = make_plan(replace(saved.train, **wanted), True), make_plan(saved.train, True)
    what = lambda plan: (plan.training, plan.stage, plan.ensemble, plan.background, plan.channel, plan.reverb)  # noqa: E731
    return what(mine) == what(theirs)
