"""Boards: the filed records grouped into comparable sets (one dataset, task, profile, protocol,
settings, numerics, schema) and the entries of each; :mod:`harness.results.tables` ranks them."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.data.base import stable_hash
from harness.data.folder import FOLDER_VERSION, folder_version_of
from harness.errors import HarnessError
from harness.metrics.aggregate import GROUP_ORDER
from harness.numerics import LEGACY_NUMERICS, NUMERICS_VERSION
from harness.results.leaderboard import Filed
from harness.task import DEFAULT_TASK, LEGACY_TASK

SeedKey = tuple[int, int, int]

BASELINE_METHOD = "none"


@dataclass(frozen=True)
class BoardKey:
    dataset: str  # dataset key, e.g. synthetic-sem-v1-fdb4e2fd596d3b44
    manifest: str
    profile: str
    schema: int
    protocol: str
    settings: str  # hash of the training settings (backbone aside): a changed profile is a new board
    task: str = LEGACY_TASK  # the downstream task version (also inside the settings)
    numerics: str = LEGACY_NUMERICS  # harness.numerics: records of different versions never share a table

    @property
    def _numerics_suffix(self) -> str:
        # sections from before numerics versions were kept keep their published titles
        return "" if self.numerics == LEGACY_NUMERICS else f" · numerics {self.numerics}"

    @property
    def title(self) -> str:
        return (f"{self.dataset} · task {self.task} · profile {self.profile} · protocol {self.protocol} · "
                f"split manifest {self.manifest} · settings {self.settings} · schema v{self.schema}"
                f"{self._numerics_suffix}")

    @property
    def short_title(self) -> str:
        """What tells two sections' figures apart, short enough for a plot title."""
        dataset = re.sub(r"-[0-9a-f]{16}$", "", self.dataset)  # the version stays, the params hash goes
        return (f"{dataset} · {self.task} · {self.profile} · {self.protocol} · "
                f"settings {self.settings}{self._numerics_suffix}")

    @property
    def history_reason(self) -> str | None:
        """Why this harness no longer computes such records (None: it does): a retired task version
        (3class-v1 is kept only to explain its records), another numerics version, or a folder read as
        an older folder version. Such sections are
        history: kept as filed, listed after the current ones, never pooled with them."""
        if self.task == LEGACY_TASK:
            return f"task {self.task} is retired (kept so that its records stay explained)"
        if self.numerics != NUMERICS_VERSION:
            when = "before numerics versions were kept" if self.numerics == LEGACY_NUMERICS else \
                f"under numerics {self.numerics}"
            return f"computed {when}; this harness computes numerics {NUMERICS_VERSION}"
        folder = folder_version_of(self.dataset)
        if folder is not None and folder != FOLDER_VERSION:  # a lab's board outlives a harness upgrade
            return f"a folder read as {folder}; this harness reads folders as {FOLDER_VERSION} (harness.numerics)"
        return None

    @property
    def current(self) -> bool:
        return self.history_reason is None

    @property
    def status(self) -> str:
        """One line for a reader: current, or history and why."""
        reason = self.history_reason
        if reason is not None:
            return f"history: {reason}"
        def family(task: str) -> str:  # "distmap" of "distmap-v3"
            return task.rsplit("-v", 1)[0]

        if self.task == DEFAULT_TASK:
            default = " (the default)"
        elif family(self.task) == family(DEFAULT_TASK):
            default = f" (an earlier version of the default task, {DEFAULT_TASK})"
        else:
            default = ""
        return f"current: task {self.task}{default}, numerics {self.numerics}, what this harness computes today"


@dataclass(frozen=True)
class EntryKey:
    method: str
    config_hash: str
    backbone: str
    code: str = ""  # MethodInfo.code: the distribution (and version) that computed it


@dataclass
class Board:
    """Comparable records: one dataset version, manifest, profile, schema and protocol."""

    key: BoardKey
    budgets: list[tuple[str, int]] = field(default_factory=list)  # (budget text, labelled images), ascending
    labels: dict[EntryKey, str] = field(default_factory=dict)
    roles: dict[EntryKey, str] = field(default_factory=dict)  # method, control or reference
    runs: dict[tuple[EntryKey, str], dict[SeedKey, Filed]] = field(default_factory=dict)
    train_seeds: tuple[int, ...] | None = None  # only these training seeds were kept (None: all filed)

    @property
    def entries(self) -> list[EntryKey]:
        return sorted(self.labels, key=lambda e: (self.labels[e], e.config_hash, e.backbone))

    def ranked(self, entry: EntryKey) -> bool:
        """Only methods compete: controls and reference rows are shown, never ranked."""
        return self.roles.get(entry, "method") == "method"

    def display(self, entry: EntryKey) -> str:
        role = self.roles.get(entry, "method")
        return self.labels[entry] if role == "method" else f"{self.labels[entry]} ({role})"

    def baseline(self) -> EntryKey | None:
        """The ``none`` entry (random initialisation), when the board has exactly one."""
        found = [e for e in self.labels if e.method == BASELINE_METHOD]
        return found[0] if len(found) == 1 else None

    def seeds(self, entry: EntryKey, budget: str) -> dict[SeedKey, Filed]:
        return self.runs.get((entry, budget), {})

    def budget_images(self, budget: str) -> int:
        return dict(self.budgets)[budget]

    def all_filed(self) -> list[Filed]:
        return [f for runs in self.runs.values() for f in runs.values()]

    def scales(self) -> list[str]:
        present = {name for f in self.all_filed() for name in f.record.metrics.groups}
        return [g for g in GROUP_ORDER if g in present]


def seeds_text(seeds: Collection[int]) -> str:
    """Seeds for a reader, runs of three or more as ranges: 0,2,6-11."""
    parts: list[str] = []
    ordered = sorted(set(seeds))
    start = 0
    for i in range(1, len(ordered) + 1):
        if i == len(ordered) or ordered[i] != ordered[i - 1] + 1:
            run = ordered[start:i]
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 2 else ",".join(map(str, run)))
            start = i
    return ",".join(parts)


def settings_hash(settings: dict[str, Any]) -> str:
    """Hash of the settings that decide results: the backbone is an entry property, the cache size is not."""
    return stable_hash({k: v for k, v in settings.items() if k not in ("backbone", "memory_cache_mb")}, length=8)


def _seed_key(filed: Filed) -> SeedKey:
    s = filed.record.seeds
    return (s.split, s.data, s.train)


def build_boards(filed: Sequence[Filed], dataset: str | None = None, budget: str | None = None,
                 protocol: str | None = None, train_seeds: Collection[int] | None = None) -> list[Board]:
    """Partition records into boards, after the optional filters (dataset name or key, budget, protocol,
    training seeds). Reference rows train nothing, so the seed filter keeps them whatever their seed."""
    if not filed:
        raise HarnessError("no records to show: file runs with `harness leaderboard add RUN_DIR...` first "
                           "(or point --root at a leaderboard folder)")
    chosen = list(filed)
    if dataset is not None:
        chosen = [f for f in chosen if dataset in (f.record.dataset.key, f.record.dataset.name)]
    if protocol is not None:
        chosen = [f for f in chosen if f.record.protocol == protocol]
    if budget is not None:
        chosen = [f for f in chosen if f.record.budget == budget]
    if train_seeds is not None:
        chosen = [f for f in chosen if f.record.method.role == "reference" or f.record.seeds.train in train_seeds]
    if not chosen or (train_seeds is not None and all(f.record.method.role == "reference" for f in chosen)):
        seeds = None if train_seeds is None else seeds_text(train_seeds)
        asked = ", ".join(f"--{k} {v}" for k, v in (("dataset", dataset), ("budget", budget),
                                                    ("protocol", protocol), ("seeds", seeds)) if v is not None)
        present = sorted({f"{f.record.dataset.key} ({f.record.dataset.name}) budget {f.record.budget} "
                          f"{f.record.protocol}" for f in filed})
        raise HarnessError(f"no records match {asked}; filed: {'; '.join(present[:8])}"
                           + ("; ..." if len(present) > 8 else ""))
    boards: dict[BoardKey, Board] = {}
    images: dict[tuple[BoardKey, str], int] = {}
    for f in chosen:
        r = f.record
        key = BoardKey(r.dataset.key, r.dataset.manifest_hash, r.dataset.profile, f.stored_schema, r.protocol,
                       settings_hash(r.settings), str(r.settings.get("task", LEGACY_TASK)), r.numerics)
        board = boards.setdefault(key, Board(key, train_seeds=None if train_seeds is None else
                                             tuple(sorted(train_seeds))))
        entry = EntryKey(r.method.name, r.method.config_hash, r.backbone, r.method.code)
        board.labels[entry] = r.method.name
        board.roles[entry] = r.method.role
        runs = board.runs.setdefault((entry, r.budget), {})
        seed = _seed_key(f)
        if seed in runs:
            raise HarnessError(f"{f.path} and {runs[seed].path} are the same cell and seed; remove one")
        runs[seed] = f
        known = images.setdefault((key, r.budget), r.budget_images)
        if known != r.budget_images:
            raise HarnessError(f"{f.path}: budget {r.budget} means {r.budget_images} images here but {known} "
                               "in another record of the same manifest")
    if train_seeds is not None:  # a section left with reference rows only has no seed of those asked
        boards = {k: b for k, b in boards.items() if set(b.roles.values()) != {"reference"}}
    for key, board in boards.items():
        board.budgets = sorted(((b, n) for (k, b), n in images.items() if k == key), key=lambda t: (t[1], t[0]))
        _disambiguate(board)
    # current sections first, the default task's first among them whatever the dataset is called: a
    # reader meets what `harness run` computes today before other tasks, versions and the history
    order = sorted(boards, key=lambda k: (not k.current, k.task != DEFAULT_TASK, k.dataset, k.task, k.profile,
                                          k.manifest, k.schema, k.protocol, k.settings, k.numerics))
    return [boards[k] for k in order]


def _disambiguate(board: Board) -> None:
    """Entry labels: the method name, plus backbone/config/implementation where one method has several
    entries."""
    by_method: dict[str, list[EntryKey]] = {}
    for entry in board.labels:
        by_method.setdefault(entry.method, []).append(entry)
    for method, entries in by_method.items():
        if len(entries) == 1:
            continue
        backbones = {e.backbone for e in entries}
        configs = {e.config_hash for e in entries}
        codes = {e.code for e in entries}
        for e in entries:
            parts = []
            if len(backbones) > 1:
                parts.append(e.backbone)
            if len(configs) > 1:
                parts.append(f"config {e.config_hash[:8]}")
            if len(codes) > 1:
                parts.append(e.code)
            board.labels[e] = f"{method} ({', '.join(parts)})"
