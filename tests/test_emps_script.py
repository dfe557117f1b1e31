"""scripts/emps_folder.py: an EMPS checkout becomes the folder the README's EMPS figures come from.

The vendored tests/data/emps-real was made from EMPS by hand; the script, given the same images in
EMPS's own layout (RGB PNGs, segmaps/, header-less id lists), must write the same pixels, masks and
split column, and refuse a checkout it cannot convert faithfully.
"""

from __future__ import annotations

import csv
from pathlib import Path

import click
import imageio.v3 as iio
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
VENDORED = ROOT / "tests" / "data" / "emps-real"


def _emps_checkout(tmp_path: Path, stems: list[str], test: list[str]) -> Path:
    """EMPS's layout, rebuilt from vendored images: RGB with R = G = B, as EMPS ships them."""
    source = tmp_path / "emps"
    (source / "images").mkdir(parents=True)
    (source / "segmaps").mkdir()
    for stem in stems:
        grey = iio.imread(VENDORED / "images" / f"{stem}.png")
        iio.imwrite(source / "images" / f"{stem}.png", np.repeat(grey[..., None], 3, axis=2))
        (source / "segmaps" / f"{stem}.png").write_bytes((VENDORED / "masks" / f"{stem}.png").read_bytes())
    (source / "test.csv").write_text("".join(f"{s}\n" for s in test))
    (source / "train.csv").write_text("".join(f"{s}\n" for s in stems if s not in test))
    return source


def _vendored_rows() -> dict[str, str]:
    with open(VENDORED / "metadata.csv") as f:
        return {row["image"]: row["split"] for row in csv.DictReader(f)}


def test_the_script_reproduces_the_vendored_emps_subset(tmp_path, script):
    splits = _vendored_rows()
    stems = sorted(Path(name).stem for name in splits)[:6]
    test = [s for s in stems if splits[f"{s}.png"] == "test"]
    assert 0 < len(test) < len(stems)  # the sample holds both kinds of row
    out = tmp_path / "folder"
    counts = script("emps_folder").convert(_emps_checkout(tmp_path, stems, test), out)
    assert counts == {"images": len(stems), "test": len(test)}
    for stem in stems:
        assert np.array_equal(iio.imread(out / "images" / f"{stem}.png"),
                              iio.imread(VENDORED / "images" / f"{stem}.png"))
        assert np.array_equal(iio.imread(out / "masks" / f"{stem}.png"),
                              iio.imread(VENDORED / "masks" / f"{stem}.png"))
    with open(out / "metadata.csv") as f:
        written = {row["image"]: row["split"] for row in csv.DictReader(f)}
    assert written == {f"{s}.png": splits[f"{s}.png"] for s in stems}


def test_the_script_refuses_what_it_cannot_convert_faithfully(tmp_path, script):
    splits = _vendored_rows()
    stems = sorted(Path(name).stem for name in splits)[:3]
    emps_folder = script("emps_folder")
    source = _emps_checkout(tmp_path, stems, stems[:1])
    (source / "test.csv").write_text(f"{stems[0]}\nnot-an-image\n")
    with pytest.raises(click.ClickException, match="disagree on 1 ids"):
        emps_folder.convert(source, tmp_path / "a")
    (source / "test.csv").write_text(f"{stems[0]}\n")
    rgb = iio.imread(source / "images" / f"{stems[1]}.png")
    rgb[0, 0, 1] = rgb[0, 0, 0] ^ 1  # one pixel whose channels differ: grey would lose it
    iio.imwrite(source / "images" / f"{stems[1]}.png", rgb)
    with pytest.raises(click.ClickException, match=f"{stems[1]}.png: its colour channels differ"):
        emps_folder.convert(source, tmp_path / "b")
    with pytest.raises(click.ClickException, match="missing"):
        emps_folder.convert(tmp_path / "b", tmp_path / "c")
