"""Split manifests and label budgets, on a small in-memory dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.data.base import Dataset, DatasetIdentity
from harness.data.sample import Sample
from harness.data.scales import length_scale_of
from harness.data.splits import POOLS, Budget, make_manifest
from harness.errors import HarnessError


class TableDataset(Dataset):
    """Index-only dataset: pixel sizes cycle over the three bins, with an uneven share."""

    def __init__(self, n: int = 90, unlabeled: int = 0, fixed: dict[str, str] | None = None):
        sizes = [1.0, 1.0, 5.0, 20.0]  # twice as many high-mag images as the others
        rows = []
        for i in range(n):
            pixel_size = sizes[i % len(sizes)]
            rows.append(
                {
                    "id": f"img-{i:03d}",
                    "labeled": i >= unlabeled,
                    "pixel_size_nm": pixel_size,
                    "length_scale": length_scale_of(pixel_size),
                    "modality": "SEM",
                    "split": (fixed or {}).get(f"img-{i:03d}"),
                }
            )
        self._index = pd.DataFrame(rows)
        self.identity = DatasetIdentity(name="table", version="1", params_hash=f"n{n}u{unlabeled}")
        self.split_fractions = {"unlabeled": 0.5, "train": 0.3, "val": 0.1, "test": 0.1}

    def index(self) -> pd.DataFrame:
        return self._index.copy()

    def load(self, sample_id: str) -> Sample:  # pragma: no cover - splits never load pixels
        raise AssertionError("splits must not load pixels")


def test_pools_are_disjoint_and_cover_every_sample():
    manifest = make_manifest(TableDataset(unlabeled=10), split_seed=3)
    seen = [i for pool in POOLS for i in manifest.pools[pool]]
    assert len(seen) == len(set(seen)) == 90
    # images without masks can only be pretraining images
    assert {f"img-{i:03d}" for i in range(10)} <= set(manifest.pools["unlabeled"])
    assert all(len(manifest.pools[p]) > 0 for p in POOLS)


def test_manifest_is_deterministic_and_seed_dependent():
    a = make_manifest(TableDataset(), split_seed=0)
    b = make_manifest(TableDataset(), split_seed=0)
    c = make_manifest(TableDataset(), split_seed=1)
    assert a == b and a.hash == b.hash
    assert a.pools != c.pools and a.hash != c.hash


def test_hash_changes_with_dataset_identity():
    assert make_manifest(TableDataset(n=90)).hash != make_manifest(TableDataset(n=91)).hash


def test_each_pool_is_stratified_by_length_scale():
    manifest = make_manifest(TableDataset(n=400), split_seed=0)
    counts = manifest.pool_counts()
    for pool in ("train", "val", "test"):
        share = counts.loc[pool, "high-mag"] / counts.loc[pool, "total"]
        assert share == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("split_seed", [0, 7])
def test_budgets_nest_and_are_stratified(split_seed):
    manifest = make_manifest(TableDataset(n=400), split_seed=split_seed)
    previous: list[str] = []
    for text in ["1%", "10%", "25%", "100%"]:
        ids = manifest.budget_ids(text)
        assert ids[: len(previous)] == previous and set(previous) <= set(ids)
        previous = ids
    assert sorted(previous) == manifest.pools["train"]
    ten = manifest.budget_ids("10%")
    scales = pd.Series([manifest.length_scales[i] for i in ten]).value_counts()
    assert scales["high-mag"] == pytest.approx(len(ten) / 2, abs=1)
    assert {"mid-mag", "low-mag"} <= set(scales.index)


def test_small_budget_is_never_empty():
    manifest = make_manifest(TableDataset(n=20), split_seed=0)
    assert len(manifest.budget_ids("1%")) == 1
    assert len(manifest.budget_ids("3")) == 3


@pytest.mark.parametrize("text", ["0%", "150%", "abc", "-5", "0", "10 %%", ""])
def test_invalid_budgets_are_refused(text):
    with pytest.raises(HarnessError, match="budget"):
        Budget.parse(text)


def test_budget_larger_than_pool_is_refused():
    manifest = make_manifest(TableDataset(n=20), split_seed=0)
    with pytest.raises(HarnessError, match="more images than the training pool"):
        manifest.budget_ids(str(len(manifest.pools["train"]) + 1))


def test_fixed_split_column_is_honoured():
    fixed = {"img-000": "test", "img-001": "val", "img-002": "train"}
    manifest = make_manifest(TableDataset(fixed=fixed), split_seed=0)
    for sample_id, pool in fixed.items():
        assert sample_id in manifest.pools[pool]


def test_a_fixed_test_split_is_exactly_the_rows_that_name_it():
    # an official test set (EMPS's test.csv): the other labeled images must not top it up
    official = {f"img-{i:03d}": "test" for i in range(0, 90, 9)}
    manifest = make_manifest(TableDataset(fixed=official), split_seed=0)
    assert manifest.pools["test"] == sorted(official)
    others = {pool: len(manifest.pools[pool]) for pool in ("unlabeled", "train", "val")}
    assert sum(others.values()) == 80
    # the open pools keep their given proportions (0.5 : 0.3 : 0.1 of the 80 images)
    assert abs(others["unlabeled"] - 80 * 0.5 / 0.9) <= 3 and abs(others["val"] - 80 * 0.1 / 0.9) <= 3


def test_rows_fixed_to_train_or_val_leave_the_draw_open():
    manifest = make_manifest(TableDataset(fixed={"img-000": "train", "img-001": "val"}), split_seed=0)
    assert "img-000" in manifest.pools["train"] and "img-001" in manifest.pools["val"]
    assert len(manifest.pools["test"]) >= 8  # the test share is still drawn from the rest


def test_a_fixed_test_split_needs_another_pool_for_the_rest():
    dataset = TableDataset(fixed={"img-000": "test"})
    dataset.split_fractions = {"unlabeled": 0.0, "train": 0.0, "val": 0.0, "test": 1.0}
    with pytest.raises(HarnessError, match="89 labeled image.*give them a split"):
        make_manifest(dataset)


def test_fixed_split_needing_a_mask_is_refused():
    with pytest.raises(HarnessError, match="needs a mask"):
        make_manifest(TableDataset(unlabeled=5, fixed={"img-000": "test"}))


def test_budget_percentages_round_sensibly():
    assert Budget.parse("10%").count(95) == 10
    assert Budget.parse("100%").count(7) == 7
    assert Budget.parse("0.5%").count(10) == 1
    assert np.isclose(Budget.parse("12.5%").percent, 12.5)
