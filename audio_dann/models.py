"""Networks: backbones (a registry by name), the label head, the domain head, DANN.

Models are plain ``nn.Module``s with no training code. Every backbone maps its
input to an embedding ``(batch, embedding_dim)``.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torchaudio
from torch import nn

from .config import ModelConfig
from .grl import grad_reverse

__all__ = ["BACKBONES", "PairMax2d", "for_inference", "register_backbone", "build_backbone", "LogMelCNN", "MLP",
           "LabelHead", "DomainHead", "DANN", "InputNorm", "build_dann"]

BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str):
    """Decorator adding a backbone class or factory to :data:`BACKBONES`."""
    def deco(fn):
        BACKBONES[name] = fn
        return fn
    return deco


def build_backbone(name: str, **kwargs) -> nn.Module:
    if name not in BACKBONES:
        raise ValueError(f"model.backbone: unknown backbone {name!r} (known: {', '.join(sorted(BACKBONES))})")
    return BACKBONES[name](**kwargs)


@register_backbone("cnn")
class LogMelCNN(nn.Module):
    """A small log-mel CNN: blocks of conv3x3-BN-ReLU-maxpool, global pooling, a linear embedding.

    ``forward``: ``(batch, n_mels, frames) -> (batch, embedding_dim)``.
    """

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 128), embedding_dim: int = 128,
                 dropout: float = 0.2, **_: object) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i, c_out in enumerate(channels):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)]
            if i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))  # before the ReLU: the same values (max and ReLU commute), 1/4 the work
            layers.append(nn.ReLU(inplace=True))
            c_in = c_out
        # channels-last (NHWC) layout: max pooling and the convolutions run about twice as fast on
        # CPU as in NCHW (measured 0.79 vs 1.47 ms per clip at inference, one thread); same results.
        self.features = nn.Sequential(*layers).to(memory_format=torch.channels_last)
        self.embed = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * c_in, embedding_dim),
                                   nn.BatchNorm1d(embedding_dim), nn.ReLU(inplace=True))
        self.embedding_dim = embedding_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x.unsqueeze(1).contiguous(memory_format=torch.channels_last))  # (B, C, mels', frames')
        h = h.mean(dim=2)                                 # average over frequency
        pooled = torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1)  # mean + max over time
        return self.embed(pooled)


@register_backbone("mlp")
class MLP(nn.Module):
    """One hidden layer with a sigmoid, as in the paper's two-moons experiment: ``(B, D) -> (B, hidden)``."""

    def __init__(self, in_features: int = 2, embedding_dim: int = 15, **_: object) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, embedding_dim), nn.Sigmoid())
        self.embedding_dim = embedding_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LabelHead(nn.Module):
    """``(B, E) -> (B, n_classes)`` logits."""

    def __init__(self, embedding_dim: int, n_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(embedding_dim, n_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z)


class DomainHead(nn.Module):
    """GRL -> MLP -> one logit (two domains) or K logits (K > 2 domains).

    ``forward(z, coeff)``: ``(B, E) -> (B, 1 or K)``; the gradient into ``z`` is
    multiplied by ``-coeff``, the head itself learns at full rate.
    """

    def __init__(self, embedding_dim: int, n_domains: int = 2, hidden: int = 128, dropout: float = 0.5,
                 layers: int = 2) -> None:
        super().__init__()
        if n_domains < 2:
            raise ValueError(f"a domain head needs at least 2 domains, got {n_domains}")
        self.n_domains = n_domains
        out = 1 if n_domains == 2 else n_domains
        blocks: list[nn.Module] = []
        width = embedding_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = hidden
        self.net = nn.Sequential(*blocks, nn.Linear(width, out))

    def forward(self, z: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
        return self.net(grad_reverse(z, coeff))


class InputNorm(nn.Module):
    """Per-mel standardisation with stored stats, then optionally each clip's per-mel mean removed,
    then (in training only) SpecAugment masks.

    ``(B, n_mels, frames) -> (B, n_mels, frames)``. Removing the clip mean in the
    log domain cancels a fixed gain and a fixed microphone response per clip, which
    is why no random gain/EQ augmentation is offered: it would be removed here.
    Masked cells are set to 0, the standardised mean.
    """

    def __init__(self, n_mels: int, mode: str = "clip_mean", freq_masks: int = 0, freq_mask_width: int = 7,
                 time_masks: int = 0, time_mask_width: int = 10) -> None:
        super().__init__()
        self.mode = mode
        self.masks = ([torchaudio.transforms.FrequencyMasking(freq_mask_width, iid_masks=True)] * freq_masks +
                      [torchaudio.transforms.TimeMasking(time_mask_width, iid_masks=True)] * time_masks)
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("std", torch.ones(n_mels))

    def set_stats(self, mean, std) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean[:, None]) / self.std[:, None]
        if self.mode == "clip_mean":
            x = x - x.mean(dim=-1, keepdim=True)
        if self.training and self.masks:
            x = x.unsqueeze(1)
            for mask in self.masks:
                x = mask(x)
            x = x.squeeze(1)
        return x


class DANN(nn.Module):
    """Feature extractor G_f, label head G_y and domain head G_d (through the GRL).

    ``forward(x, coeff)`` returns ``(class_logits, domain_logits, embedding)``;
    ``domain_logits`` is ``None`` when the model has no domain head.
    """

    def __init__(self, extractor: nn.Module, n_classes: int, n_domains: int = 2,
                 domain_hidden: int = 128, domain_dropout: float = 0.5, with_domain_head: bool = True,
                 input_norm: nn.Module | None = None, domain_layers: int = 2) -> None:
        super().__init__()
        self.input_norm = input_norm if input_norm is not None else nn.Identity()
        self.extractor = extractor
        dim = extractor.embedding_dim
        self.label_head = LabelHead(dim, n_classes)
        self.domain_head = (DomainHead(dim, n_domains, domain_hidden, domain_dropout, domain_layers)
                            if with_domain_head else None)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.extractor(self.input_norm(x))

    def forward(self, x: torch.Tensor, coeff: float = 0.0, with_domain: bool = True):
        z = self.embed(x)
        logits = self.label_head(z)
        dom = self.domain_head(z, coeff) if (with_domain and self.domain_head is not None) else None
        return logits, dom, z


def build_dann(cfg: ModelConfig, n_classes: int, n_domains: int, n_mels: int | None = None,
               in_features: int | None = None) -> DANN:
    """Build the configured DANN (a domain head whenever there are >= 2 domains)."""
    kwargs = dict(channels=cfg.channels, embedding_dim=cfg.embedding_dim, dropout=cfg.dropout)
    if in_features is not None:
        kwargs["in_features"] = in_features
    extractor = build_backbone(cfg.backbone, **kwargs)
    norm = (InputNorm(n_mels, cfg.input_norm, cfg.freq_masks, cfg.freq_mask_width, cfg.time_masks,
                      cfg.time_mask_width) if n_mels is not None else None)
    return DANN(extractor, n_classes, max(n_domains, 2), cfg.domain_hidden, cfg.domain_dropout,
                with_domain_head=True, input_norm=norm, domain_layers=cfg.domain_layers)


class PairMax2d(nn.Module):
    """``nn.MaxPool2d(2)`` as two element-wise maxima of strided views: the same values, about
    twice as fast on CPU for channels-last activations. Used in inference copies only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        rows = torch.maximum(x[..., 0:h:2, :w], x[..., 1:h:2, :w])
        return torch.maximum(rows[..., 0::2], rows[..., 1::2])


def _plain_pool2(m: nn.Module) -> bool:
    return (isinstance(m, nn.MaxPool2d) and m.kernel_size in (2, (2, 2)) and m.stride in (2, (2, 2))
            and m.padding in (0, (0, 0)) and m.dilation in (1, (1, 1)) and not m.ceil_mode and not m.return_indices)


def for_inference(module: nn.Module) -> nn.Module:
    """An eval-mode inference copy of ``module``: every Conv2d -> BatchNorm2d pair of a Sequential
    folded into one convolution (the norm becomes Identity), 2x2 max pools as :class:`PairMax2d`.

    Eval-mode batch norm is a per-channel affine map, so the copy computes the same function up
    to float rounding (~1e-6); on CPU the norms were a quarter of the network's time and max
    pooling another quarter. The original is untouched; never train or save the copy.
    """
    fast = copy.deepcopy(module).eval()
    for seq in [m for m in fast.modules() if isinstance(m, nn.Sequential)]:
        for k in range(len(seq)):
            layer, after = seq[k], (seq[k + 1] if k + 1 < len(seq) else None)
            if isinstance(layer, nn.Conv2d) and isinstance(after, nn.BatchNorm2d) and after.track_running_stats:
                fused = torch.nn.utils.fusion.fuse_conv_bn_eval(layer, after)
                seq[k] = fused.to(memory_format=torch.channels_last) if layer.weight.is_contiguous(
                    memory_format=torch.channels_last) else fused
                seq[k + 1] = nn.Identity()
            elif _plain_pool2(layer):
                seq[k] = PairMax2d()
    return fast
