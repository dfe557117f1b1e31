"""Test-time augmentation (distmap-v3): the maps are the mean over the image's 8 flips and quarter
turns, each turned back, so a network's orientation bias cancels; tuning, the test and `harness
predict` read them, model selection does not."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from harness.data.sample import Sample
from harness.evaluation.predict import dihedral_maps, final_look, maps_at
from harness.task import get_task
from harness.testing import single_thread
from harness.training.runtime import resolve_runtime


def biased_network(seed: int = 0) -> nn.Module:
    """A 5x5 convolution with random weights: it sees a turned image differently (not equivariant)."""
    torch.manual_seed(seed)
    return nn.Conv2d(1, 2, 5, padding=2).eval()


def square_sample(image: np.ndarray) -> Sample:
    return Sample(id="s", image=image.astype(np.float32), mask=np.zeros(image.shape, np.int32), pixel_size_nm=None)


def test_the_dihedral_mean_turns_with_the_image_where_one_view_does_not():
    rng = np.random.default_rng(0)
    image = rng.random((32, 32)).astype(np.float32)
    task, runtime, net = get_task("distmap-v3"), resolve_runtime("cpu"), biased_network()
    with single_thread():
        upright, turned = square_sample(image), square_sample(np.rot90(image).copy())
        once = maps_at(net, upright, runtime, task), maps_at(net, turned, runtime, task)
        mean = dihedral_maps(net, upright, runtime, task), dihedral_maps(net, turned, runtime, task)
    assert not np.allclose(np.rot90(once[0], axes=(1, 2)), once[1], atol=1e-3)  # the bias the mean removes
    np.testing.assert_allclose(np.rot90(mean[0], axes=(1, 2)), mean[1], atol=1e-5)
    flipped = square_sample(image[:, ::-1].copy())
    with single_thread():
        np.testing.assert_allclose(mean[0][:, :, ::-1], dihedral_maps(net, flipped, runtime, task), atol=1e-5)


def test_an_equivariant_network_gives_the_same_maps_with_or_without_it():
    net = nn.Conv2d(1, 2, 1).eval()  # a per-pixel map commutes with every flip and turn
    sample = square_sample(np.random.default_rng(1).random((24, 40)))
    task, runtime = get_task("distmap-v3"), resolve_runtime("cpu")
    np.testing.assert_allclose(dihedral_maps(net, sample, runtime, task), maps_at(net, sample, runtime, task),
                               atol=1e-6)


def test_each_task_says_how_its_maps_are_read_at_the_end():
    assert final_look(get_task("distmap-v3")) is dihedral_maps
    assert final_look(get_task("distmap-v2")) is maps_at and final_look(get_task("3class-v1")) is maps_at
