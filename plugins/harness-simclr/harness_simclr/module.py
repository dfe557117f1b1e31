"""The SimCLR network: encoder -> global average pool of the last stage -> projection MLP."""

from __future__ import annotations

import torch
from torch import nn

from harness.compat import ensure_torchvision
from harness.methods.base import TwoViewModule, check_crops
from harness.models import encoder_width, pooled

ensure_torchvision()  # lightly imports torchvision, which needs this next to a CPU torch

from lightly.loss import NTXentLoss  # noqa: E402
from lightly.models.modules import SimCLRProjectionHead  # noqa: E402

from harness_simclr import SimCLRConfig  # noqa: E402


class SimCLRModule(TwoViewModule):
    def __init__(self, backbone: nn.Module, config: SimCLRConfig):
        super().__init__(backbone, config)
        width = encoder_width(backbone)
        self.projection_head = SimCLRProjectionHead(
            input_dim=width,
            hidden_dim=config.hidden_dim or width,
            output_dim=config.output_dim,
            num_layers=config.num_layers,
            batch_norm=True,
        )
        # under torchrun every rank's views are negatives too, as in SimCLR's own large-batch runs (one
        # process: unchanged)
        self.criterion = NTXentLoss(temperature=config.temperature, gather_distributed=True)

    def embed(self, views: torch.Tensor) -> torch.Tensor:
        return self.projection_head(pooled(self.backbone, views))

    def training_step(self, images: torch.Tensor, step: int, total_steps: int) -> torch.Tensor:
        # the other crops of the batch are the negatives, and the head's BatchNorm needs two
        check_crops(images, "simclr", min_batch=2)
        first, second = self.views(images)
        # one encoder pass over both views: BatchNorm in the head sees the whole 2B batch
        z = self.embed(torch.cat([first, second]))
        z0, z1 = z.float().split(images.shape[0])
        return self.criterion(z0, z1)

    @torch.no_grad()
    def reference_loss(self, images: torch.Tensor, step: int, total_steps: int) -> float:
        """One constant embedding for every view: every pair looks alike, so NT-Xent is log(2B - 1)."""
        constant = torch.ones(images.shape[0], self.config.output_dim)
        return float(self.criterion(constant, constant))
