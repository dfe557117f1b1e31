"""The DINO networks: student and momentum teacher, each an encoder (pooled last feature map)
followed by a DINO projection head, trained with lightly's centred cross-entropy."""

from __future__ import annotations

import copy
import math
import warnings

import torch
from torch import nn
from torch.func import functional_call

from harness import augment
from harness.compat import ensure_torchvision
from harness.errors import HarnessError
from harness.methods.base import PretrainModule, check_crops
from harness.models import encoder_width, pooled

ensure_torchvision()  # lightly imports torchvision, which needs this next to a CPU torch

from lightly.loss import DINOLoss  # noqa: E402
from lightly.models.modules import DINOProjectionHead  # noqa: E402
from lightly.models.utils import deactivate_requires_grad, update_momentum  # noqa: E402
from lightly.utils.scheduler import cosine_schedule  # noqa: E402

from harness_dino import DINOConfig  # noqa: E402

LOCAL_TO_GLOBAL = 96 / 224  # DINO's local/global crop sides




class DINOModule(PretrainModule):
    """``self.backbone``/``student_head`` learn by gradient; ``teacher_*`` are their moving averages."""

    def __init__(self, backbone: nn.Module, config: DINOConfig):
        super().__init__(backbone)
        self.config = config
        reductions = getattr(backbone, "reductions", None)
        self.stride = int(reductions[-1]) if reductions else 32
        self.student_head = self._head(encoder_width(backbone))
        # lightly's head uses the old weight_norm, whose computed weight cannot be deep-copied:
        # build the teacher head afresh and copy the student's state into it instead
        self.teacher_head = self._head(encoder_width(backbone))
        self.teacher_head.load_state_dict(self.student_head.state_dict())
        self.teacher_backbone = copy.deepcopy(backbone)
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)
        self.criterion = DINOLoss(
            output_dim=config.output_dim,
            warmup_teacher_temp=config.warmup_teacher_temp,
            teacher_temp=config.teacher_temp,
            student_temp=config.student_temp,
            center_momentum=config.center_momentum,
        )

    def _head(self, width: int) -> DINOProjectionHead:
        c = self.config
        with warnings.catch_warnings():  # torch's deprecation notice for weight_norm, inside lightly
            warnings.simplefilter("ignore", FutureWarning)
            return DINOProjectionHead(
                input_dim=width,
                hidden_dim=c.hidden_dim,
                bottleneck_dim=c.bottleneck_dim,
                output_dim=c.output_dim,
                batch_norm=c.batch_norm_head,
                norm_last_layer=c.norm_last_layer,
            )

    # schedules, all in optimiser steps
    def teacher_temperature(self, step: int, total_steps: int) -> float:
        """Linear warm-up from ``warmup_teacher_temp`` to ``teacher_temp``, then constant."""
        c = self.config
        warm = int(round(c.teacher_temp_warmup_fraction * total_steps))
        if warm <= 0 or step >= warm:
            return c.teacher_temp
        return c.warmup_teacher_temp + (c.teacher_temp - c.warmup_teacher_temp) * step / warm

    def momentum(self, step: int, total_steps: int) -> float:
        """Teacher EMA momentum: lightly's cosine schedule from ``momentum_start`` to ``momentum_end``."""
        return cosine_schedule(step, total_steps, self.config.momentum_start, self.config.momentum_end)

    def last_layer_frozen(self, step: int, total_steps: int) -> bool:
        return step < int(round(self.config.freeze_last_layer_fraction * total_steps))

    def view_sizes(self, images: torch.Tensor) -> tuple[int, int]:
        """(global, local) view sides; the default local side is a multiple of the encoder stride."""
        global_size = self.config.global_size or images.shape[-1]
        local_size = self.config.local_size
        if local_size is None:
            local_size = max(self.stride, round(global_size * LOCAL_TO_GLOBAL / self.stride) * self.stride)
        if local_size > global_size:
            raise HarnessError(
                f"dino: local views ({local_size} px) would be larger than global views ({global_size} px); "
                "set local_size or global_size"
            )
        return global_size, local_size

    def views(self, images: torch.Tensor, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Two global views, then ``n_local_crops`` local views, each (B, 1, size, size)."""
        c = self.config
        global_size, local_size = self.view_sizes(images)
        return augment.multi_crop_views(
            images, global_size, local_size, c.n_local_crops, c.global_scale, c.local_scale, generator
        )

    def _student(self, views: torch.Tensor, frozen: bool) -> torch.Tensor:
        features = pooled(self.backbone, views)
        if not frozen:
            return self.student_head(features)
        # frozen prototypes: run the last layer on detached weights, so they get no gradient at all
        # (grad None: AdamW skips them, as DINO's cancel_gradients_last_layer does)
        head = self.student_head
        bottleneck = nn.functional.normalize(head.layers(features), dim=-1, p=2)
        detached = {name: p.detach() for name, p in head.last_layer.named_parameters()}
        return functional_call(head.last_layer, detached, (bottleneck,))

    def training_step(self, images: torch.Tensor, step: int, total_steps: int) -> torch.Tensor:
        check_crops(images, "dino", min_batch=2 if self.config.batch_norm_head else 1)  # BatchNorm in the head
        b = images.shape[0]
        views = self.views(images)
        global_views = torch.cat(views[:2])
        with torch.no_grad():
            teacher_out = self.teacher_head(pooled(self.teacher_backbone, global_views)).float().split(b)
        frozen = self.last_layer_frozen(step, total_steps)
        student_out = list(self._student(global_views, frozen).float().split(b))
        if len(views) > 2:  # local views have another size: one more encoder pass
            student_out += self._student(torch.cat(views[2:]), frozen).float().split(b)
        return self.criterion(
            list(teacher_out), student_out, teacher_temp=self.teacher_temperature(step, total_steps)
        )

    @torch.no_grad()
    def reference_loss(self, images: torch.Tensor, step: int, total_steps: int) -> float:
        """One constant student output (a uniform softmax over the prototypes, DINO's collapse):
        its cross-entropy against any teacher is log(output_dim). Not computed with the loss
        itself, whose forward moves the teacher's centre."""
        return math.log(self.config.output_dim)

    @torch.no_grad()
    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        m = self.momentum(step, total_steps)
        update_momentum(self.backbone, self.teacher_backbone, m)
        update_momentum(self.student_head, self.teacher_head, m)

    def transfer_state(self) -> dict[str, torch.Tensor]:
        """The TEACHER encoder transfers (DINO evaluates the teacher, the better of the two)."""
        return self.teacher_backbone.state_dict()
