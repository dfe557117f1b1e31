"""The embedded dataset synthetic-nanowire: balanced morphology classes and length scales, the
arrangement each class promises (measured on the masks, not on the generator's own notes),
wire widths that match the stated diameter and pixel size, and bytes that do not depend on
the order of generation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import regionprops
from skimage.morphology import skeletonize

from harness.data.nanowire import MORPHOLOGIES, NanowireDataset
from harness.data.registry import dataset_names, open_dataset


@pytest.fixture(scope="module")
def dataset():
    return open_dataset("synthetic-nanowire", profile="smoke")


def _touching(mask: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of distinct wire ids that share an edge (4-neighbours)."""
    pairs = set()
    for a, b in ((mask[:, :-1], mask[:, 1:]), (mask[:-1], mask[1:])):
        contact = (a != b) & (a > 0) & (b > 0)
        pairs |= {tuple(sorted(p)) for p in zip(a[contact].tolist(), b[contact].tolist(), strict=True)}
    return pairs


def test_it_is_listed_with_balanced_classes_and_length_scales(dataset):
    assert "synthetic-nanowire" in dataset_names()
    index = dataset.index()
    assert len(index) == 48 and index["labeled"].all()
    table = index.groupby(["category", "length_scale"]).size()
    assert set(index["category"]) == set(MORPHOLOGIES)
    assert (table == 4).all() and len(table) == 12  # every class at every bin, equally often


def test_every_class_looks_like_its_name(dataset):
    index = dataset.index()
    for morphology in MORPHOLOGIES:
        for sample_id in index.loc[index["category"] == morphology, "id"]:
            sample = dataset.load(sample_id)
            mask = sample.mask
            assert sample.category == morphology and sample.mask is not None
            wires = int(mask.max())
            touching = _touching(mask)
            if morphology == "singular":
                assert wires == 1, sample_id
            elif morphology == "dispersed":
                assert wires >= 3 and not touching, (sample_id, touching)
            elif morphology == "bundle":
                assert wires >= 3 and len(touching) >= wires // 2, sample_id
                # one direction: each wire's orientation within 25 degrees of the bundle's median
                angles = np.array([r.orientation for r in regionprops(mask) if r.area >= 30])
                spread = np.abs(np.angle(np.exp(2j * (angles - np.median(angles))))) / 2
                assert np.degrees(np.median(spread)) < 25, (sample_id, np.degrees(spread))
            else:
                assert wires >= 8 and len(touching) >= wires // 2, sample_id


def test_a_wire_is_as_wide_as_its_diameter_says(dataset):
    """Width measured on the mask against diameter_nm / pixel size: a wire is a stadium whose
    skeleton stops half a width short of each end, so area = w * skeleton + pi/4 * w**2."""
    ratios = []
    index = dataset.index()
    for sample_id in index.loc[index["category"].isin(["singular", "dispersed"]), "id"]:
        sample = dataset.load(sample_id)
        for row in sample.particles.itertuples():
            region = sample.mask == row.label
            length = int(skeletonize(region).sum())
            if length < 20 or row.touches_border:
                continue
            area = float(region.sum())
            width = (-length + np.sqrt(length**2 + np.pi * area)) / (np.pi / 2)
            ratios.append(width / (row.diameter_nm / sample.pixel_size_nm))
    assert len(ratios) >= 10
    assert 0.85 < float(np.median(ratios)) < 1.2, ratios


def test_pixel_sizes_are_in_the_embedded_range_and_widths_are_resolvable(dataset):
    for sample_id in dataset.index()["id"]:
        sample = dataset.load(sample_id)
        assert 0.5 <= sample.pixel_size_nm <= 50 and sample.image.dtype == np.uint16
        widths = sample.particles["diameter_nm"] / sample.pixel_size_nm
        # the material is chosen to be 3.5-16 px wide; each wire's diameter varies around it
        assert 3.0 < widths.median() < 19 and widths.min() >= 2.4, (sample_id, widths.tolist())
        assert ndimage.label(sample.mask > 0)[1] >= 1


def test_an_image_is_the_same_bytes_alone_or_generated_in_workers(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "a"))
    alone = NanowireDataset(profile="smoke").load("nanowire-000017")
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "b"))
    many = NanowireDataset(profile="smoke")
    assert many.generate(workers=2) == 48
    again = many.load("nanowire-000017")
    assert np.array_equal(alone.image, again.image) and np.array_equal(alone.mask, again.mask)
    assert alone.category == again.category
