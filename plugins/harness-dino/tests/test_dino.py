"""DINO plugin: config, registration, multi-crop views, schedules (teacher temperature, momentum,
frozen prototypes), centring, a falling loss, and that the TEACHER encoder is the one that transfers."""

from __future__ import annotations

import math

import pytest
import torch
from harness_dino import DINO, DINOConfig

from harness import augment
from harness.errors import HarnessError
from harness.testing import MethodContract, fit_fixed_batch, state_differs

SIZE = 64
SMALL = {"hidden_dim": 64, "bottleneck_dim": 32, "output_dim": 128, "n_local_crops": 2}


class TestContract(MethodContract):
    method = DINO
    distribution = "harness-dino"
    small_config = SMALL
    crop_size = SIZE
    bad_configs = [
        ({"n_local_crops": -1}, "n_local_crops"),
        ({"teacher_temp": 0.0}, "teacher_temp"),
        ({"student_temp": 2.0}, "student_temp"),
        ({"center_momentum": 1.0}, "center_momentum"),
        ({"momentum_start": 1.0, "momentum_end": 0.9}, "momentum_start"),
        ({"global_size": 32, "local_size": 48}, "local_size"),
        ({"local_scale": (0.4, 0.05)}, "local_scale"),
        ({"output_dim": 1}, "output_dim"),
        ({"use_teacher": False}, "use_teacher"),  # extra fields are forbidden
    ]
    transfers_from = "teacher_backbone"  # DINO evaluates the teacher, the better of the two
    # DINO's loss is a moving target by design: test_loss_falls_on_fixed_views holds it still
    test_a_few_steps_on_a_fixed_batch_lower_the_loss = None  # type: ignore[assignment]


build, crops = TestContract().build, TestContract().batch  # the kit's: seeded, small config, test backbone


def test_config_defaults_follow_recipe() -> None:
    c = DINO().config
    assert isinstance(c, DINOConfig)
    assert (c.hidden_dim, c.bottleneck_dim, c.student_temp, c.center_momentum) == (2048, 256, 0.1, 0.9)
    assert (c.warmup_teacher_temp, c.teacher_temp) == (0.04, 0.07)
    assert (c.momentum_start, c.momentum_end) == (0.996, 1.0)
    assert c.n_local_crops == 6 and c.global_scale == (0.4, 1.0) and c.local_scale == (0.05, 0.4)


def test_multi_crop_views() -> None:
    module = build(n_local_crops=3)
    views = module.views(crops(4), torch.Generator().manual_seed(0))
    assert len(views) == 2 + 3
    stride = module.stride
    local = max(stride, round(SIZE * 96 / 224 / stride) * stride)
    assert [v.shape[-1] for v in views] == [SIZE, SIZE, local, local, local]
    assert all(v.shape[:2] == (4, 1) for v in views)
    assert local < SIZE
    assert not torch.allclose(views[0], views[1])


def test_multi_crop_helper_sizes_and_validation() -> None:
    views = augment.multi_crop_views(crops(2), 32, 16, 4)
    assert [tuple(v.shape) for v in views] == [(2, 1, 32, 32)] * 2 + [(2, 1, 16, 16)] * 4
    with pytest.raises(ValueError, match="n_local"):
        augment.multi_crop_views(crops(2), 32, 16, -1)


def test_teacher_temperature_warms_up_linearly() -> None:
    module = build(teacher_temp_warmup_fraction=0.5)
    assert module.teacher_temperature(0, 20) == pytest.approx(0.04)
    assert module.teacher_temperature(5, 20) == pytest.approx(0.055)
    assert module.teacher_temperature(10, 20) == pytest.approx(0.07)
    assert module.teacher_temperature(19, 20) == pytest.approx(0.07)


def test_teacher_momentum_follows_cosine_schedule() -> None:
    module = build()
    assert module.momentum(0, 11) == pytest.approx(0.996)
    assert module.momentum(5, 11) == pytest.approx(0.998)
    assert module.momentum(10, 11) == pytest.approx(1.0)


def test_teacher_starts_equal_and_frozen() -> None:
    module = build()
    assert not state_differs(module.backbone.state_dict(), module.teacher_backbone.state_dict())
    assert not state_differs(module.student_head.state_dict(), module.teacher_head.state_dict())
    assert not any(p.requires_grad for p in module.teacher_backbone.parameters())
    assert not any(p.requires_grad for p in module.teacher_head.parameters())


def test_centre_moves_and_loss_is_finite() -> None:
    module = build()
    assert float(module.criterion.center.abs().sum()) == 0
    losses = fit_fixed_batch(module, crops(), steps=2)
    assert all(math.isfinite(v) for v in losses)
    assert float(module.criterion.center.abs().sum()) > 0


def test_prototypes_frozen_at_first_then_trained() -> None:
    module = build(freeze_last_layer_fraction=0.5)
    images = crops()
    torch.manual_seed(1234)
    module(images, 0, 4).backward()  # step 0 of 4: frozen
    assert all(p.grad is None for p in module.student_head.last_layer.parameters())
    assert all(p.grad is not None for p in module.student_head.layers.parameters())
    module.zero_grad(set_to_none=True)
    torch.manual_seed(1234)
    module(images, 2, 4).backward()  # step 2 of 4: trained
    assert module.student_head.last_layer.weight_v.grad is not None


def test_loss_falls_on_fixed_views() -> None:
    """DINO's loss is a moving target by design (teacher EMA, centre EMA, temperature warm-up) and
    on a tiny random model it can rise while the centre settles. What must hold is that the
    student learns: with the teacher, centre and temperature held fixed, the loss falls."""
    module = build(momentum_start=1.0, momentum_end=1.0, center_momentum=0.0, warmup_teacher_temp=0.07)
    images = crops()
    with torch.no_grad():  # settle the centre on the (fixed) teacher outputs
        torch.manual_seed(1234)
        module(images, 0, 6)
    losses = fit_fixed_batch(module, images, steps=6)
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 0.05, losses


def test_teacher_encoder_transfers_not_student() -> None:
    module = build(momentum_start=0.9, momentum_end=0.9)
    initial = {k: v.clone() for k, v in module.backbone.state_dict().items()}
    fit_fixed_batch(module, crops(), steps=3)
    state = module.transfer_state()
    student = module.backbone.state_dict()
    teacher = module.teacher_backbone.state_dict()
    assert state_differs(student, teacher)  # after steps the two have parted
    assert not state_differs(state, teacher)
    assert state_differs(state, student)
    assert state_differs(state, initial)  # the teacher did move (momentum update)


def test_local_views_larger_than_the_crop_are_explained() -> None:
    with pytest.raises(HarnessError, match="local views"):
        build(local_size=96).training_step(crops(2), 0, 1)


def test_the_rule_without_learning_is_a_uniform_student():
    """A constant student output is a uniform softmax: lightly's own DINO loss of it against any
    teacher is log(output_dim), which reference_loss states without moving the module's centre."""
    from lightly.loss import DINOLoss

    module = TestContract().build()
    k = module.config.output_dim
    teacher = [torch.randn(4, k) * 5 for _ in range(2)]
    student = [torch.zeros(4, k) for _ in range(3)]
    uniform = float(DINOLoss(output_dim=k)(teacher, student, teacher_temp=0.04))
    assert module.reference_loss(TestContract().batch(), 0, 1) == pytest.approx(uniform, rel=1e-5)
    assert uniform == pytest.approx(math.log(k), rel=1e-5)
