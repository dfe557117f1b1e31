"""Pixel sizes read off the image: scale bars with their printed length, a data bar's field width.

The images are drawn here with a known bar length and label, so the expected size is exact by
construction (label / bar width); the OCR is the real one, with its bundled models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFont

from harness.data.export import export_pool
from harness.data.folder import FolderDataset
from harness.data.registry import open_dataset
from harness.data.scalebar import (
    DATABAR_TEXT,
    SCALE_BAR,
    Bar,
    Text,
    find_bars,
    label_of,
    parse_length_nm,
    read_pixel_size,
)
from harness.data.splits import make_manifest


def field(shape=(256, 320), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(120, 20, shape).clip(0, 255).astype(np.uint8)


def draw_bar(image: np.ndarray, left: int, top: int, width: int, label: str | None, value: int = 255) -> np.ndarray:
    """A solid bar ``width`` px wide, 6 px high, with ``label`` in 22 px type just above it."""
    picture = Image.fromarray(image)
    pen = ImageDraw.Draw(picture)
    pen.rectangle([left, top, left + width - 1, top + 5], fill=value)
    if label:
        pen.text((left + 5, top - 30), label, fill=value, font=ImageFont.load_default(size=22))
    return np.asarray(picture)


@pytest.mark.parametrize(("text", "nm"), [
    ("200 nm", 200.0), ("1.5µm", 1500.0), ("0,5 mm", 5e5), ("2 um", 2000.0), ("1 μm", 1000.0),
    ("1o0nm", 100.0),  # the OCR's letter o inside a number
    ("1±m", 1000.0),  # the OCR's reading of a micro sign
    ("7.520m", None), ("50i m", None), ("1.o.5 nm", None),  # a dropped sign or a stray letter: no guess
    ("nm", None), ("b2", None), ("100", None), ("o0 nm", None), ("Au NPs", None),
])
def test_labels_are_parsed_to_nanometres(text, nm):
    assert parse_length_nm(text) == nm


def test_a_drawn_scale_bar_reads_back_its_pixel_size():
    image = draw_bar(field(), left=200, top=225, width=80, label="200 nm")
    assert find_bars(image) == [Bar(top=225, left=200, height=6, width=80, polarity="bright")]
    reading = read_pixel_size(image)
    assert reading.source == SCALE_BAR and reading.nm == pytest.approx(200 / 80, rel=0.05)
    dark = read_pixel_size(draw_bar(field(seed=1), left=30, top=220, width=100, label="2 um", value=0))
    assert dark.source == SCALE_BAR and dark.nm == pytest.approx(2000 / 100, rel=0.05)


def test_a_bar_without_a_label_or_with_disagreeing_labels_gives_no_size():
    bare = read_pixel_size(draw_bar(field(), left=200, top=225, width=80, label=None))
    assert bare.nm is None and "no length printed" in bare.note
    assert read_pixel_size(field()).note == "no scale bar found"
    two = draw_bar(draw_bar(field((256, 480)), 20, 225, 80, "200 nm"), 300, 225, 80, "500 nm")
    disagree = read_pixel_size(two)
    assert disagree.nm is None and "disagree" in disagree.note


def test_a_label_far_from_the_bar_is_not_its_label():
    bar = Bar(top=200, left=100, height=6, width=80, polarity="bright")
    near = Text("200 nm", top=175, left=105, bottom=195, right=170)
    assert label_of(bar, [near]) == 200.0
    assert label_of(bar, [Text("200 nm", top=20, left=105, bottom=40, right=170)]) is None
    assert label_of(bar, [Text("200", 175, 105, 195, 140), Text("nm", 176, 145, 195, 170)]) == 200.0


def test_the_data_bar_field_width_gives_the_pixel_size():
    image = np.vstack([field(), np.zeros((40, 320), np.uint8)])
    picture = Image.fromarray(image)
    # in nm: this OCR drops a micro sign in small type ("Width = 7.520m"), which is then not read
    ImageDraw.Draw(picture).text((10, 262), "Width = 752.0 nm", fill=255, font=ImageFont.load_default(size=16))
    reading = read_pixel_size(np.asarray(picture), databar_rows=40)
    assert reading.source == DATABAR_TEXT and reading.nm == pytest.approx(752 / 320, rel=0.01)


def test_an_exported_folder_without_pixel_sizes_reads_them_from_the_drawn_bar(tmp_path):
    """Export embedded images, blank the pixel sizes, draw a scale-bar inset on one: the folder reads it."""
    source = open_dataset("synthetic-sem", profile="smoke")
    manifest = make_manifest(source)
    out = tmp_path / "folder"
    export_pool(source, manifest, "test", out, limit=3, progress=False)
    meta = pd.read_csv(out / "metadata.csv")
    meta["pixel_size_nm"] = np.nan
    meta.to_csv(out / "metadata.csv", index=False)
    drawn = next(i for i in manifest.pools["test"][:3] if source.load(i).databar_rows == 0)
    path = next((out / "images").glob(f"{drawn}.*"))
    image = np.asarray(Image.open(path)).copy()
    rows, cols = image.shape
    image[rows - 44 :, cols - 96 :] = 0  # an inset, as figures carry one
    picture = Image.fromarray(image)
    pen = ImageDraw.Draw(picture)
    pen.rectangle([cols - 84, rows - 12, cols - 84 + 63, rows - 8], fill=255)  # 64 px
    pen.text((cols - 82, rows - 38), "500 nm", fill=255, font=ImageFont.load_default(size=18))
    picture.save(path)
    folder = FolderDataset(out)
    index = folder.index().set_index("id")
    assert index.loc[drawn, "pixel_size_nm"] == pytest.approx(500 / 64, rel=0.05)
    assert folder.load(drawn).pixel_size_source == SCALE_BAR
    others = index.drop(index=drawn)
    assert others["pixel_size_nm"].isna().all()  # nothing printed: unknown, never guessed
