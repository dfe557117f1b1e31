"""The positive control: it learns the task from hidden targets, it transfers, its entry point works,
and it refuses to run where there is no hidden ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from harness_supervised import Supervised

from harness.errors import HarnessError
from harness.methods.registry import get_method
from harness.models import create_backbone
from harness.task import DEFAULT_TASK, get_task
from harness.testing import assert_transfers_strictly, fit_fixed_batch

BACKBONE = "test_convnext"


def _batch(n: int = 4, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Bright disks on a dark background, with their task targets."""
    from skimage.draw import disk

    rng = np.random.default_rng(0)
    images, masks = [], []
    for _ in range(n):
        mask = np.zeros((size, size), dtype=np.int32)
        for label in range(1, 6):
            rr, cc = disk(tuple(rng.integers(8, size - 8, 2)), int(rng.integers(4, 9)), shape=mask.shape)
            mask[rr, cc] = label
        images.append((mask > 0) * 0.6 + 0.2 + rng.normal(0, 0.03, mask.shape))
        masks.append(mask)
    task = get_task(DEFAULT_TASK)
    x = torch.from_numpy(np.stack(images).astype(np.float32))[:, None]
    y = torch.from_numpy(np.stack([task.targets(m, 0) for m in masks]))
    return x, y


def test_a_few_steps_on_a_fixed_batch_lower_the_loss():
    torch.manual_seed(0)
    module = Supervised().build(create_backbone(BACKBONE), get_task(DEFAULT_TASK))
    images, targets = _batch()
    losses = fit_fixed_batch(module, images, 20, targets=targets, lr=3e-3, weight_decay=0.0)
    assert losses[-1] < 0.7 * losses[0], losses


def test_the_encoder_transfers_without_missing_or_unexpected_keys():
    module = Supervised().build(create_backbone(BACKBONE), get_task(DEFAULT_TASK))
    assert_transfers_strictly(module, BACKBONE, source=module.net.encoder)


def test_it_needs_targets_and_the_task():
    with pytest.raises(HarnessError, match="needs the downstream task"):
        Supervised().build(create_backbone(BACKBONE))
    module = Supervised().build(create_backbone(BACKBONE), get_task(DEFAULT_TASK))
    with pytest.raises(HarnessError, match="targets"):
        module(torch.zeros(2, 1, 64, 64), 0, 1)


def test_bad_configs_are_refused():
    with pytest.raises(HarnessError, match="invalid config for method 'supervised'"):
        Supervised({"colour": 1})


def test_entry_point_registers_a_control():
    entry = get_method("supervised")
    assert entry.cls is Supervised and entry.plugin.distribution == "harness-supervised"
    assert entry.cls.role == "control" and entry.cls.uses_hidden_labels


def test_a_folder_without_hidden_ground_truth_is_refused(tmp_path):
    import shutil
    from pathlib import Path

    from click.testing import CliRunner

    from harness.cli import main

    folder = tmp_path / "emps"
    shutil.copytree(Path(__file__).parents[3] / "tests" / "data" / "emps-mini", folder)
    for stem in ("28d7e31165", "3027f9ffe7"):  # two images become unlabeled: the pretraining pool
        (folder / "masks" / f"{stem}.png").unlink()
    result = CliRunner().invoke(main, ["run", "--method", "supervised", "--budget", "100%", "--profile", "smoke",
                                       "--dataset", str(folder), "--quiet", "--allow-leakage",
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert "hidden ground truth" in result.output and "Traceback" not in result.output


def test_the_control_pretrains_longer_and_a_method_may_not_ask_for_that():
    from harness.methods.base import SSLMethod
    from harness.training.loop import pretraining_steps
    from harness.training.settings import settings_for

    settings = settings_for("quick")
    assert pretraining_steps(Supervised(), settings) == Supervised.pretrain_steps_factor * settings.pretrain_steps > 300

    class Greedy(SSLMethod):
        name = "greedy"
        description = "a method that wants more steps than the others"
        pretrain_steps_factor = 2

    with pytest.raises(HarnessError, match="only a control may"):
        pretraining_steps(Greedy(), settings)
