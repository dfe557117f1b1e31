"""The embedded dataset: deterministic, consistent ground truth, realistic variety."""

from __future__ import annotations

import numpy as np
import pytest

from harness.data.scales import SCALE_NAMES
from harness.data.synthetic import SHAPES, SyntheticDataset, draw_params, render_image
from harness.errors import HarnessError


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    def use(name: str):
        monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / name))

    return use


def load_all(ds: SyntheticDataset, n: int = 6):
    return [ds.load(i) for i in ds.index()["id"][:n]]


@pytest.mark.parametrize("modality", ["SEM", "TEM"])
def test_same_seed_same_bytes_across_fresh_caches_other_seed_differs(fresh_cache, modality):
    fresh_cache("a")
    a = load_all(SyntheticDataset(modality, "smoke", seed=0))
    fresh_cache("b")
    b = load_all(SyntheticDataset(modality, "smoke", seed=0))
    fresh_cache("c")
    c = load_all(SyntheticDataset(modality, "smoke", seed=1))
    for x, y in zip(a, b):
        assert x.image.tobytes() == y.image.tobytes() and x.mask.tobytes() == y.mask.tobytes()
    assert any(x.image.tobytes() != z.image.tobytes() for x, z in zip(a, c))
    assert SyntheticDataset(modality, "smoke", seed=0).identity != SyntheticDataset(modality, "smoke", seed=1).identity


def test_samples_render_alone_in_any_order(fresh_cache):
    fresh_cache("order")
    ds = SyntheticDataset("SEM", "smoke")
    ids = list(ds.index()["id"][:4])
    forward = [ds.load(i).image.tobytes() for i in ids]
    fresh_cache("reverse")
    ds = SyntheticDataset("SEM", "smoke")
    backward = [ds.load(i).image.tobytes() for i in reversed(ids)]
    assert forward == backward[::-1]


def test_cached_reload_equals_render_and_does_not_render_again(fresh_cache, monkeypatch):
    fresh_cache("reload")
    ds = SyntheticDataset("TEM", "smoke")
    sample_id = ds.index()["id"][0]
    first = ds.load(sample_id)
    import harness.data.synthetic as synthetic

    def no_render(*args, **kwargs):
        raise AssertionError("rendered again instead of reading the cache")

    monkeypatch.setattr(synthetic, "render_image", no_render)
    again = SyntheticDataset("TEM", "smoke").load(sample_id)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.mask, again.mask)
    assert first.particles.equals(again.particles)


@pytest.mark.parametrize("modality,dtype", [("SEM", np.uint8), ("TEM", np.uint16)])
def test_masks_and_particle_tables_are_consistent(modality, dtype):
    ds = SyntheticDataset(modality, "smoke")
    for sample in load_all(ds, 9):
        assert sample.image.dtype == dtype and sample.mask.dtype == np.int32
        assert sample.image.shape == sample.mask.shape == (128, 128)
        ids = np.unique(sample.mask)
        assert ids[0] == 0 and np.array_equal(ids[1:], np.arange(1, len(ids)))  # consecutive
        if sample.databar_rows:
            assert not sample.mask[-sample.databar_rows :].any()
        table = sample.particles
        assert list(table["label"]) == list(range(1, len(ids)))
        areas = np.bincount(sample.mask.ravel())[1:]
        assert np.array_equal(table["area_px"].to_numpy(), areas)
        assert (table["diameter_nm"] > 0).all()


def test_pixel_sizes_span_two_decades_and_fill_every_bin():
    index = SyntheticDataset("SEM", "quick").index()
    assert index["pixel_size_nm"].max() / index["pixel_size_nm"].min() >= 80
    counts = index["length_scale"].value_counts()
    assert set(counts.index) == set(SCALE_NAMES)
    assert counts.min() >= len(index) / 3 - 1


def test_shapes_touching_and_border_cut_particles_occur():
    tables = []
    for modality in ("SEM", "TEM"):
        ds = SyntheticDataset(modality, "smoke")
        tables += [s.particles for s in load_all(ds, 12)]
    import pandas as pd

    particles = pd.concat(tables)
    assert set(particles["shape"]) == set(SHAPES)
    assert particles["touching"].mean() >= 0.2
    assert particles["touches_border"].any()


def test_sem_images_can_carry_a_data_bar_that_is_never_labeled():
    ds = SyntheticDataset("SEM", "smoke")
    bars = [s for s in load_all(ds, 20) if s.databar_rows]
    assert bars, "some SEM images must carry a data bar"
    sample = bars[0]
    bar = sample.image[-sample.databar_rows :]
    assert bar.min() < 30 and bar.max() > 200  # dark band with bright text
    assert not sample.mask[-sample.databar_rows :].any()


def test_rendering_is_a_pure_function_of_params_and_seed():
    p = draw_params(3, "TEM", 7, 96)
    a, b = render_image(p, 3), render_image(p, 3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_bad_options_are_refused():
    with pytest.raises(HarnessError, match="modality"):
        SyntheticDataset("XRD", "smoke")
    with pytest.raises(HarnessError, match="profile"):
        SyntheticDataset("SEM", "huge")
    with pytest.raises(HarnessError, match="no sample"):
        SyntheticDataset("SEM", "smoke").load("sem-999999")


def test_parallel_generation_gives_the_same_bytes(tmp_path, monkeypatch):
    """Each image comes from its own seeded stream: 2 worker processes write what 1 process writes."""
    import hashlib

    from harness.data.synthetic import SyntheticDataset

    digests = {}
    for workers in (1, 2):
        monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / f"w{workers}"))
        dataset = SyntheticDataset("TEM", profile="smoke", seed=3)
        assert dataset.generate(workers=workers) == len(dataset.index())
        assert dataset.generate(workers=workers) == 0  # all cached now
        digests[workers] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                            for p in sorted(dataset.cache_dir.glob("*.npz"))}
    assert len(digests[1]) == 48 and digests[1] == digests[2]
