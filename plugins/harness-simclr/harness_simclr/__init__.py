"""SimCLR (Chen et al. 2020) for harness: two EM views of each crop, one shared encoder and a
projection MLP, pulled together against the rest of the batch with the NT-Xent loss.

Built on lightly 1.6 (``NTXentLoss``, ``SimCLRProjectionHead``); the views are the harness's
single-channel :func:`harness.augment.em_views` (crop, flip, 90-degree and small rotations,
brightness/contrast, blur, detector noise; no colour jitter). The encoder transfers.

This module stays light (config and registration only) so that listing methods does not import
lightly; the network lives in :mod:`harness_simclr.module` (``SimCLRModule``).
"""

from __future__ import annotations

from pydantic import Field

from harness.methods.base import SSLMethod, TwoViewConfig
from harness.plugins.hookspecs import provides_methods


class SimCLRConfig(TwoViewConfig):
    """SimCLR's recipe, scaled to the batch sizes a micrograph benchmark can afford.

    ``temperature`` defaults to 0.5, not ImageNet's 0.1: SimCLR reached 0.1 with batches of
    4096 (many negatives); for its small-data CIFAR-10 runs at batch 256-1024 the best value
    was 0.5, and harness batches are smaller still (4-64), where a low temperature makes the
    few negatives dominate and training noisy. lightly's ``NTXentLoss`` also defaults to 0.5.
    """

    temperature: float = Field(0.5, gt=0, le=10, description="NT-Xent softmax temperature.")
    hidden_dim: int | None = Field(
        None, ge=1, description="Projection MLP width; None: the encoder's width (SimCLR: 2048 for ResNet-50)."
    )
    output_dim: int = Field(128, ge=1, description="Projection output size (SimCLR: 128).")
    num_layers: int = Field(2, ge=2, le=4, description="Linear layers in the projection head (v1: 2, v2: 3).")


class SimCLR(SSLMethod):
    """SimCLR: NT-Xent contrast between two EM views of each crop (lightly heads and loss)."""

    name = "simclr"
    Config = SimCLRConfig
    transfers = "the encoder shared by both views"


harness_methods = provides_methods(SimCLR)
