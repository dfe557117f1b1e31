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
    """A registry entry: the timm model to build and a one-line note for ``harness methods``."""

    timm_name: str
    note: str


_CONVNEXTV2_PARAMS_M = {
    "atto": 3.4, "femto": 4.8, "pico": 8.6, "nano": 15.0,
    "tiny": 27.9, "base": 87.7, "large": 196.4, "huge": 657.5,
}

BACKBONES: dict[str, BackboneSpec] = {
    **{
        f"convnextv2_{size}": BackboneSpec(
            f"convnextv2_{size}", f"ConvNeXt V2 {size}, {params} M parameters (FCMAE's family)"
        )
        for size, params in _CONVNEXTV2_PARAMS_M.items()
    },
    "resnet18": BackboneSpec("resnet18", "ResNet-18, 11.2 M parameters, 5 stages (strides 2-32)"),
    "resnet50": BackboneSpec("resnet50", "ResNet-50, 23.5 M parameters (the backbone of Lu et al. 2022)"),
    "test_convnext": BackboneSpec("test_convnext", "tiny ConvNeXt (0.2 M parameters) for tests"),
    "test_resnet": BackboneSpec("test_resnet", "tiny ResNet (0.4 M parameters) for tests"),
}


def contributed_backbones() -> list[tuple[str, str, str]]:
    """``(plugin, harness name, timm name)`` for every backbone a plugin contributes through
    ``harness_backbones``, in registration order; a hook that raises or answers malformed is refused
    and reported with the plugin failures (``plugin_state().failures``)."""
    from harness.plugins.manager import in_registration_order, plugin_state

    state = plugin_state()
    found: list[tuple[str, str, str]] = []
    for impl in in_registration_order(state, "harness_backbones"):  # the first comer keeps a name
        try:
            extra = impl.function() or {}
        except Exception as err:  # noqa: BLE001 - one plugin's bug must not take every backbone down
            state.refuse(impl.plugin_name, f"harness_backbones() raised {type(err).__name__}: {err}")
            continue
        if not isinstance(extra, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
            state.refuse(impl.plugin_name, "harness_backbones() must return {harness name: timm model name}, "
                                           f"got {extra!r}")
            continue
        found.extend((impl.plugin_name, name, timm_name) for name, timm_name in extra.items())
    return found


def resolve_backbones() -> tuple[dict[str, BackboneSpec], list[tuple[str, str, str]]]:
    """Built-in backbones plus those plugins contribute, and the contributions refused.

    A plugin cannot shadow a built-in name (nor one an earlier plugin took): the first entry
    wins, so a name always means the same architecture in recorded results. Refused entries
    come back as ``(plugin, harness name, timm name)`` so ``harness backbones`` can say so.
    """
    found = dict(BACKBONES)
    refused = []
    for plugin, name, timm_name in contributed_backbones():
        if name in found:
            refused.append((plugin, name, timm_name))
        else:
            found[name] = BackboneSpec(timm_name, f"timm {timm_name}, from plugin {plugin!r}")
    return found, refused


def known_backbones() -> dict[str, BackboneSpec]:
    """Every backbone ``--backbone`` accepts (see :func:`resolve_backbones`)."""
    return resolve_backbones()[0]


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
        info = body.feature_info  # timm's FeatureInfo of a features_only model
        self.channels: list[int] = list(info.channels())  # type: ignore[union-attr, operator]
        self.reductions: list[int] = list(info.reduction())  # type: ignore[union-attr, operator]

    @property
    def total_stride(self) -> int:
        """Reduction of the deepest feature map: inputs must be a multiple of it."""
        return self.reductions[-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))


def create_backbone(name: str, in_chans: int = 1) -> Backbone:
    """Build backbone ``name`` with random weights and ``in_chans`` input channels.

    Works under ``with torch.device("meta"):`` too, to size the big models without allocating.
    """
    specs = known_backbones()
    if name not in specs:
        raise HarnessError(f"unknown backbone {name!r}: choose one of {', '.join(specs)}")
    if not isinstance(in_chans, int) or in_chans < 1:
        raise HarnessError(f"backbone {name!r}: in_chans must be a positive integer, got {in_chans!r}")
    ensure_torchvision()
    import timm

    timm_name = specs[name].timm_name
    try:
        body = timm.create_model(timm_name, pretrained=False, in_chans=in_chans, features_only=True)
    except (RuntimeError, ValueError) as error:  # e.g. a plugin naming a model timm lacks
        raise HarnessError(
            f"backbone {name!r}: timm cannot build {timm_name!r} as a feature extractor: {error}"
        ) from error
    return Backbone(name, body, in_chans)


def encoder_width(backbone: nn.Module) -> int:
    """Channels of the backbone's deepest feature map: the input width of global-pooled heads."""
    channels = getattr(backbone, "channels", None)
    if not channels:
        raise HarnessError(
            f"backbone {type(backbone).__name__} has no `channels` list: use harness.models.create_backbone"
        )
    return int(channels[-1])


def pooled(backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Global average pool of the backbone's deepest feature map: (B, C), what projection heads read."""
    return backbone(images)[-1].mean(dim=(2, 3))
