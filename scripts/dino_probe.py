"""Diagnostic: how DINO's pretraining reaches its collapse (the student's uniform output, loss log K).

Runs DINO's pretraining exactly as `harness run` would (profile, dataset, seed; ``--config`` as
key=value pairs) and, every ``--every`` steps, reads the student and the teacher on one fixed batch of
the pool's crops (no RNG is drawn, so the run's losses do not move):

- ``H_teacher``: the mean entropy of the teacher's centred, sharpened output per image;
- ``H_teacher_batch``: the entropy of that output averaged over the batch. Equal to ``H_teacher``:
  every image gets the same distribution; both at log K: the teacher is uniform;
- ``H_student``: the mean entropy of the student's output (log K: uniform, DINO's collapse);
- ``spread``: lightly's ``std_of_l2_normalized`` of the teacher encoder's pooled features over the
  batch (0: every crop gets the same feature; ``isotropic`` = 1/sqrt(width) for isotropic ones).

At the end it prints the mean loss over the last tenth, the trained networks' loss on the rule's
held-out batches (``held_out_loss``), the rule (log K), and the ratio the leaderboard's pretext table
shows (the held-out loss over the rule; the last tenth's over the rule where there is none).

    python scripts/dino_probe.py --config lr=3e-5 --config batch_norm_head=true
"""

from __future__ import annotations

import math
from typing import Any
from unittest import mock

import click
import torch

from harness.cli.run import parse_config
from harness.compat import ensure_torchvision
from harness.context import Context, RunRequest
from harness.errors import HarnessError
from harness.methods.registry import get_method
from harness.models import pooled
from harness.pipeline import pretraining_pool_store
from harness.training import loop
from harness.training.batches import PretrainBatches, split_item

ensure_torchvision()  # lightly imports torchvision, which needs this next to a CPU torch

from lightly.utils.debug import std_of_l2_normalized  # noqa: E402

PROBE_SEED = 123  # the fixed batch's own seed, apart from the run's


def _entropy(probabilities: torch.Tensor) -> float:
    return float(-(probabilities * probabilities.clamp_min(1e-12).log()).sum(-1).mean())


def probe(config: dict[str, Any], seed: int = 0, profile: str = "quick", dataset: str = "synthetic-sem",
          pretrain_steps: int | None = None, every: int = 25, probe_batch: int = 32) -> dict[str, Any]:
    """DINO's pretraining with the readings above: {"rows": [...], "losses": [...], "late": ..., "rule": ...}."""
    ctx = Context(RunRequest(method="dino", budget="1", profile=profile, dataset=dataset, seed=seed,
                             pretrain_steps=pretrain_steps, progress=False))
    method = get_method("dino").cls(config)
    store = pretraining_pool_store(ctx, ctx.pretraining_scale(ctx.manifest.budget_ids("1")))
    item = PretrainBatches(store, 1, probe_batch, ctx.settings.crop_size, PROBE_SEED, 0)[0]
    crops = ctx.runtime.batch(split_item(item)[0])
    rows: list[dict[str, float]] = []
    build = loop.build_pretrain_module

    def instrumented(*args, **kwargs):
        module = build(*args, **kwargs)
        after = module.after_optimizer_step

        def after_and_read(step: int, total: int) -> None:
            after(step, total)
            if step % every == 0 or step == total - 1:
                rows.append({"step": step, **_read(module, crops, step, total)})

        module.after_optimizer_step = after_and_read
        return module

    with mock.patch.object(loop, "build_pretrain_module", instrumented):
        _, log = loop.pretrain(method, store, ctx.settings, ctx.runtime, seed, progress=False)
    late, held_out, rule = loop.late_loss(log.losses), log.held_out_loss, log.reference_loss
    judged = held_out if held_out is not None else late
    return {"rows": rows, "losses": log.losses, "late": late, "held_out": held_out, "rule": rule,
            "ratio": None if judged is None or not rule else judged / rule}


@torch.no_grad()
def _read(module, crops: torch.Tensor, step: int, total: int) -> dict[str, float]:
    features = pooled(module.teacher_backbone, crops)
    centred = module.teacher_head(features) - module.criterion.center.reshape(1, -1)
    teacher = torch.softmax(centred / module.teacher_temperature(step, total), dim=-1)
    student = torch.softmax(module.student_head(pooled(module.backbone, crops)) / module.config.student_temp, dim=-1)
    return {"H_teacher": _entropy(teacher), "H_teacher_batch": _entropy(teacher.mean(0, keepdim=True)),
            "H_student": _entropy(student), "log_K": math.log(module.config.output_dim),
            "spread": float(std_of_l2_normalized(features)), "isotropic": 1 / math.sqrt(features.shape[1])}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "pairs", multiple=True, metavar="KEY=VALUE",
              help="DINO's config, as `harness run --config` (repeatable), e.g. lr=3e-5.")
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed.")
@click.option("--profile", default="quick", show_default=True)
@click.option("--dataset", default="synthetic-sem", show_default=True)
@click.option("--pretrain-steps", type=click.IntRange(min=1), default=None,
              help="As `harness run --pretrain-steps`.")
@click.option("--every", type=click.IntRange(min=1), default=25, show_default=True,
              help="Read the networks every N steps.")
def main(pairs: tuple[str, ...], seed: int, profile: str, dataset: str, pretrain_steps: int | None,
         every: int) -> None:
    """Read DINO's student and teacher along its pretraining (see the module docstring)."""
    torch.set_num_threads(1)
    try:
        result = probe(parse_config(pairs), seed, profile, dataset, pretrain_steps, every)
    except HarnessError as error:  # bad input: one line, not a traceback
        raise click.ClickException(str(error)) from None
    for row in result["rows"]:
        click.echo("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    click.echo(f"pretext loss over the last tenth {shown(result['late'])}; on the rule's batches "
               f"{shown(result['held_out'])}; rule (log K) {shown(result['rule'])}; ratio {shown(result['ratio'])}")


if __name__ == "__main__":
    main()
