"""What a downstream task version is: a representation, its loss, and its post-processing.

The representation and the post-processing decide the numbers as much as the encoder does, so
they form the task's identity: every record states its task version, and records of different
versions never share a leaderboard table. The post-processing thresholds in ``tuned`` are chosen
per run on the validation split (:mod:`harness.task.tuning`), never on the test split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class InstanceTask:
    version: str
    description: str
    num_outputs: int
    # (mask, databar_rows) -> training target, (H, W) or (H, W, C); crops are padded with pad_value
    targets: Callable[[np.ndarray, int], np.ndarray]
    pad_value: float
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    # logits (1, num_outputs, H, W) -> the maps the post-processing reads, (C, H, W) float32
    maps: Callable[[torch.Tensor], np.ndarray]
    # an instance mask -> the maps a perfect network would give (the oracle reference)
    truth_maps: Callable[[np.ndarray], np.ndarray]
    instances: Callable[..., np.ndarray]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # post-processing parameters tuned on validation: name -> candidate values
    grid: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    # test-time augmentation: the maps that tuning, the test and `harness predict` read are the mean
    # over the image's 8 flips and quarter turns (harness.evaluation.predict.final_look); model
    # selection during fine-tuning reads plain maps, so training is the same as without it
    tta: bool = False
    # optional: (maps, full parameter sets) -> the labels of each in turn, as many calls of ``instances``
    # would give, sharing the stages the sets have in common (tuning reads a whole grid per image)
    instances_grid: Callable[[np.ndarray, list[dict[str, Any]]], Iterator[np.ndarray]] | None = None
    # the (y, x) channels of a vector field among the targets and outputs, if any: a flip or quarter
    # turn of the image turns these vectors too (:meth:`orient`)
    vector_channels: tuple[int, int] | None = None
    # the foreground probability (H, W) of the maps: channel 0 for the map tasks, 1 - background for the
    # class tasks (diagnostic scripts read it; the task's own reading is ``instances``)
    foreground: Callable[[np.ndarray], np.ndarray] = field(default=lambda maps: maps[0])

    def orient(self, values: ArrayT, quarter: int, flip: bool, channel_axis: int) -> ArrayT:
        """``values`` turned by ``quarter`` quarter turns (``rot90``'s sense), then mirrored left-right
        if ``flip``, any vector field turned and mirrored alike. ``values``: a target (H, W, C) with
        ``channel_axis=-1``, or outputs (B, C, H, W) with ``channel_axis=1``; numpy or torch."""
        if channel_axis not in (-1, 1):
            raise ValueError(f"orient: channel_axis must be -1 (H, W, C) or 1 (B, C, H, W), got {channel_axis}")
        rows, cols = (0, 1) if channel_axis == -1 else (-2, -1)
        if isinstance(values, torch.Tensor):
            turned = torch.rot90(values, quarter, (rows, cols))
            turned = turned.flip(cols) if flip else turned
        else:
            turned = np.rot90(values, quarter, (rows, cols))
            turned = np.flip(turned, cols) if flip else turned
        if self.vector_channels is None:
            return turned

        def channel(c: int) -> Any:
            return turned[..., c] if channel_axis == -1 else turned[:, c]

        y, x = self.vector_channels
        vy, vx = channel(y), channel(x)
        for _ in range(quarter % 4):  # a quarter turn of the image takes a vector (y, x) to (-x, y)
            vy, vx = -vx, vy
        if flip:
            vx = -vx
        parts = [channel(c) for c in range(turned.shape[channel_axis])]
        parts[y], parts[x] = vy, vx
        if isinstance(turned, torch.Tensor):
            return torch.stack(parts, dim=channel_axis)
        return np.stack(parts, axis=channel_axis)

    def to_instances(self, maps: np.ndarray, params: Mapping[str, Any] | None = None) -> np.ndarray:
        return self.instances(maps, **{**self.defaults, **(params or {})})

    def to_instances_each(self, maps: np.ndarray, candidates: list[dict[str, Any]]) -> Iterator[np.ndarray]:
        """:meth:`to_instances` for each parameter set of ``candidates``, in order, one at a time."""
        full = [{**self.defaults, **params} for params in candidates]
        if self.instances_grid is None:
            return (self.instances(maps, **params) for params in full)
        return self.instances_grid(maps, full)

    def candidates(self) -> list[dict[str, Any]]:
        """Every combination of the grid, the defaults first (ties go to the defaults)."""
        combos: list[dict[str, Any]] = [dict(self.defaults)]
        for name, values in self.grid.items():
            combos = [{**c, name: v} for c in combos for v in values]
        default = dict(self.defaults)
        return [default] + [c for c in combos if c != default]
