"""Denoising pretext (Kazimi & Sandfeld): an encoder-decoder learns to restore micrographs
corrupted with Poisson shot noise at a random dose; its encoder transfers.

The encoder-decoder is the harness's own U-Net (:class:`harness.models.SegmentationNet` with one
output channel), so the encoder that learns to denoise is exactly the downstream encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from scipy import ndimage

from harness import augment
from harness.methods.base import MethodConfig, PretrainModule, SSLMethod, check_crops
from harness.models import SegmentationNet
from harness.plugins.hookspecs import provides_methods

BLUR_SIGMAS = (0.5, 1.0, 1.5, 2.0, 3.0)  # widths of the no-learning denoiser; the best one counts


class DenoiseConfig(MethodConfig):
    dose_min: float = Field(2.0, gt=0, description="Lowest mean electron count at full intensity.")
    dose_max: float = Field(50.0, gt=0, description="Highest mean electron count at full intensity.")
    loss: str = Field("l1", pattern="^(l1|mse)$", description="Restoration loss.")

    @model_validator(mode="after")
    def _dose_order(self) -> DenoiseConfig:
        if self.dose_min > self.dose_max:
            raise ValueError("dose_min must not exceed dose_max")
        return self


class DenoiseModule(PretrainModule):
    def __init__(self, backbone: torch.nn.Module, config: DenoiseConfig):
        super().__init__(backbone)
        self.config = config
        self.net = SegmentationNet(backbone, num_outputs=1)

    def restore(self, noisy: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(noisy))

    def training_step(self, images: torch.Tensor, step: int, total_steps: int) -> torch.Tensor:
        check_crops(images, "denoise")
        clean = augment.random_geometry(images, images.shape[-1], scale=(0.5, 1.0))
        noisy = augment.poisson_noise(clean, (self.config.dose_min, self.config.dose_max))
        restored = self.restore(noisy).float()
        return self._restoration_loss(restored, clean.float())

    def _restoration_loss(self, restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        if self.config.loss == "mse":
            return F.mse_loss(restored, clean)
        return F.l1_loss(restored, clean)

    @torch.no_grad()
    def reference_loss(self, images: torch.Tensor, step: int, total_steps: int) -> float:
        """The same clean crops and noise, restored by a Gaussian blur of the noisy crop at the best
        width for this batch (σ 0-3 px, 0 = the noisy crop itself): denoising without learning."""
        clean = augment.random_geometry(images, images.shape[-1], scale=(0.5, 1.0))
        noisy = augment.poisson_noise(clean, (self.config.dose_min, self.config.dose_max)).float().cpu().numpy()
        target = clean.float().cpu()
        losses = [float(self._restoration_loss(torch.from_numpy(noisy), target))]
        for sigma in BLUR_SIGMAS:
            blurred = ndimage.gaussian_filter(noisy, (0, 0, sigma, sigma), mode="reflect")
            losses.append(float(self._restoration_loss(torch.from_numpy(blurred), target)))
        return min(losses)


class Denoise(SSLMethod):
    """Restore micrographs corrupted with Poisson noise (encoder-decoder); encoder transfers."""

    name = "denoise"
    Config = DenoiseConfig
    transfers = "the encoder of the denoising U-Net"

    def build(self, backbone: torch.nn.Module) -> DenoiseModule:
        return DenoiseModule(backbone, self.config)


harness_methods = provides_methods(Denoise)
