"""Backbone registry: harness names -> timm models with one input channel and multi-scale
features. Weights are never downloaded (``pretrained=False``): every encoder starts from random
initialisation and only SSL pretraining inside harness changes that.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.compat import ensure_torchvision
from harness.errors import HarnessError


@dataclass(frozen=True)
class BackboneSpec:
    timm_name: str
    note: str


BACKBONES: dict[str, BackboneSpec] = {
    **{
        f"convnextv2_{size}": BackboneSpec(f"convnextv2_{size}", f"ConvNeXt V2 {size} (FCMAE's family)")
        for size in ("atto", "femto", "pico", "nano", "tiny", "base", "large", "huge")
    },
    "resnet18": BackboneSpec("resnet18", "ResNet-18"),
    "resnet50": BackboneSpec("resnet50", "ResNet-50 (the backbone of Lu et al. 2022)"),
    "test_convnext": BackboneSpec("test_convnext", "tiny ConvNeXt (0.2 M parameters) for tests"),
    "test_resnet": BackboneSpec("test_resnet", "tiny ResNet for tests"),
}


def known_backbones() -> dict[str, BackboneSpec]:
    """Built-in backbones plus those contributed by plugins through ``harness_backbones``."""
    from harness.plugins.manager import plugin_state

    found = dict(BACKBONES)
    for extra in plugin_state().manager.hook.harness_backbones():
        for name, timm_name in (extra or {}).items():
            found.setdefault(name, BackboneSpec(timm_name, "from a plugin"))
    return found


class Backbone(nn.Module):
    """A timm ``features_only`` model: ``forward(x)`` returns feature maps, finest first.

    ``body`` is the only child with parameters, so ``state_dict()`` keys are exactly what SSL
    methods transfer and what the segmentation network's encoder loads.
    """

    def __init__(self, name: str, body: nn.Module, in_chans: int = 1):
        super().__init__()
        self.name = name
        self.in_chans = in_chans
        self.body = body
        self.channels: list[int] = list(body.feature_info.channels())
        self.reductions: list[int] = list(body.feature_info.reduction())

    @property
    def total_stride(self) -> int:
        return self.reductions[-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))


def create_backbone(name: str, in_chans: int = 1) -> Backbone:
    specs = known_backbones()
    if name not in specs:
        raise HarnessError(f"unknown backbone {name!r}: choose one of {', '.join(specs)}")
    ensure_torchvision()
    import timm

    body = timm.create_model(specs[name].timm_name, pretrained=False, in_chans=in_chans, features_only=True)
    return Backbone(name, body, in_chans)
