"""The BYOL networks: online (encoder, projection, prediction) and momentum target (encoder,
projection), both pooling the encoder's last feature map."""

from __future__ import annotations

import copy

import torch
from torch import nn

from harness.compat import ensure_torchvision
from harness.methods.base import TwoViewModule, check_crops
from harness.models import encoder_width, pooled

ensure_torchvision()  # lightly imports torchvision, which needs this next to a CPU torch

from lightly.loss import NegativeCosineSimilarity  # noqa: E402
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead  # noqa: E402
from lightly.models.utils import deactivate_requires_grad, update_momentum  # noqa: E402
from lightly.utils.scheduler import cosine_schedule  # noqa: E402

from harness_byol import BYOLConfig  # noqa: E402


class BYOLModule(TwoViewModule):
    """``self.backbone`` is the online encoder; ``target_backbone`` its momentum copy."""

    def __init__(self, backbone: nn.Module, config: BYOLConfig):
        super().__init__(backbone, config)
        width = encoder_width(backbone)
        self.projection_head = BYOLProjectionHead(width, config.projection_hidden_dim, config.projection_dim)
        self.prediction_head = BYOLPredictionHead(
            config.projection_dim, config.prediction_hidden_dim, config.projection_dim
        )
        # the target starts as an exact copy and never receives gradients (nor an optimiser:
        # the harness optimises only parameters that require grad)
        self.target_backbone = copy.deepcopy(backbone)
        self.target_projection_head = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.target_backbone)
        deactivate_requires_grad(self.target_projection_head)
        self.criterion = NegativeCosineSimilarity()

    def momentum(self, step: int, total_steps: int) -> float:
        """Target EMA momentum: lightly's cosine schedule from ``momentum_start`` to ``momentum_end``."""
        return cosine_schedule(step, total_steps, self.config.momentum_start, self.config.momentum_end)

    def training_step(self, images: torch.Tensor, step: int, total_steps: int) -> torch.Tensor:
        check_crops(images, "byol", min_batch=2)  # its heads hold BatchNorm
        b = images.shape[0]
        first, second = self.views(images)
        both = torch.cat([first, second])
        predictions = self.prediction_head(self.projection_head(pooled(self.backbone, both)))
        with torch.no_grad():
            targets = self.target_projection_head(pooled(self.target_backbone, both))
        p0, p1 = predictions.float().split(b)
        z0, z1 = targets.float().split(b)
        # symmetric: each view's prediction regresses the target projection of the other view
        return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))

    @torch.no_grad()
    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        m = self.momentum(step, total_steps)
        update_momentum(self.backbone, self.target_backbone, m)
        update_momentum(self.projection_head, self.target_projection_head, m)
