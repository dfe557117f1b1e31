"""Confirmations: a comparison declared before its cells run, tested once when every cell is filed.

A lead read off a table whose seeds were added while reading it is a hypothesis. A confirmation
states, in a file committed before its first cell starts (``ROOT/confirmations/NAME.json``), the
section, the budget, the methods, the baseline, the fresh training seeds, the metric and the
correction for several comparisons. :func:`evaluate` tests it on those seeds alone, and only once
every declared cell is filed: while cells are missing it reports which, and no p-value, so the tool
offers no way to stop early on a good-looking partial result.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import HarnessError
from harness.results import stats
from harness.results.boards import BASELINE_METHOD, Board, build_boards, seeds_text
from harness.results.leaderboard import CONFIRMATIONS_DIR, Filed, RecordStore, create_exclusive, validation_reason
from harness.results.provenance import machine_kind
from harness.results.tables import run_value

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class Confirmation(BaseModel):
    """The declaration: everything the test depends on, fixed before any of its cells runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="A file name: letters, digits, '.', '_', '-'.")
    declared: str = Field(description="When it was declared (ISO 8601, UTC), before any cell ran.")
    hypothesis: str
    dataset: str = Field(description="Dataset key or name of the section.")
    task: str
    settings: str = Field(description="The section's settings hash (harness leaderboard show prints it).")
    protocol: Literal["finetune", "frozen"] = "finetune"
    budget: str
    metric: str = "count_rel_error"
    baseline: str = BASELINE_METHOD
    methods: list[str] = Field(min_length=1)
    backbone: str | None = Field(None, description="Needed only where a method has runs on several backbones.")
    seeds: list[int] = Field(min_length=2, description="The fresh training seeds; no other seed is pooled in.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Family-wise, over the methods (Holm).")

    @field_validator("declared")
    @classmethod
    def _a_time(cls, value: str) -> str:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))  # a ValueError is pydantic's refusal
        if moment.tzinfo is None:
            raise ValueError("must state its time zone (e.g. 2026-12-06T06:46Z)")
        return value

    @model_validator(mode="after")
    def _each_once(self) -> Confirmation:
        # a repeated seed would inflate n, a repeated method Holm's m
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds {self.seeds} must be distinct and non-negative")
        if len(set(self.methods)) != len(self.methods) or self.baseline in self.methods:
            raise ValueError(f"methods {self.methods} must be distinct and must not include the baseline "
                             f"{self.baseline!r}")
        return self

    @property
    def n_cells(self) -> int:
        """The declared cells: the baseline and each method at every declared seed."""
        return len(self.seeds) * (len(self.methods) + 1)

    @property
    def declared_at(self) -> datetime:
        return datetime.fromisoformat(self.declared.replace("Z", "+00:00"))


def confirmation_path(root: Path, name: str) -> Path:
    if not re.fullmatch(NAME_PATTERN, name):
        raise HarnessError(f"confirmation name {name!r}: use letters, digits, '.', '_' and '-' (e.g. C2)")
    return root / CONFIRMATIONS_DIR / f"{name}.json"


def read_confirmation(root: Path, name: str) -> Confirmation:
    path = confirmation_path(root, name)
    if not path.is_file():
        known = ", ".join(RecordStore(root).confirmations()) or "none"
        raise HarnessError(f"{path}: no such confirmation; declared: {known}")
    try:
        confirmation = Confirmation.model_validate(json.loads(path.read_text()))
    except json.JSONDecodeError as err:
        raise HarnessError(f"{path}: not JSON ({err.msg}, line {err.lineno})") from None
    except ValidationError as err:
        raise HarnessError(f"{path}: {validation_reason(err)}") from None
    stats.direction(confirmation.metric)  # an unknown metric is refused here, not after the wait
    if confirmation.name != name:
        raise HarnessError(f"{path}: declares the name {confirmation.name!r}, not {name!r}")
    return confirmation


def declared_confirmations(store: RecordStore, release: str | None = None) -> list[Confirmation]:
    """Every confirmation declared under the store (or frozen in ``release``)."""
    return [read_confirmation(store.root, name) for name in store.confirmations(release)]


@dataclass(frozen=True)
class Comparison:
    method: str
    mean: float
    baseline_mean: float
    difference: float  # method - baseline, in the metric's own units, paired by seed
    p: float
    threshold: float  # Holm's level for this p's place
    verdict: Literal["better", "worse", "tie"]


@dataclass(frozen=True)
class Outcome:
    confirmation: Confirmation
    missing: list[tuple[str, int]]  # (method, seed) cells not filed yet
    comparisons: list[Comparison]  # empty while cells are missing
    detectable: float | None  # the smallest difference the seeds detect at power 0.8 and alpha / m
    early: list[str]  # run ids of declared cells created before the declaration (should be none)
    machines: dict[str, int]  # the CPU (or GPU) kinds the filed cells ran on, with their number of cells
    mixed_seeds: list[int]  # seeds whose filed cells ran on more than one kind: their pairs cross machines

    @property
    def complete(self) -> bool:
        return not self.missing


def holm_thresholds(p_values: list[float], alpha: float) -> list[float]:
    """Holm's step-down levels, in the input's order: the k-th smallest p is held to alpha / (m - k).
    A p passes only if it and every smaller p pass their levels."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    levels = [0.0] * len(p_values)
    for place, i in enumerate(order):
        levels[i] = alpha / (len(p_values) - place)
    return levels


def holm_rejects(p_values: list[float], alpha: float) -> list[bool]:
    levels = holm_thresholds(p_values, alpha)
    rejected = [False] * len(p_values)
    for i in sorted(range(len(p_values)), key=lambda i: p_values[i]):
        if p_values[i] > levels[i]:  # Holm (1979) rejects at p <= level
            break  # step-down: every larger p is retained too
        rejected[i] = True
    return rejected


def _section(filed: list[Filed], name: str, dataset: str, protocol: str, task: str,
             settings: str | None) -> Board | None:
    """The one current section (board) of ``dataset`` and ``task`` with ``settings`` (any, if None) that a
    confirmation reads; None while nothing of it is filed; refused where several match."""
    if not any(dataset in (f.record.dataset.key, f.record.dataset.name) and f.record.protocol == protocol
               for f in filed):
        return None
    found = [b for b in build_boards(filed, dataset=dataset, protocol=protocol)
             if _of_section(b, dataset, protocol, task, settings)]
    if len(found) > 1:  # another settings hash, split manifest or profile
        titles = "; ".join(b.key.title for b in found)
        raise HarnessError(f"confirmation {name}: {len(found)} sections match, it cannot tell them apart: {titles}"
                           + ("" if settings else "; name one with --settings"))
    return found[0] if found else None


def _of_section(board: Board, dataset: str, protocol: str, task: str, settings: str | None) -> bool:
    """Whether ``board`` is the section a confirmation of these fields reads (``settings`` None: any)."""
    key = board.key
    # history sections (a retired task, another numerics version) are not what runs today: never a target
    return (key.current and key.protocol == protocol and key.task == task and settings in (None, key.settings)
            and dataset in {key.dataset, *(f.record.dataset.name for f in board.all_filed())})


def _cells(board: Board | None, method: str, budget: str, seeds: Collection[int],
           backbone: str | None, name: str) -> dict[int, Filed]:
    """The method's filed cells at ``budget`` and ``seeds``, by training seed, from its one entry in the
    section (a second backbone, config or implementation is refused: the seeds would mix them)."""
    if board is None:
        return {}
    entries = [e for e in board.entries if e.method == method and backbone in (None, e.backbone)]
    if len(entries) > 1:
        listed = ", ".join(f"{e.backbone} config {e.config_hash[:8]} {e.code}" for e in entries)
        what = "declare the backbone" if len({e.backbone for e in entries}) > 1 else \
            "file one configuration and implementation's cells in a leaderboard root of their own"
        raise HarnessError(f"confirmation {name}: {method} has {len(entries)} entries in the section "
                           f"({listed}); {what}, or the seeds would mix them")
    if not entries:
        return {}
    cells: dict[int, Filed] = {}
    for f in board.seeds(entries[0], budget).values():
        train = f.record.seeds.train
        if train not in seeds:
            continue
        if train in cells:  # pairs are by training seed: a second split or data seed must not replace one
            other = cells[train].record.seeds
            raise HarnessError(f"confirmation {name}: {method} at {budget} has two cells of training seed {train} "
                               f"(split/data seeds {other.split}/{other.data} and {f.record.seeds.split}/"
                               f"{f.record.seeds.data}); a confirmation pairs cells by training seed alone")
        cells[train] = f
    return cells


def declared_cells(confirmation: Confirmation, filed: list[Filed]) -> dict[str, dict[int, Filed]]:
    """Each declared method's filed cells (baseline first), by training seed, in the confirmation's section."""
    c = confirmation
    board = _section(filed, c.name, c.dataset, c.protocol, c.task, c.settings)
    return {m: _cells(board, m, c.budget, c.seeds, c.backbone, c.name) for m in (c.baseline, *c.methods)}


def hold_pending(filed: list[Filed], confirmations: list[Confirmation]) -> tuple[list[Filed], list[str]]:
    """``filed`` without the cells of every confirmation that is not complete yet, and a line per such
    confirmation saying so. Tables would otherwise pool a confirmation's seeds as they land, and a p read
    part-way invites stopping early (or a test hoped for); its cells join the tables when the last lands."""
    held: set[Path] = set()
    notes = []
    for c in confirmations:
        cells = declared_cells(c, filed)
        have = [f for runs in cells.values() for f in runs.values()]
        total = len(c.seeds) * (1 + len(c.methods))
        if have and len(have) < total:
            held |= {f.path for f in have}
            notes.append(f"{len(have)} of confirmation {c.name}'s {total} cells are filed and held out of the "
                         "tables until all are (a partial look invites stopping early); `harness leaderboard "
                         f"confirm {c.name}` lists the missing ones.")
    return [f for f in filed if f.path not in held], notes


def _machines(cells: dict[str, dict[int, Filed]]) -> tuple[dict[str, int], list[int]]:
    kinds: Counter[str] = Counter()
    per_seed: dict[int, set[str]] = {}
    for runs in cells.values():
        for seed, f in runs.items():
            kind = machine_kind(f.record.device, f.record.hardware)
            kinds[kind] += 1
            per_seed.setdefault(seed, set()).add(kind)
    return dict(kinds.most_common()), sorted(s for s, k in per_seed.items() if len(k) > 1)


def evaluate(confirmation: Confirmation, filed: list[Filed]) -> Outcome:
    """The declared test, on the declared seeds only; no test while any declared cell is missing."""
    cells = declared_cells(confirmation, filed)
    machines, mixed = _machines(cells)
    values = {m: {s: v for s, f in runs.items() if (v := run_value(f, confirmation.metric)) is not None}
              for m, runs in cells.items()}
    missing = [(m, s) for s in confirmation.seeds for m in values if s not in values[m]]
    # a cell made before the declaration breaks its promise: say so, whatever the test gives
    early = sorted(f.record.run_id for runs in cells.values() for f in runs.values()
                   if datetime.fromisoformat(f.record.created) < confirmation.declared_at)
    if missing:
        return Outcome(confirmation, missing, [], None, early, machines, mixed)
    better = stats.direction(confirmation.metric)
    seeds = confirmation.seeds

    raw = {m: np.array([values[m][s] for s in seeds]) for m in values}
    # tested on badness, the metric's own direction: lower, higher, or closer to 0
    bad = {m: np.array([stats.badness(float(v), better) for v in raw[m]]) for m in raw}
    base = confirmation.baseline
    diffs = {m: bad[m] - bad[base] for m in confirmation.methods}  # below 0: better, paired by seed
    p_values = [1.0 if (p := stats.paired_t(list(bad[m]), list(bad[base]))) is None else p
                for m in confirmation.methods]
    levels, rejected = holm_thresholds(p_values, confirmation.alpha), holm_rejects(p_values, confirmation.alpha)
    comparisons = []
    for m, p, level, reject in zip(confirmation.methods, p_values, levels, rejected, strict=True):
        verdict: Literal["better", "worse", "tie"] = ("better" if diffs[m].mean() < 0 else "worse") if reject else "tie"
        comparisons.append(Comparison(m, float(raw[m].mean()), float(raw[base].mean()),
                                      float((raw[m] - raw[base]).mean()), p, level, verdict))
    pooled = stats.pooled_difference_sd([list(d) for d in diffs.values()])
    # at Holm's strictest level (alpha / m), the one the first comparison faces
    detectable = stats.detectable_difference(pooled, len(seeds), alpha=confirmation.alpha / len(comparisons))
    return Outcome(confirmation, [], comparisons, detectable, early, machines, mixed)


def summary(outcome: Outcome) -> str:
    """One line: the confirmation's budget and its verdicts, or how many of its cells are filed."""
    c = outcome.confirmation
    head = f"{c.name} at {c.budget}, seeds {seeds_text(c.seeds)}"
    if outcome.missing:
        return f"{head}: {c.n_cells - len(outcome.missing)} of {c.n_cells} cells filed, no test yet"
    return f"{head}: " + ", ".join(f"{x.method} {x.verdict} (p {x.p:.3g})" for x in outcome.comparisons)


def covers(confirmation: Confirmation, board: Board) -> bool:
    """Whether the confirmation tests cells of this section (a current one: history is never a target)."""
    c = confirmation
    return _of_section(board, c.dataset, c.protocol, c.task, c.settings)


def describe(outcome: Outcome) -> str:
    """The outcome for a reader: what was declared, then the missing cells or the test and its verdicts."""
    c = outcome.confirmation
    m = len(c.methods)
    lines = [f"Confirmation {c.name} (declared {c.declared}): {c.hypothesis}", "",
             f"Declared: {c.dataset} · task {c.task} · settings {c.settings} · {c.protocol} · budget {c.budget} · "
             f"{', '.join(c.methods)} against {c.baseline} · training seeds {seeds_text(c.seeds)} only · "
             f"{c.metric} ({stats.better_text(stats.direction(c.metric))}) · two-sided paired t-test over seeds, "
             f"Holm over {m} comparison{'s' if m > 1 else ''} at family alpha {c.alpha}", ""]
    if outcome.early:
        lines += [f"Warning: {len(outcome.early)} declared cell(s) were made before the declaration, so it does not "
                  f"hold for them: {', '.join(outcome.early)}.", ""]
    if len(outcome.machines) > 1:
        kinds = "; ".join(f"{kind} ({n} cell{'s' if n > 1 else ''})" for kind, n in outcome.machines.items())
        mixed = (f"; the cells of seed{'s' if len(outcome.mixed_seeds) > 1 else ''} "
                 f"{seeds_text(outcome.mixed_seeds)} span kinds, so those pairs cross machines"
                 if outcome.mixed_seeds else "; each seed's cells ran on one")
        lines += [f"Machines: the filed cells ran on {len(outcome.machines)} kinds, which round differently (a "
                  f"cell is a draw of its seed, not reproducible on the other kind): {kinds}{mixed}.", ""]
    if outcome.missing:
        lines += [f"Incomplete: {c.n_cells - len(outcome.missing)} of {c.n_cells} declared cells filed; missing: "
                  + ", ".join(f"{method} seed {seed}" for method, seed in outcome.missing) + ".",
                  "No test is run until every declared cell is filed (a partial look invites stopping early)."]
        return "\n".join(lines) + "\n"
    from tabulate import tabulate

    rows = [[x.method, f"{x.mean:.4f}", f"{x.baseline_mean:.4f}", f"{x.difference:+.4f}", f"{x.p:.3g}",
             f"{x.threshold:.3g}", x.verdict] for x in outcome.comparisons]
    lines.append(tabulate(rows, headers=["method", "mean", f"{c.baseline} mean", "paired difference", "p",
                                         "Holm level", "verdict"], tablefmt="github", disable_numparse=True))
    lines.append("")
    if outcome.detectable is None:
        power = (f"these {len(c.seeds)} seeds cannot detect a difference at alpha {c.alpha / m:.3g} (their "
                 "differences are constant, and the exact sign test needs more seeds).")
    else:
        power = (f"these {len(c.seeds)} seeds detect a true difference of {outcome.detectable:.4f} or more with "
                 f"power {stats.POWER} at alpha {c.alpha / m:.3g}.")
    for x in outcome.comparisons:
        if x.verdict == "tie":
            lines.append(f"{x.method}: a tie with {c.baseline} at this profile (p {x.p:.3g}, Holm level "
                         f"{x.threshold:.3g} or not reached); {power}")
        else:
            lines.append(f"{x.method}: confirmed {x.verdict} than {c.baseline} (paired difference "
                         f"{x.difference:+.4f}, p {x.p:.3g} < Holm level {x.threshold:.3g}).")
    return "\n".join(lines) + "\n"


def _check_declarable(c: Confirmation, section: Board | None) -> None:
    """A declaration takes its name for good, so one that no run could ever fulfil is refused: an empty
    hypothesis, a budget no run can have, a method neither installed nor filed in the section."""
    from harness.data.splits import Budget
    from harness.methods.registry import available_methods

    if not c.hypothesis.strip():
        raise HarnessError(f"confirmation {c.name}: the hypothesis is empty; state what is to be confirmed")
    try:
        Budget.parse(c.budget)
    except HarnessError as err:
        raise HarnessError(f"confirmation {c.name}: {err}") from None
    known = set(available_methods()) | ({e.method for e in section.entries} if section is not None else set())
    unknown = [m for m in (c.baseline, *c.methods) if m not in known]
    if unknown:
        raise HarnessError(f"confirmation {c.name}: no method {', '.join(map(repr, unknown))} is installed or "
                           f"filed in the section (installed: {', '.join(sorted(available_methods()))})")


def declare(store: RecordStore, *, name: str, hypothesis: str, dataset: str, budget: str, methods: list[str],
            seeds: list[int], task: str, settings: str | None = None, protocol: str = "finetune",
            metric: str = "count_rel_error", baseline: str = BASELINE_METHOD, alpha: float = 0.05,
            backbone: str | None = None, now: datetime | None = None) -> tuple[Path, Confirmation]:
    """Write ``ROOT/confirmations/NAME.json``, stamped now, refusing seeds already run in the section.

    The section is the dataset's one section of ``task`` (``settings`` picks among several, and names
    a section that has no record yet). A declared cell that is already filed would have been read
    before the declaration: the declaration is refused, naming it.
    """
    section = _section(store.records(), name, dataset, protocol, task, settings)
    if section is not None:
        dataset, settings = section.key.dataset, section.key.settings
    elif settings is None:
        raise HarnessError(f"{dataset}: 0 sections of task {task} ({protocol}) filed: name the section's settings "
                           "with --settings")
    stamp = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    try:
        confirmation = Confirmation(name=name, declared=stamp, hypothesis=hypothesis, dataset=dataset, task=task,
                                    settings=settings, protocol=protocol, budget=budget,
                                    metric=metric, baseline=baseline, methods=methods, backbone=backbone,
                                    seeds=seeds, alpha=alpha)
    except ValidationError as err:
        raise HarnessError(f"confirmation {name}: {validation_reason(err)}") from None
    stats.direction(metric)
    _check_declarable(confirmation, section)
    taken = sorted(((m, seed) for m in (confirmation.baseline, *confirmation.methods)
                    for seed in _cells(section, m, budget, seeds, backbone, name)), key=lambda cell: (cell[1], cell[0]))
    if taken:
        cells = ", ".join(f"{m} seed {s}" for m, s in taken)
        raise HarnessError(f"confirmation {name}: already filed at budget {budget}: {cells}; a confirmation is "
                           "declared before its cells run, so choose seeds not yet run")
    path = confirmation_path(store.root, name)
    payload = (json.dumps(confirmation.model_dump(mode="json", exclude_none=True), indent=2) + "\n").encode()
    if not create_exclusive(path, payload):
        raise HarnessError(f"{path}: confirmation {name} is already declared; declarations are not replaced")
    return path, confirmation
