"""The FCMAE network: masked encoder, one-block ConvNeXt V2 decoder, MSE on hidden patches."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from harness.compat import ensure_torchvision
from harness.errors import HarnessError
from harness.methods.base import PretrainModule, check_crops
from harness_fcmae import FCMAEConfig
from harness_fcmae.encoder import DenseMaskedEncoder

ensure_torchvision()  # before timm imports torchvision
from timm.models.convnext import ConvNeXtBlock  # noqa: E402


def random_patch_mask(batch: int, grid_h: int, grid_w: int, ratio: float, device: torch.device) -> torch.Tensor:
    """(batch, grid_h * grid_w) floats, 1 = hidden: exactly the same number hidden in each sample.

    As in the source, ``int(L * (1 - ratio))`` patches stay visible; at least one stays visible and
    at least one is hidden, so small crops still give an encoder input and a loss.
    """
    patches = grid_h * grid_w
    keep = min(max(int(patches * (1 - ratio)), 1), patches - 1)
    order = torch.rand(batch, patches, device=device).argsort(dim=1)
    mask = torch.ones(batch, patches, device=device)
    mask.scatter_(1, order[:, :keep], 0.0)
    return mask


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, L, patch * patch * C), patches in row-major grid order."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def masked_patch_loss(
    prediction: torch.Tensor, images: torch.Tensor, mask: torch.Tensor, patch: int, norm_pix_loss: bool
) -> torch.Tensor:
    """Mean squared error over the hidden patches only.

    ``prediction`` (B, patch * patch * C, gh, gw) is the decoder output, one pixel vector per grid
    cell in :func:`patchify`'s order; ``mask`` (B, gh * gw) is 1 at hidden patches.
    """
    b = prediction.shape[0]
    pred = prediction.float().reshape(b, prediction.shape[1], -1).transpose(1, 2)
    target = patchify(images.float(), patch)
    if norm_pix_loss:  # per-patch standardised targets, as in MAE
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = (pred - target).pow(2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()


INPAINT_SIGMAS = (2.0, 4.0, 8.0, 16.0)  # widths of the no-learning inpainting; the best one counts


def inpaint_visible(images: torch.Tensor, hidden: torch.Tensor, sigma: float) -> torch.Tensor:
    """Every pixel as the Gaussian-weighted mean of the *visible* pixels around it (normalised
    convolution); where none is within 4 sigma, the image's visible mean. ``hidden`` (B, 1, H, W) is 1
    on hidden pixels."""
    pixels = images.float().cpu().numpy()
    visible = 1.0 - hidden.float().cpu().numpy()
    spread = (0, 0, sigma, sigma)
    weighted = ndimage.gaussian_filter(pixels * visible, spread, mode="reflect")
    weight = ndimage.gaussian_filter(visible, spread, mode="reflect")
    mean = (pixels * visible).sum(axis=(2, 3), keepdims=True) / np.maximum(visible.sum(axis=(2, 3), keepdims=True), 1)
    reached = weight > 0  # scipy's kernel ends at 4 sigma
    filled = np.where(reached, weighted / np.where(reached, weight, 1), mean)
    return torch.from_numpy(filled.astype(np.float32))


def _standardise_patches(prediction: torch.Tensor) -> torch.Tensor:
    """Each grid cell's pixel vector (dim 1 of the decoder layout) to zero mean, unit variance."""
    mean = prediction.mean(dim=1, keepdim=True)
    var = prediction.var(dim=1, keepdim=True)
    return (prediction - mean) / (var + 1e-6).sqrt()


def as_decoder_output(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) pixels in the decoder's layout (B, patch * patch * C, gh, gw), inverse of the loss's reading."""
    b, _, h, w = pixels.shape
    return patchify(pixels, patch).transpose(1, 2).reshape(b, -1, h // patch, w // patch)


class FCMAEModule(PretrainModule):
    def __init__(self, backbone: nn.Module, config: FCMAEConfig, inner_masking: bool = True):
        super().__init__(backbone)
        self.config = config
        # plain attribute (not a submodule): it only drives the backbone's own modules
        self.encoder = DenseMaskedEncoder(backbone, inner_masking=inner_masking)
        self.patch = self.encoder.total_stride
        channels = getattr(backbone, "channels", None)
        width = int(channels[-1]) if channels else self._deepest_width()
        dim = config.decoder_dim
        self.proj = nn.Conv2d(width, dim, kernel_size=1)
        self.mask_token = nn.Parameter(torch.zeros(1, dim, 1, 1))
        # ConvNeXt V2 block: GRN in the MLP, no layer scale (as in the source decoder)
        self.decoder = nn.Sequential(
            *[ConvNeXtBlock(dim, conv_mlp=True, use_grn=True, ls_init_value=None) for _ in range(config.decoder_depth)]
        )
        self.pred = nn.Conv2d(dim, self.patch * self.patch * self.encoder.in_chans, kernel_size=1)
        self._init_decoder()

    def _deepest_width(self) -> int:
        last = self.encoder.stages[-1]
        convs = [m for m in last.modules() if isinstance(m, nn.Conv2d)]
        return int(convs[-1].out_channels)

    def _init_decoder(self) -> None:
        # the source's init for the decoder: truncated normal 0.02, zero biases, N(0, 0.02) mask token
        for module in [self.proj, self.decoder, self.pred]:
            for m in module.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.trunc_normal_(m.weight, std=0.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        nn.init.normal_(self.mask_token, std=0.02)

    # -- views ------------------------------------------------------------------------------
    def _views(self, images: torch.Tensor) -> torch.Tensor:
        """Crop to whole patches (random offset) and flip horizontally at random; no normalisation."""
        b, _, h, w = images.shape
        p = self.patch
        ch, cw = (h // p) * p, (w // p) * p
        if ch * cw < 2 * p * p:
            raise HarnessError(
                f"fcmae: crops of {h}x{w} px hold fewer than two {p} px patches; use a crop size of at least {2 * p}"
            )
        if (ch, cw) != (h, w):
            top = int(torch.randint(0, h - ch + 1, (1,)))
            left = int(torch.randint(0, w - cw + 1, (1,)))
            images = images[..., top : top + ch, left : left + cw]
        if self.config.flip:
            flips = (torch.rand(b, device=images.device) < 0.5).view(b, 1, 1, 1)
            images = torch.where(flips, images.flip(-1), images)
        return images

    # -- network ----------------------------------------------------------------------------
    def decode(self, deepest: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pixels of every patch, (B, patch * patch * C, gh, gw), from the deepest features."""
        x = self.proj(deepest)
        hidden = mask.view(x.shape[0], 1, *x.shape[-2:]).to(x.dtype)
        x = x * (1 - hidden) + self.mask_token.to(x.dtype) * hidden
        return self.pred(self.decoder(x))

    def reconstruction_loss(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The loss for given views and patch mask (B, gh * gw), 1 = hidden."""
        b, _, h, w = images.shape
        visible = (1 - mask).view(b, 1, h // self.patch, w // self.patch)
        features = self.encoder(images, visible)
        prediction = self.decode(features[-1], mask)
        return masked_patch_loss(prediction, images, mask, self.patch, self.config.norm_pix_loss)

    def training_step(self, images: torch.Tensor, step: int, total_steps: int) -> torch.Tensor:
        check_crops(images, "fcmae")
        views = self._views(images)
        b, _, h, w = views.shape
        mask = random_patch_mask(b, h // self.patch, w // self.patch, self.config.mask_ratio, views.device)
        return self.reconstruction_loss(views, mask)

    def rule_draws(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The views and patch mask a training step draws, plus the mask per pixel (B, 1, H, W), 1 = hidden."""
        views = self._views(images)
        b, _, h, w = views.shape
        p = self.patch
        mask = random_patch_mask(b, h // p, w // p, self.config.mask_ratio, views.device)
        hidden = mask.view(b, 1, h // p, w // p).repeat_interleave(p, 2).repeat_interleave(p, 3)
        return views, mask, hidden

    @torch.no_grad()
    def reference_loss(self, images: torch.Tensor, step: int, total_steps: int) -> float:
        """The same views and masks, the hidden patches filled from the visible pixels by
        normalised convolution at the best of a few widths (σ 2-16 px) for this batch: inpainting
        without learning. With ``norm_pix_loss`` each fill is standardised per patch, and predicting
        zeros (the standardised mean) is a candidate too."""
        views, mask, hidden = self.rule_draws(images)
        p = self.patch
        mask, hidden = mask.cpu(), hidden.cpu()
        target = views.float().cpu()
        candidates = [as_decoder_output(inpaint_visible(target, hidden, s), p) for s in INPAINT_SIGMAS]
        if self.config.norm_pix_loss:
            candidates = [_standardise_patches(c) for c in candidates] + [torch.zeros_like(candidates[0])]
        return min(float(masked_patch_loss(c, target, mask, p, self.config.norm_pix_loss)) for c in candidates)
