"""FCMAE (fully convolutional masked autoencoder; ConvNeXt V2, Woo et al. 2023) for harness, the
pretext that Rettenberger et al. (npj Comput. Mater. 2025) found best for SEM particle
segmentation.

Random 32 px patches of each crop are hidden, a ConvNeXt encoder sees only the visible ones and a
light decoder (one ConvNeXt V2 block) predicts the hidden pixels; the loss is the MSE on hidden
patches only. The source work used MinkowskiEngine sparse convolutions (CUDA only). Here the
encoder runs densely and re-applies the mask wherever a sparse network would skip masked sites
(see :mod:`harness_fcmae.encoder`), so it runs on any device and computes, at visible positions,
what the sparse encoder computes. The encoder transfers.

This module holds the config and the registration only, so that listing methods stays fast; the
network lives in :mod:`harness_fcmae.module` (``FCMAEModule``), imported when a run builds it.
"""

from __future__ import annotations

from pydantic import Field

from harness.methods.base import MethodConfig, SSLMethod
from harness.plugins.hookspecs import provides_methods


class FCMAEConfig(MethodConfig):
    """The source work's public FCMAE recipe.

    ``mask_ratio`` defaults to 0.6, the value in the released pretraining code (ConvNeXt V2's
    ``main_pretrain.py``, reused by Rettenberger et al.), which is what produced the published
    weights and numbers; the paper text states 0.5. Set 0.5 to follow the text.
    The patch size is not a setting: it is the encoder's total stride (32 px for every ConvNeXt),
    as in the source, so that each patch is exactly one position of the deepest feature map.
    Optimiser defaults are the recipe's: AdamW betas (0.9, 0.95), weight decay 0.05; the learning
    rate is left to the harness profile (the ``paper`` profile uses the recipe's
    1.5e-4 * batch / 256; the short CPU profiles use a larger fixed rate).
    """

    mask_ratio: float = Field(0.6, gt=0, lt=1, description="Share of patches hidden from the encoder.")
    decoder_dim: int = Field(512, ge=1, description="Decoder width (source: 512).")
    decoder_depth: int = Field(1, ge=1, le=8, description="ConvNeXt V2 blocks in the decoder (source: 1).")
    norm_pix_loss: bool = Field(
        False, description="Normalise each target patch to zero mean, unit variance (source: off)."
    )
    flip: bool = Field(True, description="Random horizontal flip of each crop (source: on).")
    betas: tuple[float, float] | None = Field((0.9, 0.95), description="AdamW betas.")
    weight_decay: float | None = Field(0.05, ge=0, description="AdamW weight decay.")


class FCMAE(SSLMethod):
    """FCMAE (ConvNeXt V2): reconstruct hidden 32 px patches (60% by default) from the visible ones;
    dense leak-free masked encoder, ConvNeXt backbones only."""

    name = "fcmae"
    Config = FCMAEConfig
    transfers = "the masked ConvNeXt encoder (run unmasked downstream)"


harness_methods = provides_methods(FCMAE)
