"""The Barlow Twins network: encoder -> global average pool of the last stage -> projector."""

from __future__ import annotations

import torch
from torch import nn

from harness.compat import ensure_torchvision
from harness.methods.base import TwoViewModule, check_crops
from harness.models import encoder_width, pooled

ensure_torchvision()  # lightly imports torchvision, which needs this next to a CPU torch

from lightly.loss import BarlowTwinsLoss  # noqa: E402
from lightly.models.modules import BarlowTwinsProjectionHead  # noqa: E402

from harness_barlowtwins import BarlowTwinsConfig  # noqa: E402


class BarlowTwinsModule(TwoViewModule):
    def __init__(self, backbone: nn.Module, config: BarlowTwinsConfig):
        super().__init__(backbone, config)
        self.projection_head = BarlowTwinsProjectionHead(
            encoder_width(backbone), config.projection_hidden_dim, config.projection_dim
        )
        # under torchrun the cross-correlation is of the whole batch over the ranks (one process: unchanged)
        self.criterion = BarlowTwinsLoss(lambda_param=config.lambda_param, gather_distributed=True)

    def embed(self, views: torch.Tensor) -> torch.Tensor:
        return self.projection_head(pooled(self.backbone, views))

    def training_step(self, images: torch.Tensor, step: int, total_steps: int) -> torch.Tensor:
        check_crops(images, "barlowtwins", min_batch=2)  # the cross-correlation is normalised over the batch
        first, second = self.views(images)
        # each view's batch goes through on its own, as in the paper: the projector's BatchNorm
        # (and the loss's normalisation) see one view's batch at a time
        return self.criterion(self.embed(first).float(), self.embed(second).float())
