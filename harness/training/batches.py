"""Batches for the loop, drawn deterministically: pretraining from (seed, step, rank), so each
process of a distributed run sees its own crops; fine-tuning from (seed, step) alone, since it is
not distributed and every rank must train on the same batches.

Each item of these map-style datasets is one whole batch, so ``DataLoader(batch_size=None,
num_workers=k)`` loads batches in parallel and the numbers do not depend on the worker count.
Only the region above an instrument data bar is ever cropped.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

import numpy as np
import torch

from harness.data.base import Dataset
from harness.data.intensity import to_unit_float
from harness.task import InstanceTask
from harness.task.scale import resample_image, resample_labels, second_look_scale


class ImageStore:
    """Model-ready images (float32 in [0, 1], data bar cut off) and, given a task, its training targets."""

    def __init__(self, dataset: Dataset, ids: list[str], task: InstanceTask | None = None, memory_mb: int = 2048,
                 scale: float = 1.0, second_look_px: float | None = None):
        if not ids:
            raise ValueError("an image store needs at least one image")
        self.dataset = dataset
        self.ids = list(ids)
        self.task = task
        self.scale = scale  # the working resolution (harness.task.scale); 1 = native pixels
        # with targets, each image at the factor its second look would reach, from its true particles
        self.second_look_px = second_look_px
        self.with_targets = task is not None
        self._budget = memory_mb * 2**20
        self._used = 0
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, sample_id: str) -> tuple[np.ndarray, np.ndarray | None]:
        if sample_id in self._cache:
            self._cache.move_to_end(sample_id)
            return self._cache[sample_id]
        sample = self.dataset.load(sample_id)
        rows = sample.valid_rows
        image = to_unit_float(sample.image, sample.databar_rows)[:rows]
        target, scale = None, self.scale
        if self.task is not None:
            if sample.mask is None:
                raise ValueError(f"sample {sample_id} has no mask but is used for fine-tuning")
            mask = np.asarray(sample.mask)[:rows]
            if self.second_look_px is not None:  # so that the network learns the sizes it is shown
                scale = second_look_scale(mask, self.scale, self.second_look_px)
            if scale == 1.0:
                target = self.task.targets(sample.mask, sample.databar_rows)[:rows]
            else:  # targets are made at the working resolution, from resampled instance ids
                target = self.task.targets(resample_labels(mask, scale), 0)
        image = resample_image(image, scale)
        item = (image, target)
        size = image.nbytes + (target.nbytes if target is not None else 0)
        if size <= self._budget:
            self._cache[sample_id] = item
            self._used += size
            while self._used > self._budget:
                _, (old_image, old_target) = self._cache.popitem(last=False)
                self._used -= old_image.nbytes + (old_target.nbytes if old_target is not None else 0)
        return item


def _crop_box(rng: np.random.Generator, shape: tuple[int, ...], size: int) -> tuple[int, int]:
    height, width = shape[:2]
    top = int(rng.integers(0, max(height - size, 0) + 1))
    left = int(rng.integers(0, max(width - size, 0) + 1))
    return top, left


def _crop(array: np.ndarray, top: int, left: int, size: int, pad_mode: Literal["reflect", "constant"],
          pad_value: float = 0) -> np.ndarray:
    """A size x size window of the first two axes (a target may carry channels last), padded."""
    patch = array[top : top + size, left : left + size]
    pad_h, pad_w = size - patch.shape[0], size - patch.shape[1]
    if pad_h or pad_w:  # images smaller than the crop
        widths = ((0, pad_h), (0, pad_w)) + ((0, 0),) * (patch.ndim - 2)
        if pad_mode == "constant":
            patch = np.pad(patch, widths, mode="constant", constant_values=pad_value)
        else:
            patch = np.pad(patch, widths, mode=pad_mode)
    return patch


class PretrainBatches(torch.utils.data.Dataset):
    """Random crops from the unlabeled pool; item ``step`` is the batch of that step.

    From a store with targets (the supervised control only) an item is (crops, target crops)."""

    def __init__(self, store: ImageStore, steps: int, batch: int, crop: int, seed: int, rank: int = 0):
        self.store, self.steps, self.batch, self.crop, self.seed, self.rank = store, steps, batch, crop, seed, rank

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, 1, step, self.rank])
        crops, target_crops = [], []
        for index in rng.integers(0, len(self.store), size=self.batch):
            image, target = self.store.get(self.store.ids[index])
            top, left = _crop_box(rng, image.shape, self.crop)
            crops.append(_crop(image, top, left, self.crop, "reflect"))
            if target is not None and self.store.task is not None:
                target_crops.append(_crop(target, top, left, self.crop, "constant", self.store.task.pad_value))
        images = torch.from_numpy(np.stack(crops)[:, None])
        return (images, torch.from_numpy(np.stack(target_crops))) if target_crops else images


def split_item(item: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(crops, target crops or None) of a ``PretrainBatches`` item, whichever store it came from."""
    return (item[0], item[1]) if isinstance(item, (tuple, list)) else (item, None)


class FinetuneBatches(torch.utils.data.Dataset):
    """Random crops of labeled images with their targets, randomly flipped and rotated by 90 degrees."""

    def __init__(self, store: ImageStore, steps: int, batch: int, crop: int, seed: int, pad_value: float):
        self.store, self.steps, self.batch, self.crop = store, steps, batch, crop
        self.seed, self.pad_value = seed, pad_value

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        # the trailing 0 is the rank slot these streams had before fine-tuning stopped depending on
        # the rank: kept, so filed records still reproduce
        rng = np.random.default_rng([self.seed, 2, step, 0])
        images, targets = [], []
        for index in rng.integers(0, len(self.store), size=self.batch):
            image, target = self.store.get(self.store.ids[index])
            if target is None or self.store.task is None:
                raise ValueError("fine-tuning batches need a store with targets (ImageStore(task=...))")
            top, left = _crop_box(rng, image.shape, self.crop)
            image = _crop(image, top, left, self.crop, "reflect")
            target = _crop(target, top, left, self.crop, "constant", self.pad_value)
            quarter, flip = int(rng.integers(0, 4)), bool(rng.integers(0, 2))
            image = np.rot90(image, quarter)
            image = image[:, ::-1] if flip else image
            target = self.store.task.orient(target, quarter, flip, channel_axis=-1)
            images.append(np.ascontiguousarray(image))
            targets.append(np.ascontiguousarray(target))
        # targets keep the task's dtype (class ids, or float maps); the task's loss reads them
        return torch.from_numpy(np.stack(images)[:, None]), torch.from_numpy(np.stack(targets))
