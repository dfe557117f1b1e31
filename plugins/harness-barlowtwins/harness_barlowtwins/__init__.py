"""Barlow Twins (Zbontar et al. 2021) for harness: two EM views of each crop through one encoder
and a wide projector; the cross-correlation matrix of the two batches of embeddings is pushed
to the identity (invariance on the diagonal, redundancy reduction off it). No negatives, no
momentum network. Used beside SimCLR by Lu et al. 2022 and among the baselines of Rettenberger
et al. 2025.

Built on lightly 1.6 (``BarlowTwinsProjectionHead``, ``BarlowTwinsLoss``); the views are the
harness's single-channel :func:`harness.augment.em_views`. The encoder transfers.

This module holds config and registration only, so listing methods does not import lightly;
the network lives in :mod:`harness_barlowtwins.module`.
"""

from __future__ import annotations

from pydantic import Field

from harness.methods.base import SSLMethod, TwoViewConfig
from harness.plugins.hookspecs import provides_methods


class BarlowTwinsConfig(TwoViewConfig):
    """The paper's recipe: a 3-layer projector 8192-8192-8192 (BatchNorm and ReLU between) and
    the off-diagonal weight lambda = 0.0051.

    The 8192-wide projector holds ~150 M parameters with a ConvNeXt-atto encoder (about 1.8 GB with
    AdamW's state): the paper found narrower projectors clearly worse, so it stays the default;
    ``projection_dim=2048`` is the lighter choice on small machines (stated in the record's config).
    """

    projection_hidden_dim: int = Field(8192, ge=1, description="Projector hidden width (Barlow Twins: 8192).")
    projection_dim: int = Field(8192, ge=1, description="Projector output size (Barlow Twins: 8192).")
    lambda_param: float = Field(0.0051, gt=0, le=1, description="Weight of the off-diagonal (redundancy) term.")


class BarlowTwins(SSLMethod):
    """Barlow Twins: cross-correlation of two EM views' embeddings pushed to the identity (lightly)."""

    name = "barlowtwins"
    Config = BarlowTwinsConfig
    transfers = "the encoder shared by both views"


harness_methods = provides_methods(BarlowTwins)
