"""Turn a checkout of the public EMPS dataset into a harness folder dataset.

EMPS (github.com/by256/emps, MIT; Yildirim & Cole, J. Chem. Inf. Model. 2021) holds 465 SEM/TEM
figure crops as RGB PNGs in ``images/``, their 16-bit instance masks in ``segmaps/``, and the
official split as two header-less lists of image ids, ``train.csv`` and ``test.csv``. The README's
EMPS figures (docs/emps.md) are measured on the folder this writes:

    git clone https://github.com/by256/emps && python scripts/emps_folder.py emps data/emps
    harness run --dataset data/emps --method none --budget 100% --task-version distmap-v3 \\
        --backbone resnet18 --finetune-steps 3000

Images are stored as 8-bit grey PNGs (every EMPS image has R = G = B; one that does not is refused,
as grey would then lose information), masks unchanged. ``metadata.csv`` marks the ids of
``test.csv`` as ``test``, so harness uses exactly that test set and draws train and val 3 : 1 from
the rest; the pixel size is left empty (EMPS states none), so harness reads it from the scale bar
where it can. Nothing is downloaded here.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import click
import imageio.v3 as iio
import numpy as np


def _ids(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _grey(path: Path) -> np.ndarray:
    image = iio.imread(path)
    if image.ndim == 3:
        channels = image[..., :3]
        if not (np.array_equal(channels[..., 0], channels[..., 1])
                and np.array_equal(channels[..., 0], channels[..., 2])):
            raise click.ClickException(f"{path}: its colour channels differ; EMPS images are grey")
        image = channels[..., 0]
    if image.dtype != np.uint8:
        raise click.ClickException(f"{path}: {image.dtype} pixels, expected 8-bit")
    return image


def convert(source: Path, out: Path) -> dict[str, int]:
    """Write OUT/images, OUT/masks and OUT/metadata.csv from the EMPS checkout SOURCE."""
    for name in ("images", "segmaps", "train.csv", "test.csv"):
        if not (source / name).exists():
            raise click.ClickException(f"{source / name}: missing; SOURCE must be a checkout of "
                                       "github.com/by256/emps")
    test, train = _ids(source / "test.csv"), _ids(source / "train.csv")
    stems = sorted(p.stem for p in (source / "images").glob("*.png"))
    listed = set(test) | set(train)
    if set(test) & set(train):
        raise click.ClickException(f"{source}: ids in both train.csv and test.csv: "
                                   f"{sorted(set(test) & set(train))[:3]}")
    if listed != set(stems):
        odd = sorted(listed.symmetric_difference(stems))
        raise click.ClickException(f"{source}: train.csv + test.csv and images/ disagree on "
                                   f"{len(odd)} ids, e.g. {odd[:3]}")
    if out.exists() and any(out.iterdir()):
        raise click.ClickException(f"{out}: exists and is not empty; choose a new folder")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    test_ids = set(test)
    rows = []
    for stem in stems:
        mask = source / "segmaps" / f"{stem}.png"
        if not mask.exists():
            raise click.ClickException(f"{mask}: missing (every EMPS image has a mask)")
        iio.imwrite(out / "images" / f"{stem}.png", _grey(source / "images" / f"{stem}.png"))
        shutil.copyfile(mask, out / "masks" / f"{stem}.png")
        rows.append({"image": f"{stem}.png", "pixel_size_nm": "",
                     "split": "test" if stem in test_ids else ""})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["image", "pixel_size_nm", "split"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (out / "metadata.csv").write_text(buffer.getvalue())
    return {"images": len(stems), "test": len(test_ids)}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
def main(source: Path, out: Path) -> None:
    """Convert the EMPS checkout SOURCE into the harness folder OUT (see the module docstring)."""
    counts = convert(source, out)
    click.echo(f"{out}: {counts['images']} images with masks, {counts['test']} of them the official test split")


if __name__ == "__main__":
    main()
