"""BYOL (Grill et al. 2020) for harness: an online encoder with projection and prediction MLPs
learns to predict the projection that a slowly moving target copy gives for another view.

Built on lightly 1.6 (``BYOLProjectionHead``, ``BYOLPredictionHead``,
``NegativeCosineSimilarity``, ``update_momentum``, ``cosine_schedule``); views are the harness's
single-channel :func:`harness.augment.em_views`. The ONLINE encoder transfers: it is the one the
gradients train, and the target is only its moving average (BYOL evaluates the online encoder).

This module holds config and registration only, so listing methods does not import lightly;
the network lives in :mod:`harness_byol.module`.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from harness.methods.base import SSLMethod, TwoViewConfig
from harness.plugins.hookspecs import provides_methods


class BYOLConfig(TwoViewConfig):
    """BYOL's recipe: 4096-wide MLPs to 256, target momentum rising along a cosine to 1.

    ``momentum_start`` is 0.99, the paper's base value for its shorter (300-epoch) runs, not
    0.996 (1000 epochs): harness pretraining runs are short, so the target must follow the
    online network faster early on; it still ends at exactly 1.0.
    """

    projection_hidden_dim: int = Field(4096, ge=1, description="Projection MLP width (BYOL: 4096).")
    projection_dim: int = Field(256, ge=1, description="Projection output size (BYOL: 256).")
    prediction_hidden_dim: int = Field(4096, ge=1, description="Prediction MLP width (BYOL: 4096).")
    momentum_start: float = Field(0.99, ge=0, le=1, description="Target EMA momentum at step 0.")
    momentum_end: float = Field(1.0, ge=0, le=1, description="Target EMA momentum at the last step.")

    @model_validator(mode="after")
    def _momentum_order(self) -> BYOLConfig:
        if self.momentum_start > self.momentum_end:
            raise ValueError(
                f"momentum_start ({self.momentum_start}) must not exceed momentum_end ({self.momentum_end})"
            )
        return self


class BYOL(SSLMethod):
    """BYOL: online network predicts a momentum target's projection of another view (lightly)."""

    name = "byol"
    Config = BYOLConfig
    transfers = "the online encoder (not the momentum target)"


harness_methods = provides_methods(BYOL)
