"""Diagnostic: each method's rule without learning, as a run would record it, without training.

A run keeps, beside the mean pretext loss of its last tenth of pretraining, what the method's rule
without learning scores on the batches after the last step (``pretrain.reference_loss``, see
``PretrainModule.reference_loss``). The rule needs no trained weights, so this computes that number
for records made before it was kept (release v10 and older): the same pool, batches, seeds and draws
as a run with the given profile, dataset and training seed. A method without a rule prints None.

    python scripts/pretext_reference.py --methods fcmae,denoise,simclr,dino --seeds 0,1,2
"""

from __future__ import annotations

import click
import torch

from harness.context import Context, RunRequest
from harness.methods.registry import get_method
from harness.pipeline import pretraining_pool_store
from harness.training.loop import pretext_rule_loss


def reference(method_name: str, seed: int, profile: str = "quick", dataset: str = "synthetic-sem",
              pretrain_steps: int | None = None) -> float | None:
    """``pretrain.reference_loss`` of a run of ``method_name`` with training seed ``seed``."""
    ctx = Context(RunRequest(method=method_name, budget="1", profile=profile, dataset=dataset, seed=seed,
                             pretrain_steps=pretrain_steps, progress=False))
    store = pretraining_pool_store(ctx, ctx.pretraining_scale(ctx.manifest.budget_ids("1")))
    return pretext_rule_loss(get_method(method_name).cls({}), store, ctx.settings, ctx.runtime, seed)


@click.command()
@click.option("--methods", default="fcmae,denoise,simclr,dino", show_default=True, help="Comma-separated methods.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated training seeds.")
@click.option("--profile", default="quick", show_default=True)
@click.option("--dataset", default="synthetic-sem", show_default=True)
@click.option("--pretrain-steps", type=int, default=None, help="As `harness run --pretrain-steps`.")
def main(methods: str, seeds: str, profile: str, dataset: str, pretrain_steps: int | None) -> None:
    torch.set_num_threads(1)
    for name in methods.split(","):
        values = [reference(name, int(s), profile, dataset, pretrain_steps) for s in seeds.split(",")]
        click.echo(f"{name}: " + ", ".join(f"seed {s} {'None' if v is None else f'{v:.5f}'}"
                                          for s, v in zip(seeds.split(","), values, strict=True)))


if __name__ == "__main__":
    main()
