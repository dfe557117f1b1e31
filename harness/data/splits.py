"""Split manifests and nested label budgets.

A manifest assigns every sample of a dataset to exactly one of four pools (unlabeled pretraining
pool, labeled training pool, validation, test) from a *split seed* that is independent of any
training seed. It also fixes one stratified order of the training pool: a label budget of k
images is the first k ids of that order, so budgets nest (1% inside 10% inside 100%) and every
budget is spread over the length-scale bins in proportion to the pool. The manifest's content
hash goes into every result.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from harness.data.base import CATEGORY_COLUMN, Dataset, DatasetIdentity, stable_hash
from harness.errors import HarnessError

POOLS = ("unlabeled", "train", "val", "test")
DEFAULT_SPLIT_SEED = 0
#: Every seed (data, split, training) lies in [0, MAX_SEED]: what numpy and torch both take.
MAX_SEED = 2**32 - 1


class SplitManifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    dataset: DatasetIdentity
    split_seed: int
    fractions: dict[str, float]
    pools: dict[str, list[str]]
    budget_order: list[str]  # the training pool in stratified order; a budget is a prefix
    length_scales: dict[str, str]  # sample id -> bin, for every id in the manifest
    hash: str

    def budget_ids(self, budget: Budget | str, categories: Mapping[str, str] | None = None) -> list[str]:
        """The training images of a budget: a prefix of :attr:`budget_order`, so budgets nest. A
        per-class budget (``4/class``) takes the first images of each class in that order, from
        ``categories`` (id -> class: the dataset index's ``category`` column)."""
        if isinstance(budget, str):
            budget = Budget.parse(budget)
        if budget.per_class is None:
            return self.budget_order[: budget.count(len(self.budget_order))]
        if categories is None:
            raise HarnessError(f"label budget {budget.text} counts images per class, and this dataset has no "
                               "image classes (a 'category' column: synthetic-nanowire has one)")
        by_class: dict[str, list[str]] = {}
        for sample_id in self.budget_order:
            by_class.setdefault(categories[sample_id], []).append(sample_id)
        short = {c: len(ids) for c, ids in sorted(by_class.items()) if len(ids) < budget.per_class}
        if short:
            raise HarnessError(f"label budget {budget.text} asks for more images than the training pool holds "
                               f"for class(es) " + ", ".join(f"{c} ({n})" for c, n in short.items()))
        chosen = {i for ids in by_class.values() for i in ids[: budget.per_class]}
        return [i for i in self.budget_order if i in chosen]

    def pool_counts(self) -> pd.DataFrame:
        """Rows: pools; columns: length-scale bins and total."""
        rows = {}
        for pool, ids in self.pools.items():
            rows[pool] = pd.Series([self.length_scales[i] for i in ids]).value_counts()
        table = pd.DataFrame(rows).T.fillna(0).astype(int).reindex(list(POOLS)).fillna(0)
        table = table.astype(int)
        table["total"] = table.sum(axis=1)
        return table


def budget_slug(text: str) -> str:
    """A budget as it appears in file and folder names: ``10%`` -> ``10pct``, ``4/class`` -> ``4perclass``."""
    return text.replace("%", "pct").replace("/class", "perclass")


class Budget(BaseModel):
    """A label budget: a percentage of the training pool (``10%``), an image count (``8``) or a
    count per image class (``4/class``, for datasets whose images have classes)."""

    model_config = ConfigDict(frozen=True)

    text: str
    percent: float | None = None
    images: int | None = None
    per_class: int | None = None

    @classmethod
    def parse(cls, text: str) -> Budget:
        raw = str(text).strip()
        if m := re.fullmatch(r"(\d+)\s*/\s*class", raw):
            if int(m.group(1)) < 1:
                raise HarnessError(f"label budget {raw!r} is empty: give at least 1 image per class")
            return cls(text=f"{int(m.group(1))}/class", per_class=int(m.group(1)))
        if m := re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", raw):
            percent = float(m.group(1))
            if not 0 < percent <= 100:
                raise HarnessError(
                    f"label budget {raw!r} is out of range: a percentage must be above 0% and at most 100%"
                )
            return cls(text=raw, percent=percent)
        if re.fullmatch(r"\d+", raw):
            images = int(raw)
            if images < 1:
                raise HarnessError(f"label budget {raw!r} is empty: give at least 1 image")
            return cls(text=raw, images=images)
        raise HarnessError(
            f"label budget {raw!r} is not understood: use a percentage like 10%, an image count like 8 or a count "
            "per class like 4/class"
        )

    def count(self, pool_size: int) -> int:
        """Number of training images this budget selects from a pool of ``pool_size``; never 0
        (a per-class budget is counted by :meth:`SplitManifest.budget_ids`)."""
        if self.per_class is not None:
            raise HarnessError(f"label budget {self.text} counts images per class: it needs the images' classes")
        if pool_size < 1:
            raise HarnessError("the labeled training pool is empty: no label budget can be drawn")
        if self.images is not None:
            if self.images > pool_size:
                raise HarnessError(
                    f"label budget {self.text} asks for more images than the training pool holds ({pool_size})"
                )
            return self.images
        assert self.percent is not None
        return max(1, min(pool_size, round(self.percent / 100 * pool_size)))


def _largest_remainder(total: int, fractions: list[float]) -> list[int]:
    raw = np.asarray(fractions, dtype=float) * total
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    for i in order[: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def _stratified_order(ids_by_scale: dict[str, list[str]]) -> list[str]:
    """Interleave the per-bin lists so that every prefix is as proportional as possible."""
    scales = sorted(ids_by_scale)
    total = sum(len(v) for v in ids_by_scale.values())
    shares = {s: len(ids_by_scale[s]) / total for s in scales} if total else {}
    taken = dict.fromkeys(scales, 0)
    order: list[str] = []
    for position in range(1, total + 1):
        # the bin furthest behind its share goes next; ties go to the larger bin, then by name
        best = max(
            (s for s in scales if taken[s] < len(ids_by_scale[s])),
            key=lambda s: (shares[s] * position - taken[s], shares[s], s),
        )
        order.append(ids_by_scale[best][taken[best]])
        taken[best] += 1
    return order


def _pool_sequence(total: int, fractions: dict[str, float]) -> list[str]:
    """``total`` pool names in an order whose every prefix is as proportional to ``fractions`` as possible."""
    counts = _largest_remainder(total, [fractions[p] for p in POOLS])
    slots = {pool: [pool] * n for pool, n in zip(POOLS, counts) if n}
    return _stratified_order(slots)


def _stratum(length_scale: str, category: str | None) -> str:
    # classes first: strata draw pools in sorted turn, and each class must meet every pool
    return length_scale if category is None else f"{category}/{length_scale}"


def _open_fractions(fractions: dict[str, float], fixed_test: bool, free_labeled: int) -> dict[str, float]:
    """The shares by which labeled images without a fixed split are drawn. Once some row's
    ``split`` says ``test``, the test pool is closed: it holds exactly those rows (an official test
    set stays the official one, not topped up by a random draw) and the other images share
    unlabeled/train/val in their given proportions. Rows fixed to train or val only join those
    pools, beside the draw."""
    if not fixed_test or not free_labeled:
        return fractions
    open_total = sum(share for pool, share in fractions.items() if pool != "test")
    if open_total <= 0:
        raise HarnessError(f"{free_labeled} labeled image(s) have no split and the test pool is fixed by the "
                           "split column, but no other pool has a share: give them a split")
    return {pool: 0.0 if pool == "test" else share / open_total for pool, share in fractions.items()}


def make_manifest(dataset: Dataset, split_seed: int = DEFAULT_SPLIT_SEED) -> SplitManifest:
    """Assign every sample of ``dataset`` to a pool, deterministically from ``split_seed``."""
    index = dataset.index()
    fractions = {pool: float(dataset.split_fractions.get(pool, 0.0)) for pool in POOLS}
    if abs(sum(fractions.values()) - 1.0) > 1e-9:
        raise HarnessError(f"split fractions of {dataset.identity.name} do not sum to 1: {fractions}")
    pools: dict[str, list[str]] = {pool: [] for pool in POOLS}
    fixed = index["split"].notna()
    for row in index[fixed].itertuples():
        if row.split not in POOLS:
            raise HarnessError(f"sample {row.id}: split {row.split!r} is not one of {', '.join(POOLS)}")
        if row.split != "unlabeled" and not row.labeled:
            raise HarnessError(f"sample {row.id}: split {row.split!r} needs a mask, and it has none")
        pools[row.split].append(row.id)
    free = index[~fixed]
    pools["unlabeled"].extend(free.loc[~free["labeled"], "id"])
    labeled = free[free["labeled"]]
    fractions = _open_fractions(fractions, fixed_test=bool(pools["test"]), free_labeled=len(labeled))
    # the strata: length-scale bins, and within them image classes where the dataset has them
    # (so that per-class budgets can be drawn); without classes a stratum is a bin, as always
    has_classes = CATEGORY_COLUMN in index.columns
    stratum_of = {row.id: _stratum(row.length_scale, getattr(row, CATEGORY_COLUMN) if has_classes else None)
                  for row in index.itertuples()}
    labeled = labeled.assign(stratum=[stratum_of[i] for i in labeled["id"]])
    rng = np.random.default_rng(split_seed)
    # with classes the strata are small (smoke: 4 images), and rounding each alone would give
    # every one the same pools (none a test image): they draw in turn from one sequence of pools
    # whose every prefix is proportional; without classes each bin rounds alone, as always
    turns = iter(_pool_sequence(len(labeled), fractions)) if has_classes else None
    for scale in sorted(labeled["stratum"].unique()):
        ids = sorted(labeled.loc[labeled["stratum"] == scale, "id"])
        ids = [ids[i] for i in rng.permutation(len(ids))]
        if turns is not None:
            for sample_id in ids:
                pools[next(turns)].append(sample_id)
            continue
        counts = _largest_remainder(len(ids), [fractions[p] for p in POOLS])
        start = 0
        for pool, n in zip(POOLS, counts):
            pools[pool].extend(ids[start : start + n])
            start += n
    pools = {pool: sorted(ids) for pool, ids in pools.items()}
    scale_of = dict(zip(index["id"], index["length_scale"]))
    train_by_scale: dict[str, list[str]] = {}
    for sample_id in pools["train"]:
        train_by_scale.setdefault(stratum_of[sample_id], []).append(sample_id)
    for scale, ids in train_by_scale.items():
        order_rng = np.random.default_rng([split_seed, sum(scale.encode())])
        train_by_scale[scale] = [ids[i] for i in order_rng.permutation(len(ids))]
    budget_order = _stratified_order(train_by_scale)
    body = {
        "dataset": dataset.identity.model_dump(),
        "split_seed": split_seed,
        "fractions": fractions,
        "pools": pools,
        "budget_order": budget_order,
        "length_scales": {k: scale_of[k] for k in sorted(scale_of)},
    }
    return SplitManifest(**body, hash=stable_hash(body))
