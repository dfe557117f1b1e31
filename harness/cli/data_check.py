"""``harness data check DIR``: the command-line face of :mod:`harness.data.check`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from harness.data.io import lies_inside, write_text_atomic
from harness.data.leakage import DEFAULT_MAX_DISTANCE
from harness.data.splits import DEFAULT_SPLIT_SEED, MAX_SEED
from harness.errors import HarnessError

EXIT_UNUSABLE = 1  # exit 2 stays reserved for bad command-line input


@click.command("check")
@click.argument("folder", metavar="DIR", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--crop-bottom",
    type=click.IntRange(min=0),
    default=None,
    help="Rows of instrument data bar at the bottom of every image (0: none). Default: "
    "databar_rows in metadata.csv, else detected per image.",
)
@click.option(
    "--connectivity",
    type=click.Choice(["4", "8"]),
    default="8",
    show_default=True,
    help="Pixel connectivity that turns binary masks into particles.",
)
@click.option(
    "--split-seed",
    type=click.IntRange(0, MAX_SEED),
    default=DEFAULT_SPLIT_SEED,
    show_default=True,
    help="Split seed of the manifest whose pools are reported and checked for leaks.",
)
@click.option(
    "--max-leak-distance",
    type=click.IntRange(0, 64),
    default=DEFAULT_MAX_DISTANCE,
    show_default=True,
    help="Perceptual-hash bits (of 64) up to which two images count as the same micrograph.",
)
@click.option(
    "--for",
    "purpose",
    type=click.Choice(["run", "predict"]),
    default="run",
    show_default=True,
    help="run: a dataset for `harness run` (masks, pools, leaks). predict: micrographs for `harness predict`, "
    "plain or in the folder format; masks are not needed, and pools, leaks and duplicates do not apply.",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the full report as JSON to this file (never inside DIR).",
)
def check_command(
    folder: Path,
    crop_bottom: int | None,
    connectivity: str,
    split_seed: int,
    max_leak_distance: int,
    purpose: str,
    json_out: Path | None,
) -> None:
    """Read every file of the folder dataset DIR once and report counts per pool, pixel sizes and
    their source, length-scale bins, data bars, images without masks, leaks and every problem.

    Exit code 0 when the folder is usable, 1 when a problem makes it unusable. Nothing is
    written inside DIR. With --for predict, DIR is checked as `harness predict --images DIR` reads
    it: a plain folder of micrographs is fine, masks are not needed.
    """
    from harness.data.check import check_folder

    if json_out is not None and lies_inside(json_out, folder):
        raise HarnessError(f"--json {json_out}: inside the checked folder {folder}; write the report elsewhere")
    report = check_folder(
        folder,
        connectivity=int(connectivity),
        crop_bottom=crop_bottom,
        split_seed=split_seed,
        max_leak_distance=max_leak_distance,
        progress=sys.stderr.isatty(),
        purpose="predict" if purpose == "predict" else "run",
    )
    click.echo(report.to_text())
    if json_out is not None:
        write_text_atomic(json_out, report.model_dump_json(indent=2) + "\n")
        click.echo(f"wrote {json_out}")
    if not report.usable:
        raise SystemExit(EXIT_UNUSABLE)
