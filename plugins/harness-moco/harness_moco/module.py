"""The MoCo v2 networks: query (encoder, MLP head) and momentum key copy; the queue is the
memory bank of lightly's NT-Xent loss (a buffer, so checkpoints carry it)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from harness.compat import ensure_torchvision
from harness.methods.base import TwoViewModule, check_crops
from harness.models import encoder_width, pooled

ensure_torchvision()  # lightly imports torchvision, which needs this next to a CPU torch

from lightly.loss import NTXentLoss  # noqa: E402
from lightly.models.modules import MoCoProjectionHead  # noqa: E402
from lightly.models.utils import deactivate_requires_grad, update_momentum  # noqa: E402

from harness_moco import MoCoConfig  # noqa: E402


class MoCoModule(TwoViewModule):
    """``self.backbone`` is the query encoder; ``key_backbone`` its momentum copy."""

    def __init__(self, backbone: nn.Module, config: MoCoConfig):
        super().__init__(backbone, config)
        width = encoder_width(backbone)
        self.projection_head = MoCoProjectionHead(width, config.hidden_dim or width, config.output_dim)
        self.key_backbone = copy.deepcopy(backbone)
        self.key_projection_head = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.key_backbone)
        deactivate_requires_grad(self.key_projection_head)
        # InfoNCE of each query against its key and the queue; the loss enqueues the keys
        # under torchrun the keys of every rank are enqueued, as MoCo's own multi-GPU code does (one
        # process: unchanged), so the ranks' queues stay equal
        self.criterion = NTXentLoss(temperature=config.temperature,
                                    memory_bank_size=(config.queue_size, config.output_dim), gather_distributed=True)
        # lightly keeps the queue out of the state dict; a checkpoint must hold it, or a resumed
        # run would contrast against a fresh random queue
        bank = self.criterion.memory_bank
        for name in ("bank", "bank_ptr"):
            bank.register_buffer(name, getattr(bank, name), persistent=True)

    def training_step(self, images: torch.Tensor, step: int, total_steps: int) -> torch.Tensor:
        check_crops(images, "moco", min_batch=2)
        query_views, key_views = self.views(images)
        queries = self.projection_head(pooled(self.backbone, query_views))
        with torch.no_grad():
            keys = self.key_projection_head(pooled(self.key_backbone, key_views))
        return self.criterion(queries.float(), keys.float())

    @torch.no_grad()
    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        update_momentum(self.backbone, self.key_backbone, self.config.momentum)
        update_momentum(self.projection_head, self.key_projection_head, self.config.momentum)
