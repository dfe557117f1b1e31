"""Backbone registry and the segmentation network: shapes, strides, padding, bf16, transfer."""

from __future__ import annotations

import pytest
import torch

from harness.compat import ensure_torchvision
from harness.errors import HarnessError
from harness.models import BACKBONES, Backbone, SegmentationNet, create_backbone

REQUIRED = [
    *(f"convnextv2_{size}" for size in ("atto", "femto", "pico", "nano", "tiny", "base", "large", "huge")),
    "resnet18",
    "resnet50",
]
# (channels, reductions) as timm 1.0.31 builds them with features_only=True
EXPECTED_FEATURES = {
    "convnextv2_atto": ([40, 80, 160, 320], [4, 8, 16, 32]),
    "resnet18": ([64, 64, 128, 256, 512], [2, 4, 8, 16, 32]),
    "test_convnext": ([24, 32, 48, 64], [4, 8, 16, 32]),
    "test_resnet": ([32, 32, 48, 192, 96], [2, 4, 8, 16, 32]),
}
# millions of parameters with one input channel (the ConvNeXt V2 sizes of the FCMAE paper)
EXPECTED_PARAMS_M = {"convnextv2_atto": 3.39, "convnextv2_tiny": 27.86, "convnextv2_huge": 657.46, "resnet50": 23.50}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_registry_names_the_required_backbones_and_real_timm_models():
    ensure_torchvision()
    import timm

    assert set(REQUIRED) <= set(BACKBONES)
    assert any(name.startswith("test_") for name in BACKBONES)
    available = set(timm.list_models())
    for name, spec in BACKBONES.items():
        assert spec.timm_name in available, name
        assert spec.note


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_with_one_input_channel(name: str):
    # on the meta device nothing is allocated, so even convnextv2_huge builds in a fraction of a second
    with torch.device("meta"):
        backbone = create_backbone(name, in_chans=1)
    assert isinstance(backbone, Backbone) and backbone.name == name
    assert len(backbone.channels) == len(backbone.reductions) >= 4
    assert backbone.reductions == sorted(backbone.reductions) and backbone.total_stride == 32
    first_conv = next(p for p in backbone.parameters() if p.ndim == 4)
    assert first_conv.shape[1] == 1
    # the timm model is the only child: state_dict keys are stable for weight transfer
    assert [n for n, _ in backbone.named_children()] == ["body"]
    assert all(key.startswith("body.") for key in backbone.state_dict())
    params_m = sum(p.numel() for p in backbone.parameters()) / 1e6
    if name in EXPECTED_PARAMS_M:
        assert params_m == pytest.approx(EXPECTED_PARAMS_M[name], abs=0.01)


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(HarnessError, match="convnextv2_atto.*resnet50"):
        create_backbone("convnextv3_zepto")


def test_bad_in_chans_is_reported():
    with pytest.raises(HarnessError, match="in_chans"):
        create_backbone("test_resnet", in_chans=0)


@pytest.mark.parametrize("name", sorted(EXPECTED_FEATURES))
def test_feature_maps_have_the_announced_channels_and_strides(name: str):
    channels, reductions = EXPECTED_FEATURES[name]
    backbone = create_backbone(name).eval()
    assert backbone.channels == channels and backbone.reductions == reductions
    with torch.no_grad():
        features = backbone(torch.rand(2, 1, 64, 96))
    assert [tuple(f.shape) for f in features] == [(2, c, 64 // r, 96 // r) for c, r in zip(channels, reductions)]


def test_three_channel_backbone_accepts_rgb():
    backbone = create_backbone("test_convnext", in_chans=3).eval()
    with torch.no_grad():
        assert backbone(torch.rand(1, 3, 32, 32))[-1].shape == (1, 64, 1, 1)


@pytest.mark.parametrize("name", ["test_convnext", "test_resnet"])
@pytest.mark.parametrize("size", [(100, 130), (37, 50), (64, 64), (9, 20)])
def test_segmentation_output_matches_any_input_size(name: str, size: tuple[int, int]):
    net = SegmentationNet(create_backbone(name), num_outputs=3).eval()
    with torch.no_grad():
        logits = net(torch.rand(2, 1, *size))
    assert logits.shape == (2, 3, *size)
    assert torch.isfinite(logits).all()


def test_padding_does_not_leak_between_images_of_a_batch():
    torch.manual_seed(0)
    net = SegmentationNet(create_backbone("test_convnext")).eval()
    batch = torch.rand(2, 1, 40, 52)
    with torch.no_grad():
        together = net(batch)
        alone = net(batch[1:])
    torch.testing.assert_close(together[1:], alone, rtol=1e-4, atol=1e-5)


def test_channels_last_and_bf16_autocast_forward_and_backward():
    torch.manual_seed(0)
    net = SegmentationNet(create_backbone("test_convnext")).to(memory_format=torch.channels_last)
    x = torch.rand(2, 1, 50, 70).to(memory_format=torch.channels_last)
    with torch.no_grad():
        reference = net(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(x)
    assert logits.shape == (2, 3, 50, 70) and logits.dtype == torch.bfloat16
    # bf16 keeps ~3 significant digits: the same function, not the same bits
    correlation = torch.corrcoef(torch.stack([logits.float().flatten(), reference.flatten()]))[0, 1]
    assert correlation > 0.98
    logits.float().square().mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_wrong_input_channels_is_a_clear_error():
    net = SegmentationNet(create_backbone("test_resnet"))
    with pytest.raises(HarnessError, match=r"\(B, 1, H, W\).*\(2, 3, 32, 32\)"):
        net(torch.rand(2, 3, 32, 32))
    with pytest.raises(HarnessError, match="num_outputs"):
        SegmentationNet(create_backbone("test_resnet"), num_outputs=0)


def test_encoder_is_exposed_for_transfer_and_freezing():
    torch.manual_seed(1)
    pretrained = create_backbone("test_convnext")
    net = SegmentationNet(create_backbone("test_convnext"))
    net.encoder.load_state_dict(pretrained.state_dict(), strict=True)
    for ours, theirs in zip(net.encoder.state_dict().values(), pretrained.state_dict().values()):
        assert torch.equal(ours, theirs)
    # the segmentation net's own keys for the encoder are the backbone's, under "encoder."
    assert {f"encoder.{k}" for k in pretrained.state_dict()} <= set(net.state_dict())

    net.encoder.requires_grad_(False)
    net(torch.rand(1, 1, 32, 32)).mean().backward()
    assert all(p.grad is None for p in net.encoder.parameters())
    decoder = [p for n, p in net.named_parameters() if not n.startswith("encoder.")]
    assert decoder and all(p.grad is not None for p in decoder)


def test_construction_is_deterministic_for_a_seed():
    states = []
    for _ in range(2):
        torch.manual_seed(7)
        states.append(SegmentationNet(create_backbone("test_resnet")).state_dict())
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_pooled_reads_the_deepest_feature_map_and_encoder_width_names_its_channels():
    from harness.models import create_backbone, encoder_width, pooled

    backbone = create_backbone("test_convnext")
    x = torch.rand(2, 1, 64, 64)
    assert pooled(backbone, x).shape == (2, encoder_width(backbone)) == (2, backbone.channels[-1])
    assert torch.allclose(pooled(backbone, x), backbone(x)[-1].mean(dim=(2, 3)))
    with pytest.raises(HarnessError, match="no `channels` list"):
        encoder_width(torch.nn.Conv2d(1, 1, 1))
