"""Task flows-v1: foreground plus Cellpose's flow field, instances by following the flows.

Each particle pixel's target is the unit vector of the heat flow from the particle's centre
(Cellpose's diffusion, ``cellpose.dynamics.masks_to_flows_gpu``); pixels then follow the predicted
field and those that end at one sink form one particle (``cellpose.dynamics``: ``follow_flows``,
``get_masks_torch``, ``remove_bad_flow_masks``). Unlike a distance map, whose ridge a textured
particle can break into several peaks, a flow field asks each pixel only which way its particle's
centre lies. The dynamics are Cellpose's own library functions (BSD-3, no weights); the network,
training and scale are the harness's, identical for every method.

The flow channels are vectors (y, x): a flip or quarter turn of an image turns them too, which the
task states in ``InstanceTask.vector_channels`` for fine-tuning's augmentation and the 8-view TTA.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness.compat import ensure_torchvision
from harness.errors import HarnessError
from harness.task.distmap import IGNORE_VALUE, foreground_loss
from harness.task.postprocess import checked_maps, kept_over_share, renumbered
from harness.task.targets import checked_mask

FOREGROUND, FLOW_Y, FLOW_X = 0, 1, 2
# Cellpose trains on flows scaled by 5 (so that the MSE term weighs like the foreground's BCE) and its
# dynamics read the network's output at that scale; the maps hold unit-scale flows
FLOW_SCALE = 5.0
FLOW_ITERATIONS = 200  # Cellpose's default number of steps each pixel follows the field


def _dynamics() -> Any:
    ensure_torchvision()  # cellpose imports torchvision, which needs the CPU shim next to a CPU torch
    from cellpose import dynamics

    # an image without particles is a result here, not a warning ("no seeds found ...") on the console
    logging.getLogger(dynamics.__name__).setLevel(logging.ERROR)
    return dynamics


def flow_targets(mask: np.ndarray, databar_rows: int = 0) -> np.ndarray:
    """float32 (H, W, 3): foreground (0/1, IGNORE_VALUE in the data bar) and the unit flow (y, x)
    towards each particle's centre (0 on background)."""
    labels = checked_mask(mask, databar_rows, "flow_targets")
    targets = np.zeros((*labels.shape, 3), dtype=np.float32)
    if labels.any():
        # Cellpose's diffusion wants ids 1..N with none missing
        consecutive = renumbered(labels)
        flows, _ = _dynamics().masks_to_flows_gpu(consecutive, device=torch.device("cpu"))
        targets[..., FLOW_Y], targets[..., FLOW_X] = flows[0], flows[1]
        targets[..., FOREGROUND] = labels > 0
    if databar_rows > 0:
        targets[labels.shape[0] - databar_rows :, :, FOREGROUND] = IGNORE_VALUE
    return targets


def flow_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Foreground BCE + soft Dice (:func:`~harness.task.distmap.foreground_loss`) + half the MSE of the
    flows at Cellpose's scale, over valid pixels. ``logits``: (B, 3, H, W) float32 (foreground logit,
    flow y, flow x); ``targets``: (B, H, W, 3) from :func:`flow_targets` (crops padded with IGNORE_VALUE).
    """
    foreground, valid, targets = foreground_loss(logits, targets, 3, "flow_loss")
    flows = logits[:, FLOW_Y:].permute(0, 2, 3, 1)[valid]
    mse = F.mse_loss(flows, FLOW_SCALE * targets[..., FLOW_Y:][valid])
    return foreground + mse / 2


def flow_maps(logits: torch.Tensor) -> np.ndarray:
    """(3, H, W) float32 maps of one image's logits (1, 3, H, W): foreground probability, flow y, flow x
    (unit scale)."""
    logits = logits.float()[0]
    return torch.cat([torch.sigmoid(logits[:1]), logits[1:] / FLOW_SCALE]).cpu().numpy()


def truth_flow_maps(mask: np.ndarray) -> np.ndarray:
    """The maps a perfect network would output for ``mask``: the oracle's input."""
    return np.moveaxis(flow_targets(mask), -1, 0)


def flow_instances(
    maps: np.ndarray,
    foreground_threshold: float = 0.5,
    flow_threshold: float = 0.4,
    min_size_px: int = 4,
    min_share: float = 0.0,
) -> np.ndarray:
    """Instance labels (int32, 0 = background, ids 1..N in raster order) from (3, H, W) maps.

    The pixels whose foreground probability passes ``foreground_threshold`` follow the flow field for
    FLOW_ITERATIONS steps; those that end at one sink are one particle. With ``flow_threshold`` > 0, a
    particle whose own flows (recomputed from its shape) differ from the predicted ones by more than
    that (mean squared error, Cellpose's quality check) is dropped. Holes are filled; particles under
    ``min_size_px`` pixels or under ``min_share`` of the largest are dropped.

    Cellpose starts a particle only where more than 10 pixels end at one sink, so even true maps lose a
    particle of about 10 pixels (a disk 3-4 px across at the working resolution): the task's floor on
    size, well under the 32 px the working resolution aims particles at.
    """
    return next(flow_instances_grid(maps, [{
        "foreground_threshold": foreground_threshold, "flow_threshold": flow_threshold,
        "min_size_px": min_size_px, "min_share": min_share}]))


def flow_instances_grid(maps: np.ndarray, candidates: Sequence[Mapping[str, Any]]) -> Iterator[np.ndarray]:
    """:func:`flow_instances` of ``maps`` for each parameter set in ``candidates``, in order; the flow
    following is done once per foreground threshold, the quality check once per flow threshold."""
    maps = checked_maps(maps, 3, "flow_instances")
    readouts = [_FlowReadout(**candidate) for candidate in candidates]
    return _read_each(maps, readouts)


def _read_each(maps: np.ndarray, readouts: list[_FlowReadout]) -> Iterator[np.ndarray]:
    dynamics = _dynamics()
    cpu = torch.device("cpu")
    flows = (FLOW_SCALE * maps[FLOW_Y:]).astype(np.float32)

    @cache  # a few thresholds, and the cache lives for one image's grid
    def followed(threshold: float) -> np.ndarray:
        inside = maps[FOREGROUND] > threshold
        if not inside.any():
            return np.zeros(inside.shape, dtype=np.int32)
        # what cellpose.dynamics.compute_masks does before its quality check; no particle is dropped
        # for its size here (max_size_fraction 1): a micrograph of one large particle is a real case
        pixels = np.nonzero(inside)
        unit = (maps[FLOW_Y:] * inside).astype(np.float32)
        ends = dynamics.follow_flows(unit, inds=pixels, niter=FLOW_ITERATIONS, device=cpu)
        ends = torch.as_tensor(ends).int()
        with warnings.catch_warnings():  # torch's notice about sparse-tensor checks, on every call
            warnings.simplefilter("ignore", UserWarning)
            labels = dynamics.get_masks_torch(ends, pixels, inside.shape, max_size_fraction=1.0)
        return np.asarray(labels).astype(np.int32)

    @lru_cache(maxsize=2)  # the grid's last keys vary fastest: each (foreground, check) pair is read in a row
    def checked(threshold: float, flow_threshold: float, min_size: int) -> np.ndarray:
        labels = followed(threshold).copy()  # cellpose edits its masks in place; the cache keeps its own
        if labels.max() > 0 and flow_threshold > 0:
            # the check reads the flows at the network's scale, as compute_masks passes them
            labels = np.asarray(dynamics.remove_bad_flow_masks(labels, flows, threshold=flow_threshold, device=cpu))
        if labels.max() > 0:
            labels = dynamics.utils.fill_holes_and_remove_small_masks(labels, min_size=min_size)
        return renumbered(np.asarray(labels).astype(np.int32))

    for r in readouts:
        labels = checked(r.foreground_threshold, r.flow_threshold, r.min_size_px)
        yield kept_over_share(labels, r.min_share)


@dataclass(frozen=True)
class _FlowReadout:
    """One parameter set of :func:`flow_instances`, checked."""

    foreground_threshold: float = 0.5
    flow_threshold: float = 0.4
    min_size_px: int = 4
    min_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.foreground_threshold < 1.0:
            raise HarnessError(
                f"flow_instances: foreground_threshold must lie in (0, 1), got {self.foreground_threshold}")
        if self.flow_threshold < 0:
            raise HarnessError(f"flow_instances: flow_threshold must be >= 0 (0: no check), got {self.flow_threshold}")
        if self.min_size_px < 0:
            raise HarnessError(f"flow_instances: min_size_px must be >= 0, got {self.min_size_px}")
