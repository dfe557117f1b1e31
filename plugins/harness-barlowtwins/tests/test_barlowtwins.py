"""Barlow Twins plugin: config, registration, the loss against an independent computation, a
falling loss on fixed views, the encoder that transfers."""

from __future__ import annotations

import math

import torch
from harness_barlowtwins import BarlowTwins, BarlowTwinsConfig

from harness.testing import MethodContract, fit_fixed_batch

SMALL = {"projection_hidden_dim": 64, "projection_dim": 32}


class TestContract(MethodContract):
    method = BarlowTwins
    distribution = "harness-barlowtwins"
    small_config = SMALL
    bad_configs = [({"lambda_param": 0}, "lambda_param"), ({"projection_dim": 0}, "projection_dim"),
                   ({"crop_scale": (0.5, 1.2)}, "crop_scale"), ({"queue": 3}, "queue")]
    min_batch = 2  # the cross-correlation is standardised over the batch
    transfers_from = "backbone"


build, crops = TestContract().build, TestContract().batch  # the kit's: seeded, small config, test backbone


def test_config_defaults_follow_the_paper() -> None:
    config = BarlowTwins().config
    assert isinstance(config, BarlowTwinsConfig)
    assert (config.projection_hidden_dim, config.projection_dim, config.lambda_param) == (8192, 8192, 0.0051)


def test_the_loss_is_the_papers_formula() -> None:
    """Independent computation: standardise each view over the batch, C = z_a^T z_b / N,
    loss = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2."""
    module = build(lambda_param=0.01)
    g = torch.Generator().manual_seed(5)
    z0, z1 = torch.randn(16, 32, generator=g), torch.randn(16, 32, generator=g)
    a = (z0 - z0.mean(0)) / z0.std(0, unbiased=False)
    b = (z1 - z1.mean(0)) / z1.std(0, unbiased=False)
    c = a.T @ b / 16
    off = c - torch.diag(torch.diagonal(c))
    expected = ((1 - torch.diagonal(c)) ** 2).sum() + 0.01 * (off**2).sum()
    torch.testing.assert_close(module.criterion(z0, z1), expected, rtol=1e-4, atol=1e-4)
    identical = module.criterion(z0, z0.clone())  # perfect invariance: only redundancy is left
    assert float(identical) < float(module.criterion(z0, z1))


def test_loss_falls_on_fixed_views() -> None:
    losses = fit_fixed_batch(build(), crops(), steps=6)
    assert all(math.isfinite(v) and v >= 0 for v in losses)
    assert losses[-1] < 0.9 * losses[0], losses

