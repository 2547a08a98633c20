"""The ``model.pt`` file format: one file, loadable with ``torch.load(weights_only=True)``.

A bundle holds its format version, the resolved configuration, class and domain names, the
weights (normalisation stats included), the versions of the libraries that wrote it and, for
``last.pt``, the optimizer and loop state to resume from. Only plain containers, numbers,
strings and tensors go in, so the safe loader reads it. Turning a model into a bundle and back
is :class:`~audio_dann.nn.classifier.AudioClassifier`'s job; this module reads and writes files.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from ..config import Config, config_from_dict, config_to_dict
from ..errors import BundleError, ConfigError
from ..files import atomic_path

__all__ = ["BUNDLE_FORMAT", "make_bundle", "save_bundle", "load_bundle"]

BUNDLE_FORMAT = 1
REQUIRED_KEYS = ("format_version", "config", "classes", "domains", "model_state")


def make_bundle(
    config: Config, classes: list[str], domains: list[str], model_state: dict[str, torch.Tensor], **extra: Any
) -> dict[str, Any]:
    """A bundle dict; ``extra`` may hold ``step``, ``optimizer_state``, ``loop_state``, ``summary``..."""
    import numpy  # noqa: E401 - versions recorded for reproducibility
    import torchaudio

    from .. import __version__

    return {
        "format_version": BUNDLE_FORMAT,
        "config": config_to_dict(config),
        "classes": list(classes),
        "domains": list(domains),
        "model_state": {k: v.detach().cpu() for k, v in model_state.items()},
        "versions": {
            "audio_dann": __version__,
            "torch": str(torch.__version__),
            "torchaudio": str(torchaudio.__version__),
            "numpy": str(numpy.__version__),
            "python": sys.version.split()[0],
        },
        **extra,
    }


def save_bundle(bundle: dict[str, Any], path: str | Path) -> None:
    """Write atomically (temp file, then rename)."""
    with atomic_path(path) as tmp:
        torch.save(bundle, tmp)


def load_bundle(path: str | Path) -> tuple[dict[str, Any], Config]:
    """Load and check a bundle; returns ``(bundle, config)``.

    Raises:
        BundleError: the file is missing, not a bundle, lacks a key, or is from a newer format.
    """
    path = Path(path)
    if path.is_dir():
        hint = f"; did you mean {path / 'model.pt'}?" if (path / "model.pt").is_file() else ""
        raise BundleError(f"{path}: a folder, not a model file{hint}")
    if not path.is_file():
        raise BundleError(f"{path}: model file not found")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for foreign files
        raise BundleError(
            f"{path}: not an audio-dann model bundle (torch.load could not read it: {type(exc).__name__})"
        ) from None
    if not isinstance(bundle, dict) or "format_version" not in bundle:
        raise BundleError(f"{path}: not an audio-dann model bundle (no format_version)")
    if int(bundle["format_version"]) > BUNDLE_FORMAT:
        raise BundleError(
            f"{path}: bundle format {bundle['format_version']} is newer than this audio-dann "
            f"understands ({BUNDLE_FORMAT}); upgrade audio-dann"
        )
    missing = [k for k in REQUIRED_KEYS if k not in bundle]
    if missing:
        raise BundleError(f"{path}: model bundle is missing key(s): {', '.join(missing)}")
    train_cfg = bundle["config"].get("train") if isinstance(bundle["config"], dict) else None
    if isinstance(train_cfg, dict) and "latent_ensemble" not in train_cfg:
        train_cfg["latent_ensemble"] = []  # saved before the setting existed: one network, as trained
    if isinstance(train_cfg, dict) and "ensemble_teacher" not in train_cfg:
        train_cfg["ensemble_teacher"] = "adabn"  # the teacher as it was before the setting existed
    try:
        config = config_from_dict(bundle["config"])
    except ConfigError as exc:
        raise BundleError(f"{path}: bad configuration in bundle: {exc}") from None
    return bundle, config
