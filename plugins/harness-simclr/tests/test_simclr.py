"""SimCLR plugin: config, registration, views, a falling loss on fixed views, strict transfer."""

from __future__ import annotations

import math

import torch
from harness_simclr import SimCLR, SimCLRConfig

from harness.models.backbones import create_backbone
from harness.testing import MethodContract

SMALL = {"hidden_dim": 64, "output_dim": 32}  # small heads keep the test fast


class TestContract(MethodContract):
    method = SimCLR
    distribution = "harness-simclr"
    small_config = SMALL
    bad_configs = [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"output_dim": 0}, "output_dim"),
        ({"num_layers": 1}, "num_layers"),
        ({"view_size": 4}, "view_size"),
        ({"crop_scale": (0.6, 0.3)}, "crop_scale"),
        ({"crop_scale": (0.0, 1.0)}, "crop_scale"),
        ({"colour_jitter": 0.4}, "colour_jitter"),  # extra fields are forbidden
    ]
    min_loss_drop = 0.05
    min_batch = 2  # the other crops are the negatives
    transfers_from = "backbone"


build, crops = TestContract().build, TestContract().batch  # the kit's: seeded, small config, test backbone


def test_config_defaults_follow_recipe() -> None:
    config = SimCLR().config
    assert isinstance(config, SimCLRConfig)
    assert config.temperature == 0.5
    assert config.output_dim == 128 and config.num_layers == 2
    assert config.hidden_dim is None and config.view_size is None
    assert config.crop_scale == (0.25, 1.0)


def test_views_are_single_channel_and_differ() -> None:
    module = build(view_size=32)
    images = crops()
    first, second = module.views(images, torch.Generator().manual_seed(0))
    assert first.shape == second.shape == (8, 1, 32, 32)
    assert 0 <= float(first.min()) and float(first.max()) <= 1
    assert not torch.allclose(first, second)
    again, _ = module.views(images, torch.Generator().manual_seed(0))
    assert torch.equal(first, again)  # seeded generator: identical views


def test_head_reads_pooled_last_feature_map() -> None:
    module = build()
    width = create_backbone("test_convnext", in_chans=1).channels[-1]
    assert module.projection_head.layers[0].in_features == width
    assert module.embed(crops(4)).shape == (4, SMALL["output_dim"])



def test_the_rule_without_learning_is_chance_among_the_batch():
    """One constant embedding for every view: the positive is no likelier than the 2B - 2
    negatives, so NT-Xent is log(2B - 1) whatever the temperature."""
    for temperature in (0.1, 0.5):
        module = TestContract().build(temperature=temperature)
        for batch in (2, 8):
            value = module.reference_loss(TestContract().batch(n=batch), 0, 1)
            assert math.isclose(value, math.log(2 * batch - 1), rel_tol=1e-6)
