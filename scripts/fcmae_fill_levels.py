"""Diagnostic: where FCMAE's pretext loss sits among fills of the hidden patches that need no network.

FCMAE's rule without learning (``pretrain.reference_loss``) is the best normalised-convolution
inpainting of the visible pixels. This prints it beside cruder and cheating fills on the same batches
a run scores that rule on (the same pool, crops, masks and seeds), so a late pretext loss can be read
against all of them:

- each image's visible mean (a flat fill a network can learn from the visible patches alone);
- inpainting at each width (the rule takes the best);
- each image's true mean, and each hidden patch's own true mean: cheats that read the hidden pixels,
  the latter the best any flat fill of a patch could do; what it leaves is detail inside the patch.

    python scripts/fcmae_fill_levels.py --seeds 0,1,2 [--dataset DIR]
"""

from __future__ import annotations

import click
import torch
import torch.nn.functional as F

from harness.context import Context, RunRequest
from harness.methods.registry import get_method
from harness.pipeline import pretraining_pool_store
from harness.training.batches import split_item
from harness.training.loop import (
    REFERENCE_BATCHES,
    build_pretrain_module,
    pretraining_steps,
    reference_batches,
    reference_draws,
)


def fill_levels(seed: int, profile: str = "quick", dataset: str = "synthetic-sem") -> dict[str, float]:
    """Mean masked-patch loss of each fill over the batches that follow the last step."""
    from harness_fcmae.module import (
        INPAINT_SIGMAS,
        as_decoder_output,
        inpaint_visible,
        masked_patch_loss,
    )

    ctx = Context(RunRequest(method="fcmae", budget="1", profile=profile, dataset=dataset, seed=seed, progress=False))
    method = get_method("fcmae").cls({})
    store = pretraining_pool_store(ctx, ctx.pretraining_scale(ctx.manifest.budget_ids("1")))
    module = ctx.runtime.prepare(build_pretrain_module(method, ctx.settings, seed))  # draws where the run draws
    if module.config.norm_pix_loss:
        raise click.ClickException("fcmae_fill_levels: the fills are pixel values; norm_pix_loss is on")
    steps = pretraining_steps(method, ctx.settings)
    sums: dict[str, float] = {}
    with reference_draws(ctx.runtime, seed):  # the draws of reference_pretext_loss
        for item in reference_batches(store, ctx.settings, seed, steps):
            views, mask, hidden = module.rule_draws(ctx.runtime.batch(split_item(item)[0]))
            views = views.float()
            p = module.patch
            visible = 1 - hidden
            fills = {"visible mean of the image": ((views * visible).sum((2, 3), keepdim=True)
                                                   / visible.sum((2, 3), keepdim=True)).expand_as(views)}
            fills.update({f"inpainting, sigma {sigma:g} px": inpaint_visible(views, hidden, sigma)
                          for sigma in INPAINT_SIGMAS})
            fills["true mean of the image (cheat)"] = views.mean((2, 3), keepdim=True).expand_as(views)
            patch_means = F.avg_pool2d(views, p).repeat_interleave(p, 2).repeat_interleave(p, 3)
            fills["true mean of each patch (cheat)"] = patch_means
            losses = {name: float(masked_patch_loss(as_decoder_output(fill, p), views, mask, p, False))
                      for name, fill in fills.items()}
            losses["inpainting, best width per batch (the rule)"] = min(
                v for k, v in losses.items() if k.startswith("inpainting,"))
            for name, loss in losses.items():
                sums[name] = sums.get(name, 0.0) + loss / REFERENCE_BATCHES
    return sums


@click.command()
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated training seeds.")
@click.option("--profile", default="quick", show_default=True)
@click.option("--dataset", default="synthetic-sem", show_default=True, help="Embedded dataset or folder.")
def main(seeds: str, profile: str, dataset: str) -> None:
    torch.set_num_threads(1)
    rows = {int(seed): fill_levels(int(seed), profile, dataset) for seed in seeds.split(",")}
    names = list(next(iter(rows.values())))
    click.echo(f"{'fill':44s}" + "".join(f"  seed {seed:<4d}" for seed in rows))
    for name in names:
        click.echo(f"{name:44s}" + "".join(f"  {rows[seed][name]:.5f}  " for seed in rows))


if __name__ == "__main__":
    main()
