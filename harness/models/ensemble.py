"""Several fine-tuned networks read as one (``--ensemble K``).

Each member is a :class:`~harness.models.SegmentationNet` fine-tuned from the same encoder with its
own seed. Their logits are never averaged: a task reads each member's logits as maps (probabilities,
flow fields, distances), and :mod:`harness.evaluation.predict` averages the maps, where a boundary
one member invents and the others do not see is outvoted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import torch
from torch import nn

from harness.errors import HarnessError
from harness.models.segmentation import SegmentationNet


class Ensemble(nn.Module):
    """``forward(x)`` gives each member's logits, stacked: (K, B, num_outputs, H, W)."""

    def __init__(self, members: Sequence[SegmentationNet]):
        super().__init__()
        if len(members) < 2:
            raise HarnessError(f"an ensemble needs at least two networks, got {len(members)}")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members])


def members_of(net: nn.Module) -> list[nn.Module]:
    """The networks whose maps are averaged: an ensemble's members, or the network itself."""
    return list(net.members) if isinstance(net, Ensemble) else [net]


#: what the evaluation reads (harness.evaluation.predict): one network, or an ensemble of them
Network: TypeAlias = SegmentationNet | Ensemble
