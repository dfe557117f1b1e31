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
    """The members, read through :func:`members_of`; an ensemble given as a member joins with its own."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        flat = [net for member in members for net in members_of(member)]
        if len(flat) < 2:
            raise HarnessError(f"an ensemble needs at least two networks, got {len(flat)}")
        self.members = nn.ModuleList(flat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # no logits stand for the ensemble: a task's maps of one member's logits would read that member alone
        raise HarnessError("an ensemble has no logits of its own: read its members' maps "
                           "(harness.evaluation.predict averages them)")


def members_of(net: nn.Module) -> list[nn.Module]:
    """The networks whose maps are averaged: an ensemble's members, or the network itself."""
    return list(net.members) if isinstance(net, Ensemble) else [net]


#: what the evaluation reads (harness.evaluation.predict): one network, or an ensemble of them
Network: TypeAlias = SegmentationNet | Ensemble
