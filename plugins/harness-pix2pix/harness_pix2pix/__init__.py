"""Pix2Pix denoising (Kazimi & Sandfeld, 2023/2024) for harness: a conditional GAN restores
micrographs corrupted with Poisson shot noise at a random dose.

The generator is the harness's own U-Net (:class:`harness.models.SegmentationNet` with one output
channel) on the backbone being learnt, so the encoder that learns to denoise is exactly the
downstream encoder; it transfers. A PatchGAN discriminator sees the noisy image next to either the
clean or the restored one and judges each patch of it. Loss: the conditional GAN loss plus
``l1_weight`` (lambda, 100 as in pix2pix) times the L1 restoration error. Generator and
discriminator have their own optimisers (Adam, lr 2e-4, betas (0.5, 0.999), as in pix2pix); the
harness computes each group's gradients from its own loss only.

This module holds the config and the registration only; the networks live in
:mod:`harness_pix2pix.module` (``Pix2PixModule``), imported when a run builds it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from harness.methods.base import MethodConfig, SSLMethod
from harness.plugins.hookspecs import provides_methods


class Pix2PixConfig(MethodConfig):
    """pix2pix's recipe (Isola et al. 2017) with the noise model of Kazimi & Sandfeld.

    ``disc_layers`` sets the discriminator's receptive field: 3 strided layers give pix2pix's
    70x70 PatchGAN, right for crops of 140 px and more; for small crops (64-128 px) 2 layers
    (34x34) keep the discriminator judging local texture rather than the whole crop, and 1 layer
    gives 16x16. The crop must be at least 3 * 2**disc_layers px for one output patch.
    Optimiser defaults are pix2pix's: Adam (no weight decay), lr 2e-4, betas (0.5, 0.999), no
    warm-up; the harness's cosine decay replaces pix2pix's linear decay.
    """

    lr: float | None = Field(2e-4, gt=0, description="Generator learning rate (pix2pix: 2e-4).")
    discriminator_lr: float | None = Field(None, gt=0, description="Discriminator learning rate; None: lr.")
    betas: tuple[float, float] | None = Field((0.5, 0.999), description="Adam betas (pix2pix: 0.5, 0.999).")
    weight_decay: float | None = Field(0.0, ge=0, description="Weight decay (pix2pix: none).")
    warmup_fraction: float | None = Field(0.0, ge=0, lt=1, description="Warm-up share (pix2pix: none).")
    l1_weight: float = Field(100.0, ge=0, description="lambda: weight of the L1 term (pix2pix: 100).")
    dose_min: float = Field(2.0, gt=0, description="Lowest mean electron count at full intensity.")
    dose_max: float = Field(50.0, gt=0, description="Highest mean electron count at full intensity.")
    crop_scale: tuple[float, float] = Field(
        (0.5, 1.0), description="Area share of the input crop that each clean view covers (min, max)."
    )
    disc_width: int = Field(64, ge=1, description="Channels of the discriminator's first layer (pix2pix: 64).")
    disc_layers: int = Field(3, ge=1, le=5, description="Strided discriminator layers: 3 = 70x70 PatchGAN.")
    disc_norm: Literal["batch", "instance", "none"] = Field(
        "batch", description="Discriminator normalisation (pix2pix: batch)."
    )

    @model_validator(mode="after")
    def _dose_order(self) -> Pix2PixConfig:
        if self.dose_min > self.dose_max:
            raise ValueError(f"dose_min ({self.dose_min}) must not exceed dose_max ({self.dose_max})")
        return self


class Pix2Pix(SSLMethod):
    """Pix2Pix denoising: a U-Net generator restores Poisson-noisy micrographs against a PatchGAN (cGAN
    + 100 x L1); the generator's encoder transfers."""

    name = "pix2pix"
    Config = Pix2PixConfig
    transfers = "the encoder of the generator (U-Net)"


harness_methods = provides_methods(Pix2Pix)
