"""MoCo v2 (Chen, Fan, Girshick and He 2020) for harness: a query encoder with an MLP head learns
to pick, for each crop, the key that a momentum copy of itself gives for another view, against
a queue of keys from earlier batches (InfoNCE). A baseline of Rettenberger et al. 2025 and the
method of CEM500K (Conrad and Narayan 2021).

Built on lightly 1.6 (``MoCoProjectionHead``, ``NTXentLoss`` with its memory bank as the queue,
``update_momentum``); views are the harness's single-channel :func:`harness.augment.em_views`.
The QUERY encoder transfers: it is the one the gradients train (MoCo evaluates it).

This module holds config and registration only, so listing methods does not import lightly;
the network lives in :mod:`harness_moco.module`.
"""

from __future__ import annotations

from pydantic import Field

from harness.methods.base import SSLMethod, TwoViewConfig
from harness.plugins.hookspecs import provides_methods


class MoCoConfig(TwoViewConfig):
    """MoCo v2's recipe: a 2-layer MLP head to 128, temperature 0.2, a queue of 65,536 keys and a
    key encoder following the query encoder with momentum 0.999.

    The queue starts as random unit vectors (as in the reference code) and, at the quick
    profile's 300 steps of 16 crops, never fills; the momentum keeps the key encoder close to its
    initialisation in so short a run (0.999^300 = 0.74 of it remains). Both are the paper's
    values, kept so that the method is the published one; ``--config`` changes them.
    """

    hidden_dim: int | None = Field(
        None, ge=1, description="Head MLP width; None: the encoder's width (MoCo v2: 2048 for ResNet-50)."
    )
    output_dim: int = Field(128, ge=1, description="Head output size (MoCo v2: 128).")
    temperature: float = Field(0.2, gt=0, le=10, description="InfoNCE temperature (MoCo v2: 0.2).")
    queue_size: int = Field(65536, ge=1, description="Keys kept as negatives (MoCo: 65,536).")
    momentum: float = Field(0.999, ge=0, le=1, description="Key encoder EMA momentum (MoCo: 0.999).")
    crop_scale: tuple[float, float] = Field(
        (0.2, 1.0), description="Area share of the input crop that each view covers (MoCo v2: 0.2-1)."
    )


class MoCo(SSLMethod):
    """MoCo v2: query vs momentum-key contrast with a queue of negatives (lightly)."""

    name = "moco"
    Config = MoCoConfig
    transfers = "the query encoder (not the momentum key encoder)"


harness_methods = provides_methods(MoCo)
