"""The positive control ``supervised``: pretraining that cheats on purpose.

Its "pretraining" trains the encoder on the downstream task itself, with the ground truth of the
unlabeled pool, which no SSL method ever sees (only embedded datasets have it). Then, like every
method, only the encoder transfers and fine-tuning starts from a fresh decoder on the label budget.
It is the most an encoder pretrained on that pool could give, so it shows that the benchmark can
see a better encoder: if ``supervised`` does not beat ``none`` at small budgets, the benchmark
cannot rank anything. Tables mark it as a control and never rank it as a competitor.
"""

from __future__ import annotations

import torch

from harness.errors import HarnessError
from harness.methods.base import MethodConfig, PretrainModule, SSLMethod
from harness.models import SegmentationNet
from harness.plugins.hookspecs import provides_methods
from harness.task import InstanceTask


class SupervisedModule(PretrainModule):
    def __init__(self, backbone: torch.nn.Module, task: InstanceTask):
        super().__init__(backbone)
        self.task = task
        self.net = SegmentationNet(backbone, num_outputs=task.num_outputs)

    def training_step(self, images: torch.Tensor, step: int, total_steps: int,
                      targets: torch.Tensor | None = None) -> torch.Tensor:
        if targets is None:
            raise HarnessError("supervised: training_step needs the crops' targets (a hidden-label control)")
        # the same dihedral view of crops and targets: the fine-tuning stage's own augmentation
        quarter = int(torch.randint(0, 4, ()).item())
        images = torch.rot90(images, quarter, dims=(-2, -1))
        targets = torch.rot90(targets, quarter, dims=(1, 2))
        if bool(torch.randint(0, 2, ()).item()):
            images, targets = images.flip(-1), targets.flip(2)
        return self.task.loss(self.net(images).float(), targets)


class Supervised(SSLMethod):
    """Positive control: the encoder is pretrained on the downstream task with the unlabeled pool's
    hidden ground truth (embedded datasets only); not an SSL method."""

    name = "supervised"
    Config = MethodConfig
    transfers = "the encoder of the task network trained on the unlabeled pool's ground truth"
    uses_hidden_labels = True
    role = "control"
    # 300 quick-profile steps leave a supervised encoder no better than a random one (measured: frozen,
    # 10% budget, validation F1 0.59 vs 0.60); a ceiling must be trained to convergence
    pretrain_steps_factor = 3

    def build(self, backbone: torch.nn.Module, task: InstanceTask | None = None) -> SupervisedModule:  # type: ignore[override]
        if task is None:
            raise HarnessError("supervised: build needs the downstream task (the harness passes it)")
        return SupervisedModule(backbone, task)


harness_methods = provides_methods(Supervised)
