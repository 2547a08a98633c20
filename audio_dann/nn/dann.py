"""DANN: feature extractor G_f, label head G_y and (for adversarial training) domain head G_d.

Models are plain ``nn.Module``s with no training code.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .augment import build_augment
from .backbones import build_backbone
from .heads import DomainHead, LabelHead
from .norm import InputNorm

__all__ = ["DANN", "build_dann"]


class DANN(nn.Module):
    """Input normalisation, augmentation (training only), extractor, label head and an optional domain head.

    ``forward(x)``: ``(B, n_mels, frames) -> (class logits (B, C), embedding (B, E))``. The domain head is
    held here (it is saved with the weights) but called by the training loss that owns the gradient
    reversal (:class:`audio_dann.training.adversarial.DomainAdversarialLoss`).
    """

    def __init__(
        self,
        extractor: nn.Module,
        n_classes: int,
        domain_head: DomainHead | None = None,
        input_norm: nn.Module | None = None,
        augment: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.input_norm = input_norm if input_norm is not None else nn.Identity()
        self.augment = augment if augment is not None else nn.Identity()
        self.extractor = extractor
        self.label_head = LabelHead(extractor.embedding_dim, n_classes)
        self.domain_head = domain_head

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.extractor(self.augment(self.input_norm(x)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.embed(x)
        return self.label_head(z), z


def build_dann(
    cfg: ModelConfig, n_classes: int, n_domains: int = 0, n_mels: int | None = None, in_features: int | None = None
) -> DANN:
    """Build the configured network.

    Args:
        cfg: the model section of the configuration.
        n_classes: label head outputs.
        n_domains: domains the domain head tells apart, the source included; 0 builds no domain
            head (source-only models). 2 gives one logit, K > 2 gives K.
        n_mels: log-mel bands of the input (adds input normalisation and the training augmentations), or None
            for vector inputs.
        in_features: input width of vector backbones (``mlp``).
    """
    kwargs = dict(channels=cfg.channels, embedding_dim=cfg.embedding_dim, dropout=cfg.dropout)
    if in_features is not None:
        kwargs["in_features"] = in_features
    extractor = build_backbone(cfg.backbone, **kwargs)
    head = (
        DomainHead(
            extractor.embedding_dim,
            n_domains,
            cfg.domain_hidden,
            cfg.domain_dropout,
            cfg.domain_layers,
            condition_classes=n_classes if cfg.domain_condition == "cdan" else 0,
        )
        if n_domains
        else None
    )
    if n_mels is None:
        return DANN(extractor, n_classes, head)
    return DANN(extractor, n_classes, head, InputNorm(n_mels, cfg.input_norm), build_augment(cfg))
