"""SimCLR plugin: config, registration, views, a falling loss on fixed views, strict transfer."""

from __future__ import annotations

import pytest
import torch
from harness_simclr import SimCLR, SimCLRConfig

from harness.models.backbones import create_backbone
from harness.testing import (
    MethodContract,
    assert_transfers_strictly,
    fit_fixed_batch,
    smooth_batch,
    state_differs,
)

BACKBONE = "test_convnext"  # the harness's tiny test backbone
SIZE = 48
SMALL = {"hidden_dim": 64, "output_dim": 32}  # small heads keep the test fast


def crops(n: int = 8, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    return smooth_batch(n, size, seed, coarse=size // 4)


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
    bad_batch_shapes = ((1, 1, SIZE, SIZE), (4, 3, SIZE, SIZE))


build = TestContract().build  # the kit's: seeded, the small config, a test backbone


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
    width = create_backbone(BACKBONE, in_chans=1).channels[-1]
    assert module.projection_head.layers[0].in_features == width
    assert module.embed(crops(4)).shape == (4, SMALL["output_dim"])


@pytest.mark.parametrize("backbone", [BACKBONE, "test_resnet"])  # LayerNorm; BatchNorm buffers
def test_transfer_state_loads_strictly_into_fresh_backbone(backbone: str) -> None:
    module = build(backbone=backbone)
    before = {k: v.clone() for k, v in module.backbone.state_dict().items()}
    fit_fixed_batch(module, crops(), steps=2)
    assert_transfers_strictly(module, backbone, source=module.backbone)
    assert state_differs(before, module.transfer_state())  # it is the trained encoder
