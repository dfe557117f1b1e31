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

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from harness.data.base import Dataset, DatasetIdentity, stable_hash
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

    def budget_ids(self, budget: Budget | str) -> list[str]:
        if isinstance(budget, str):
            budget = Budget.parse(budget)
        return self.budget_order[: budget.count(len(self.budget_order))]

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
    """A budget as it appears in file and folder names: ``10%`` -> ``10pct``."""
    return text.replace("%", "pct")


class Budget(BaseModel):
    """A label budget: a percentage of the training pool (``10%``) or an image count (``8``)."""

    model_config = ConfigDict(frozen=True)

    text: str
    percent: float | None = None
    images: int | None = None

    @classmethod
    def parse(cls, text: str) -> Budget:
        raw = str(text).strip()
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
            f"label budget {raw!r} is not understood: use a percentage like 10% or an image count like 8"
        )

    def count(self, pool_size: int) -> int:
        """Number of training images this budget selects from a pool of ``pool_size``; never 0."""
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
    rng = np.random.default_rng(split_seed)
    for scale in sorted(labeled["length_scale"].unique()):
        ids = sorted(labeled.loc[labeled["length_scale"] == scale, "id"])
        ids = [ids[i] for i in rng.permutation(len(ids))]
        counts = _largest_remainder(len(ids), [fractions[p] for p in POOLS])
        start = 0
        for pool, n in zip(POOLS, counts):
            pools[pool].extend(ids[start : start + n])
            start += n
    pools = {pool: sorted(ids) for pool, ids in pools.items()}
    scale_of = dict(zip(index["id"], index["length_scale"]))
    train_by_scale: dict[str, list[str]] = {}
    for sample_id in pools["train"]:
        train_by_scale.setdefault(scale_of[sample_id], []).append(sample_id)
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
