"""MoCo v2 plugin: config, registration, the loss against an independent InfoNCE, the queue,
the momentum key encoder, a falling loss, and that the QUERY encoder transfers."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from harness_moco import MoCo, MoCoConfig

from harness.testing import (
    MethodContract,
    fit_fixed_batch,
    state_differs,
)

SMALL = {"hidden_dim": 64, "output_dim": 32, "queue_size": 64}


class TestContract(MethodContract):
    method = MoCo
    distribution = "harness-moco"
    small_config = SMALL
    bad_configs = [({"temperature": 0}, "temperature"), ({"momentum": 1.5}, "momentum"),
                   ({"queue_size": 0}, "queue_size"), ({"crop_scale": (0, 1)}, "crop_scale")]
    min_batch = 2
    transfers_from = "backbone"  # the query encoder
    # fixed views fill the queue with this batch's own keys, so the loss is taken against a queue
    # held fixed: test_loss_falls_on_fixed_views_against_a_fixed_queue
    test_a_few_steps_on_a_fixed_batch_lower_the_loss = None  # type: ignore[assignment]


build, crops = TestContract().build, TestContract().batch  # the kit's: seeded, small config, test backbone


def test_config_defaults_follow_moco_v2() -> None:
    config = MoCo().config
    assert isinstance(config, MoCoConfig)
    assert (config.output_dim, config.temperature, config.queue_size, config.momentum) == (128, 0.2, 65536, 0.999)


def test_the_loss_is_infonce_against_the_queue_and_enqueues_the_keys() -> None:
    module = build(temperature=0.2)
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(8, 32, generator=g).requires_grad_(), torch.randn(8, 32, generator=g)
    queue = module.criterion.memory_bank.bank.clone()  # (size, dim): random unit vectors to start with
    assert queue.shape == (64, 32)
    qn, kn = F.normalize(q.detach(), dim=1), F.normalize(k, dim=1)
    logits = torch.cat([(qn * kn).sum(1, keepdim=True), qn @ F.normalize(queue, dim=1).T], dim=1) / 0.2
    expected = F.cross_entropy(logits, torch.zeros(8, dtype=torch.long))
    torch.testing.assert_close(module.criterion(q, k).detach(), expected, rtol=1e-4, atol=1e-4)
    # the keys of this batch are now in the queue, as negatives for the next ones
    bank = F.normalize(module.criterion.memory_bank.bank, dim=1)
    assert any(torch.allclose(bank[j], kn[0], atol=1e-5) for j in range(bank.shape[0]))
    assert not any(torch.allclose(queue[j], kn[0], atol=1e-5) for j in range(queue.shape[0]))


def test_key_encoder_starts_as_a_frozen_copy_and_follows_by_momentum() -> None:
    module = build(momentum=0.5)
    assert not state_differs(module.backbone.state_dict(), module.key_backbone.state_dict())
    assert not any(p.requires_grad for p in module.key_backbone.parameters())
    trained = {id(p) for group in module.optimizer_groups().values() for p in group}
    assert not trained & {id(p) for p in module.key_backbone.parameters()}
    before = {k: v.clone() for k, v in module.key_backbone.state_dict().items()}
    fit_fixed_batch(module, crops(), steps=1)
    online = module.backbone.state_dict()
    for name, param in module.key_backbone.named_parameters():
        torch.testing.assert_close(param, 0.5 * before[name] + 0.5 * online[name])


def test_loss_falls_on_fixed_views_against_a_fixed_queue() -> None:
    """With the same views every step, the queue would fill with this very batch's keys (stale
    copies of each positive), so the loss is taken against a queue held fixed: it must fall."""
    module = build(queue_size=256, momentum=0.5)  # a key encoder that follows closely: a steady fall
    images, bank = crops(), module.criterion.memory_bank
    frozen = bank.bank.clone(), bank.bank_ptr.clone()
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)
    losses = []
    for step in range(12):
        torch.manual_seed(1234)  # the same views every step
        loss = module.training_step(images, step, 12)
        bank.bank.copy_(frozen[0])
        bank.bank_ptr.copy_(frozen[1])
        losses.append(float(loss.detach()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        module.after_optimizer_step(step, 12)
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 0.06, losses


def test_the_query_and_key_encoders_part_in_training() -> None:
    # the kit checks that the query encoder (transfers_from) is what transfers; this checks that
    # the key encoder, which does not transfer, has become a different network by then
    module = build(momentum=0.9)
    fit_fixed_batch(module, crops(), steps=2)
    assert state_differs(module.backbone.state_dict(), module.key_backbone.state_dict())


def test_the_queue_is_in_the_state_so_checkpoints_carry_it() -> None:
    assert any(k.startswith("criterion.") for k in build().state_dict())
