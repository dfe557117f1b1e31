"""``harness datasets``, ``harness data ...`` and ``harness splits ...``."""

from __future__ import annotations

from pathlib import Path

import click
from tabulate import tabulate

from harness.cli.data_check import check_command
from harness.data.registry import dataset_names, open_dataset
from harness.data.splits import DEFAULT_SPLIT_SEED, MAX_SEED, POOLS, Budget, make_manifest
from harness.errors import HarnessError
from harness.profiles import DEFAULT_PROFILE, PROFILES

profile_option = click.option(
    "--profile",
    type=click.Choice(PROFILES),
    default=DEFAULT_PROFILE,
    show_default=True,
    help="Embedded datasets' size and, for every dataset (your folders too), the training schedule (steps, "
    "crop size): smoke (tests), quick (CPU minutes), paper (source-work scale).",
)
SEED = click.IntRange(0, MAX_SEED)  # every seed: numpy and torch take 0 .. 2**32 - 1


def split_list(text: str, what: str) -> list[str]:
    """A comma-separated option's items (``--methods none,fcmae``); empty items are skipped."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise HarnessError(f"--{what} is empty")
    return items


class SeedList(click.ParamType):
    """Training seeds as comma-separated integers and inclusive ranges: ``0,1,2``, ``6-11``, ``0-2,5``."""

    name = "seeds"
    most = 10_000  # a longer list is a typo, not a grid anyone runs

    def convert(self, value, param, ctx) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        seeds: dict[int, None] = {}  # ordered, each seed once
        for part in (p.strip() for p in str(value).split(",")):
            if not part:
                continue
            low, dash, high = part.partition("-")
            try:
                first = int(low)
                last = int(high) if dash else first
            except ValueError:
                self.fail(f"{part!r} is not a seed or a range such as 6-11", param, ctx)
            if last < first:
                self.fail(f"the range {part!r} runs backwards", param, ctx)
            if not (0 <= first and last <= MAX_SEED):
                self.fail(f"{value!r}: every seed must lie in 0..{MAX_SEED}", param, ctx)
            if last - first + len(seeds) >= self.most:
                self.fail(f"{value!r} names more than {self.most} seeds", param, ctx)
            seeds.update(dict.fromkeys(range(first, last + 1)))
        if not seeds:
            self.fail("no seed given", param, ctx)
        return tuple(seeds)


SEED_LIST = SeedList()
data_seed_option = click.option(
    "--data-seed",
    type=SEED,
    default=0,
    show_default=True,
    help="Generation seed of embedded datasets (not the split seed, not the training seed).",
)
split_seed_option = click.option(
    "--split-seed",
    type=SEED,
    default=DEFAULT_SPLIT_SEED,
    show_default=True,
    help="Seed that assigns images to pools; independent of training seeds.",
)


@click.command("datasets")
@profile_option
def datasets(profile: str) -> None:
    """List the embedded datasets with their size, modality and length-scale bins."""
    rows = [open_dataset(name, profile=profile).describe() for name in dataset_names()]
    click.echo(tabulate(rows, headers="keys"))
    click.echo("\nAny folder in the folder format works too: --dataset path/to/folder (see README).")


@click.group("data")
def data() -> None:
    """Export, preview and check datasets."""


@data.command("export")
@click.argument("dataset")
@click.option("--split", "pool", type=click.Choice([*POOLS, "all"]), required=True, help="Pool to export.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="New output folder.")
@click.option("--limit", type=int, default=None, help="Export at most N images.")
@profile_option
@data_seed_option
@split_seed_option
def export(dataset: str, pool: str, out: Path, limit: int | None, profile: str, data_seed: int,
           split_seed: int) -> None:
    """Write one pool of DATASET as images/, masks/ and metadata.csv (the user folder format)."""
    from harness.data.export import export_pool

    ds = open_dataset(dataset, profile=profile, seed=data_seed)
    manifest = make_manifest(ds, split_seed)
    count = export_pool(ds, manifest, pool, out, limit)
    click.echo(f"wrote {count} images of {ds.identity.key} ({pool}) to {out}")


@data.command("generate")
@click.argument("dataset")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: the CPU cores). The bytes do not depend on it.")
@profile_option
@data_seed_option
def generate(dataset: str, workers: int | None, profile: str, data_seed: int) -> None:
    """Render every image of an embedded DATASET into the cache ahead of a run, in parallel.

    Runs render images on first use, one after another; the paper profile's 26,750 images take
    hours that way. Example: harness data generate synthetic-sem --profile paper
    """
    import os

    from harness.data.synthetic import SyntheticDataset

    ds = open_dataset(dataset, profile=profile, seed=data_seed)
    if not isinstance(ds, SyntheticDataset):
        raise HarnessError(f"{dataset!r} is a folder: only embedded datasets are generated")
    made = ds.generate(workers=workers or os.cpu_count() or 1, progress=True)
    click.echo(f"{ds.identity.key}: {made} image(s) rendered, {len(ds.index()) - made} already cached "
               f"({ds.cache_dir})")


@data.command("preview")
@click.argument("dataset", nargs=-1, required=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="PNG file to write.")
@click.option("--per-scale", type=click.IntRange(1, 8), default=2, show_default=True,
              help="Images per length-scale bin.")
@profile_option
@data_seed_option
def preview(dataset: tuple[str, ...], out: Path, per_scale: int, profile: str, data_seed: int) -> None:
    """Write a montage of DATASET(s) across length scales with mask outlines, e.g.

    harness data preview synthetic-sem synthetic-tem --out preview.png
    """
    from harness.data.preview import render_preview

    datasets_ = [open_dataset(name, profile=profile, seed=data_seed) for name in dataset]
    path = render_preview(datasets_, out, per_scale=per_scale)
    click.echo(f"wrote {path}")


@click.group("splits")
def splits() -> None:
    """Inspect split manifests and label budgets."""


@splits.command("show")
@click.argument("dataset")
@click.option("--budget", default=None, help="Label budget to resolve, e.g. 1%, 10%, 100% or an image count.")
@profile_option
@data_seed_option
@split_seed_option
def show(dataset: str, budget: str | None, profile: str, data_seed: int, split_seed: int) -> None:
    """Print pool sizes, per-bin counts and the manifest hash of DATASET."""
    parsed = Budget.parse(budget) if budget is not None else None
    ds = open_dataset(dataset, profile=profile, seed=data_seed)
    manifest = make_manifest(ds, split_seed)
    click.echo(f"dataset   {ds.identity.key}")
    click.echo(f"split seed {manifest.split_seed}   manifest hash {manifest.hash}\n")
    click.echo(tabulate(manifest.pool_counts(), headers="keys"))
    if parsed is not None:
        ids = manifest.budget_ids(parsed)
        counts: dict[str, int] = {}
        for sample_id in ids:
            scale = manifest.length_scales[sample_id]
            counts[scale] = counts.get(scale, 0) + 1
        per_bin = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        click.echo(f"\nbudget {parsed.text}: {len(ids)} of {len(manifest.budget_order)} training images ({per_bin})")


data.add_command(check_command, "check")

COMMANDS = [datasets, data, splits]
