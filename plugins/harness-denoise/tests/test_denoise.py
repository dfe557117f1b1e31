"""The denoising pretext: it learns, it transfers, its config validates, its entry point works."""

from __future__ import annotations

import pytest
import torch
from harness_denoise import Denoise, DenoiseConfig

from harness.models import create_backbone
from harness.testing import MethodContract, fit_fixed_batch, smooth_batch

BACKBONE = "convnextv2_atto"


def test_a_few_steps_on_a_fixed_batch_lower_the_loss():
    torch.manual_seed(0)
    module = Denoise().build(create_backbone(BACKBONE))
    # the same noise and views at every step: a fixed batch of smooth, learnable images
    losses = fit_fixed_batch(module, smooth_batch(4, 64), 8, view_seed=123, lr=1e-3, weight_decay=0.01)
    assert losses[-1] < 0.8 * losses[0]


def test_defaults_follow_the_source_work():
    config = DenoiseConfig()
    assert config.dose_min < config.dose_max and config.loss == "l1"


class TestContract(MethodContract):
    method = Denoise
    distribution = "harness-denoise"
    transfers_from = "net.encoder"  # the U-Net's own encoder
    bad_configs = [({"dose_min": 0}, "dose_min"), ({"dose_min": 60.0}, "dose_min"), ({"loss": "huber"}, "loss"),
                   ({"colour": 1}, "colour")]


def test_the_rule_without_learning_is_the_best_blur_of_the_same_noisy_crops():
    """reference_loss: the clean crops and noise training_step would draw, restored by the best
    Gaussian blur of the noisy crop (or the noisy crop itself); recomputed here with numpy."""
    import numpy as np
    from scipy import ndimage

    from harness import augment

    module = TestContract().build()
    images = TestContract().batch(n=4)
    torch.manual_seed(7)
    value = module.reference_loss(images, 0, 1)
    torch.manual_seed(7)
    clean = augment.random_geometry(images, images.shape[-1], scale=(0.5, 1.0))
    noisy = augment.poisson_noise(clean, (module.config.dose_min, module.config.dose_max))[:, 0].numpy()
    truth = clean[:, 0].numpy()
    blurred = [noisy] + [ndimage.gaussian_filter(noisy, (0, s, s), mode="reflect") for s in (0.5, 1, 1.5, 2, 3)]
    assert value == pytest.approx(min(float(np.abs(b - truth).mean()) for b in blurred), rel=1e-5)
