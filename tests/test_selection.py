"""Model selection: one validation criterion for the kept step and the thresholds, and the
fine-tuning optimiser's encoder learning rate."""

from __future__ import annotations

import typing

import numpy as np
import pytest
import torch

from harness.data.registry import open_dataset
from harness.data.splits import make_manifest
from harness.errors import HarnessError
from harness.evaluation.selection import CRITERIA, count_penalty, selection_score
from harness.metrics import score_image
from harness.task import get_task
from harness.training.batches import ImageStore
from harness.training.loop import build_segmentation_net, finetune, finetune_optimisation, warmup_cosine
from harness.training.runtime import resolve_runtime
from harness.training.settings import TrainSettings, settings_for


def disks(count: int, size: int = 64) -> np.ndarray:
    """``count`` separate 6x6 squares in a row (count <= 8)."""
    labels = np.zeros((size, size), dtype=np.int32)
    for i in range(count):
        labels[10:16, 2 + 8 * i : 8 + 8 * i] = i + 1
    return labels


def test_the_settings_offer_exactly_the_known_criteria():
    field = TrainSettings.model_fields["selection"]
    assert set(typing.get_args(field.annotation)) == set(CRITERIA)


def test_f1_count_penalises_a_wrong_count_that_f1_does_not_see():
    truth = disks(4)
    # both predictions match 2 of the 4 particles; the first adds 4 particles that are not there (F1 0.4
    # against 0.667)
    splitting = disks(8).copy()
    splitting[truth == 3] = 0
    splitting[truth == 4] = 0
    missing = disks(2)
    a, b = score_image(splitting, truth, None), score_image(missing, truth, None)
    assert selection_score([a], "f1") == pytest.approx(a.f1)
    assert selection_score([a], "f1-count") == pytest.approx(a.f1 - min(a.count_rel_error, 1.0))
    assert selection_score([b], "f1-count") == pytest.approx(b.f1 - 0.5)
    # an independent count of the penalty: |6 - 4| / 4 capped at 1 -> 0.5, |2 - 4| / 4 -> 0.5
    assert count_penalty(a) == pytest.approx(0.5) and count_penalty(b) == pytest.approx(0.5)


def test_an_image_without_particles_is_penalised_only_for_predicting_some():
    empty = np.zeros((32, 32), dtype=np.int32)
    assert count_penalty(score_image(empty, empty, None)) == 0.0
    assert count_penalty(score_image(disks(1, 32), empty, None)) == 1.0


def test_unknown_criteria_and_empty_validation_are_refused():
    score = score_image(disks(2), disks(2), None)
    with pytest.raises(HarnessError, match="unknown selection criterion"):
        selection_score([score], "iou")
    with pytest.raises(HarnessError, match="at least one validation image"):
        selection_score([], "f1")


def test_the_encoder_learns_at_its_fraction_of_the_decoders_rate():
    settings = settings_for("smoke").model_copy(update={"finetune_encoder_lr_factor": 0.1})
    net = build_segmentation_net(settings.backbone, None, get_task(settings.task))
    optimizer = finetune_optimisation(net, settings, steps=10).optimizers["main"]
    encoder, decoder = optimizer.param_groups
    assert {id(p) for p in encoder["params"]} == {id(p) for p in net.encoder.parameters()}
    assert len(encoder["params"]) + len(decoder["params"]) == len(list(net.parameters()))
    assert encoder["initial_lr"] == pytest.approx(0.1 * decoder["initial_lr"])
    assert decoder["initial_lr"] == settings.finetune_lr


def test_a_factor_of_one_updates_exactly_as_one_group_would():
    """The default keeps the numbers of records made before the factor existed."""
    settings = settings_for("smoke")
    task = get_task(settings.task)
    torch.manual_seed(0)
    net = build_segmentation_net(settings.backbone, None, task)
    twin = build_segmentation_net(settings.backbone, None, task)
    twin.load_state_dict(net.state_dict())
    ours = finetune_optimisation(net, settings, steps=4).optimizers["main"]
    plain = torch.optim.AdamW(twin.parameters(), lr=settings.finetune_lr, weight_decay=settings.finetune_weight_decay)
    torch.optim.lr_scheduler.LambdaLR(plain, warmup_cosine(4, settings.warmup_fraction))
    x = torch.rand(2, 1, 64, 64)
    for model, optimizer in ((net, ours), (twin, plain)):
        model(x).square().mean().backward()
        optimizer.step()
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_early_stopping_never_ends_a_run_before_the_budgets_fewest_steps():
    """A score that never improves after the first check stops a run at once, but not before
    finetune_min_steps: one image plateaus early and stopping there kept a first-check state."""
    dataset = open_dataset("synthetic-sem", profile="smoke", seed=0)
    manifest = make_manifest(dataset, 0)
    base = settings_for("smoke").model_copy(update={"finetune_steps": 12, "val_every": 1, "patience": 1})
    task = get_task(base.task)
    store = ImageStore(dataset, manifest.pools["train"][:1], task=task)
    runs = {}
    for floor in (1, 8):  # the scores only fall: every check after the first is without gain
        scores = iter(range(0, -100, -1))
        settings = base.model_copy(update={"finetune_min_steps": floor})
        _, log = finetune(None, store, lambda _net, s=scores: float(next(s)), settings,
                          resolve_runtime("cpu"), seed=0, progress=False)
        runs[floor] = log
    assert runs[1].stopped_early and len(runs[1].losses) == 2 and runs[1].best_step == 1
    assert runs[8].stopped_early and len(runs[8].losses) == 8 and runs[8].best_step == 1
