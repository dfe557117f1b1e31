"""A dense masked ConvNeXt encoder that computes what a sparse one computes at visible positions.

FCMAE's encoder is a sparse (submanifold) network: masked sites hold no features, a convolution
produces outputs only at visible sites and reads only visible neighbours, and Global Response
Normalisation (GRN) sums over visible sites only. A plain dense network run on a masked input
differs in two ways: every op writes something at masked sites (a conv bias, a LayerNorm shift,
GRN's bias), and the next spatial op or GRN then reads those values into visible outputs, so the
encoder would learn to rely on what the mask pattern leaves behind. This module removes both
paths in the timm model itself, without touching its weights or their names:

- the mask is applied after the stem (as in the source) and after every stage;
- inside every stage, a forward pre-hook zeroes masked sites at the input of every spatial
  convolution (the 7x7 depthwise convs and the 2x2 downsampling convs) and of every GRN layer.

Zero inputs contribute nothing to a convolution's sum nor to GRN's L2 norm (a sum of squares,
not a mean), so visible outputs equal the sparse network's exactly. Per-site ops (LayerNorm,
1x1 convs / linear layers, GELU, layer scale, the residual) never mix sites. The stem and the
downsampling convs have kernel == stride and the 32 px patches align with every stride, so
they never mix a masked and a visible site either; the stem is checked for this.

The hooks live on the backbone's modules and act only while :meth:`DenseMaskedEncoder.__call__`
runs with a mask; the backbone's plain forward, and its state dict, are untouched.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from harness.compat import ensure_torchvision
from harness.errors import HarnessError

ensure_torchvision()  # before timm imports torchvision
from timm.layers.grn import GlobalResponseNorm  # noqa: E402
from timm.models.convnext import ConvNeXtStage  # noqa: E402


def backbone_name(backbone: nn.Module) -> str:
    """The harness name of ``backbone`` if it carries one, else its timm architecture."""
    name = getattr(backbone, "name", None)
    if isinstance(name, str) and name:
        return name
    body = getattr(backbone, "body", backbone)
    cfg = getattr(body, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture", type(body).__name__))


def _is_spatial_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and tuple(module.kernel_size) != (1, 1)


class DenseMaskedEncoder:
    """Runs a harness ConvNeXt backbone (``backbone.body``: timm ``features_only`` ConvNeXt) on
    images with hidden patches, returning the multi-scale features the backbone returns.

    ``inner_masking=False`` keeps only the mask after the stem and after each stage (no hooks
    inside the stages): the naive dense variant, kept to show in tests what the hooks prevent.

    A plain object, not an ``nn.Module``: it only drives modules the backbone already owns, so the
    pretraining module's parameters and state dict hold each weight once, under its usual name.
    """

    def __init__(self, backbone: nn.Module, inner_masking: bool = True):
        self.name = backbone_name(backbone)
        body = getattr(backbone, "body", None)
        if not isinstance(body, nn.ModuleDict) or not hasattr(body, "return_layers"):
            raise HarnessError(
                f"fcmae needs a ConvNeXt backbone built by harness (timm features_only ConvNeXt in "
                f"`backbone.body`); backbone {self.name!r} ({type(backbone).__name__}) is not one"
            )
        self.layers: list[tuple[str, nn.Module]] = list(body.items())
        stage_positions = [i for i, (_, m) in enumerate(self.layers) if isinstance(m, ConvNeXtStage)]
        if not stage_positions:
            raise HarnessError(
                f"fcmae masks ConvNeXt stages and backbone {self.name!r} has none: choose a ConvNeXt "
                f"backbone (convnextv2_atto ... convnextv2_huge, or a ConvNeXt V1)"
            )
        stem = self.layers[: stage_positions[0]]
        stem_convs = [c for _, layer in stem for c in layer.modules() if isinstance(c, nn.Conv2d)]
        if not stem_convs or any(tuple(c.kernel_size) != tuple(c.stride) for c in stem_convs):
            raise HarnessError(
                f"fcmae needs a patchify stem (kernel == stride) so that no stem output mixes hidden "
                f"and visible pixels; backbone {self.name!r} has a different stem"
            )
        self.in_chans = stem_convs[0].in_channels
        self._body = body
        self.return_layers: dict[str, Any] = dict(body.return_layers)
        self.stages = [m for i, (_, m) in enumerate(self.layers) if i in set(stage_positions)]
        self.total_stride = math.prod(int(c.stride[0]) for c in stem_convs) * math.prod(
            int(m.stride[0]) for s in self.stages for m in s.modules() if _is_spatial_conv(m)
        )
        self.inner_masking = inner_masking
        self._visible: torch.Tensor | None = None  # (B, 1, gh, gw), 1 = visible, while running
        self._cache: dict[tuple[int, int], torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        if inner_masking:
            for stage in self.stages:
                for module in stage.modules():
                    if _is_spatial_conv(module) or isinstance(module, GlobalResponseNorm):
                        self._handles.append(module.register_forward_pre_hook(self._zero_hidden_input))

    # -- masks ------------------------------------------------------------------------------
    def visible_at(self, height: int, width: int) -> torch.Tensor:
        """The patch mask at a feature resolution: (B, 1, height, width), 1 at visible sites."""
        if self._visible is None:
            raise RuntimeError("visible_at is only defined while the encoder runs with a mask")
        key = (height, width)
        if key not in self._cache:
            grid_h, grid_w = self._visible.shape[-2:]
            if height % grid_h or width % grid_w or height // grid_h != width // grid_w:
                raise RuntimeError(
                    f"feature map {height}x{width} is not aligned with the {grid_h}x{grid_w} patch grid"
                )
            factor = height // grid_h
            self._cache[key] = self._visible.repeat_interleave(factor, 2).repeat_interleave(factor, 3)
        return self._cache[key]

    def _zero_hidden_input(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if self._visible is None:  # plain forward of the backbone: leave it alone
            return None
        x = args[0]
        if isinstance(module, GlobalResponseNorm) and module.channel_dim == -1:  # NHWC blocks
            keep = self.visible_at(x.shape[1], x.shape[2]).permute(0, 2, 3, 1)
        else:
            keep = self.visible_at(x.shape[-2], x.shape[-1])
        return (x * keep.to(x.dtype), *args[1:])

    # -- forward ----------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor, visible: torch.Tensor | None) -> list[torch.Tensor]:
        """Features of ``images`` (B, C, H, W) with the patches where ``visible`` (B, 1, H/s, W/s)
        is 0 hidden (s = :attr:`total_stride`); ``visible=None`` runs the backbone unmasked.
        Hidden sites are zero in every returned map."""
        if visible is not None:
            if self._checkpointing():
                raise HarnessError(
                    f"fcmae: gradient checkpointing is on in backbone {self.name!r}; its recomputation in the "
                    f"backward pass would run without the mask, so turn it off for FCMAE pretraining"
                )
            stride = self.total_stride
            if images.shape[-2] % stride or images.shape[-1] % stride:
                raise HarnessError(
                    f"fcmae: image size {tuple(images.shape[-2:])} is not a multiple of the patch size "
                    f"{stride} of backbone {self.name!r}"
                )
            expected = (images.shape[0], 1, images.shape[-2] // stride, images.shape[-1] // stride)
            if tuple(visible.shape) != expected:
                raise ValueError(f"mask of shape {tuple(visible.shape)} does not match {expected} for these images")
        self._visible = None if visible is None else visible.to(images.dtype)
        self._cache = {}
        features: list[torch.Tensor] = []
        try:
            x = images
            for name, module in self.layers:
                x = module(x)
                if visible is not None:  # after each stem layer and after every stage
                    x = x * self.visible_at(x.shape[-2], x.shape[-1]).to(x.dtype)
                if name in self.return_layers:
                    features.append(x)
        finally:
            self._visible = None
            self._cache = {}
        return features

    def _checkpointing(self) -> bool:
        return bool(getattr(self._body, "grad_checkpointing", False)) or any(
            getattr(stage, "grad_checkpointing", False) for stage in self.stages
        )

    def remove_hooks(self) -> None:
        """Detach the hooks from the backbone (they are inert without a mask anyway)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
