"""Leaderboard tables from filed records: ranking per budget, label efficiency, per length scale.

Records are first partitioned into *boards*: records share a board only when they have the same
dataset key, split manifest, profile, stored schema version and protocol, so numbers from
different data, splits, training schedules or record schemas never meet in one table. Within a
board an *entry* is one method configuration (method, config hash, backbone); its runs are keyed
by budget and seed triple (split, data, train).

Every table is a :class:`Table` of display strings plus tidy raw rows, rendered to Markdown,
CSV, HTML or JSON. Output depends only on the records (no clock, no paths), so a release
rebuilds it byte for byte.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from tabulate import tabulate

from harness.data.scales import length_scale_of
from harness.errors import HarnessError
from harness.metrics.aggregate import OVERALL
from harness.metrics.classification import ACCURACY, CLASSIFICATION_METRICS, CLASSIFY_TASK
from harness.metrics.scores import HEADLINE_METRIC, METRICS
from harness.numerics import LEGACY_NUMERICS
from harness.results import stats
from harness.results.boards import Board, EntryKey, seeds_text
from harness.results.leaderboard import Filed
from harness.results.provenance import machine_kind
from harness.results.record import PretrainInfo

Format = Literal["md", "csv", "html", "json"]
TestChoice = Literal["auto", "seeds", "images"]
MARK = "†"
UNLEARNT = "‡"  # an entry some of whose pretrainings did no better at their pretext than no learning
ROLE_ORDER = {"method": 0, "control": 1, "reference": 2}


# ---- boards -------------------------------------------------------------------------------------


# ---- values -------------------------------------------------------------------------------------


def run_value(filed: Filed, metric: str, scale: str = OVERALL) -> float | None:
    """The run's mean over test images of ``metric`` in length-scale bin ``scale`` (None: undefined)."""
    summary = filed.record.metrics.summary(scale, metric)
    return None if summary is None else summary.mean


def image_values(filed: Filed, metric: str, scale: str = OVERALL) -> list[float | None] | None:
    """Per-test-image values of ``metric`` (manifest order), restricted to ``scale``; None if not kept."""
    scores = filed.per_image_scores()
    if scores is None:
        return None
    if scale != OVERALL:
        scores = [s for s in scores if length_scale_of(s.get("pixel_size_nm")) == scale]
    return [s.get(metric) for s in scores]


def entry_summary(board: Board, entry: EntryKey, budget: str, metric: str,
                  scale: str = OVERALL) -> stats.Summary:
    runs = board.seeds(entry, budget)
    return stats.summarise([run_value(runs[k], metric, scale) for k in sorted(runs)])


def compare(board: Board, best: EntryKey, other: EntryKey, budget: str, metric: str, scale: str,
            test: TestChoice) -> stats.PairedResult:
    """The paired test of ``best`` against ``other`` at one budget (``auto``: seeds when >= 2 pairs)."""
    better = stats.direction(metric)
    a_runs, b_runs = board.seeds(best, budget), board.seeds(other, budget)
    by_seed = stats.seed_test({k: run_value(f, metric, scale) for k, f in a_runs.items()},
                              {k: run_value(f, metric, scale) for k, f in b_runs.items()}, better)
    if test == "seeds" or (test == "auto" and by_seed.n_pairs >= 2):
        return by_seed
    a_all = {k: image_values(f, metric, scale) for k, f in a_runs.items()}
    b_all = {k: image_values(f, metric, scale) for k, f in b_runs.items()}
    a_img = {k: v for k, v in a_all.items() if v is not None}
    b_img = {k: v for k, v in b_all.items() if v is not None}
    if not a_img or not b_img:
        return by_seed if test == "auto" else stats.PairedResult("images", 0, None)
    return stats.image_test(a_img, b_img, better)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _cell(summary: stats.Summary, show_n: bool = False) -> str:
    if summary.mean is None:
        return "n/a"
    text = _fmt(summary.mean) if summary.std is None else f"{_fmt(summary.mean)} ± {_fmt(summary.std)}"
    return f"{text} (n={summary.n})" if show_n else text


def metric_label(metric: str) -> str:
    return {**METRICS, **CLASSIFICATION_METRICS}[metric].label


def board_metric(board: Board, metric: str) -> str:
    """``metric`` where the board's task has it, else that task's headline: a classification board
    asked for a particle metric shows accuracy, a segmentation board asked for accuracy its count error."""
    if board.key.task == CLASSIFY_TASK:
        return metric if metric in CLASSIFICATION_METRICS else ACCURACY
    return metric if metric in METRICS else HEADLINE_METRIC


def board_metrics(board: Board, metrics: Sequence[str]) -> list[str]:
    """Those of ``metrics`` that the board's task has; none of them: the task's own (classification:
    accuracy and macro-F1; segmentation: the headline)."""
    classify = board.key.task == CLASSIFY_TASK
    kept = [m for m in metrics if m in (CLASSIFICATION_METRICS if classify else METRICS)]
    return kept or (list(CLASSIFICATION_METRICS) if classify else [HEADLINE_METRIC])


# ---- tables -------------------------------------------------------------------------------------


@dataclass
class Table:
    board: str  # the board title: which records may share this table
    title: str
    context: dict[str, Any]
    columns: list[str]
    rows: list[list[str]]
    data: list[dict[str, Any]]
    footer: list[str]
    status: str = ""  # the board's status line: current, or history and why


def _seeds_phrase(board: Board) -> str:
    if board.train_seeds is None:
        return "seeds"
    return f"training seeds {seeds_text(board.train_seeds)} only (--seeds; reference rows train nothing)"


def _value_note(metric: str, board: Board) -> str:
    n_images = sorted({n for f in board.all_filed() if (n := f.record.metrics.n_images(OVERALL)) is not None})
    images = "/".join(str(n) for n in n_images) or "?"
    return (f"Value: mean ± sample std over {_seeds_phrase(board)} of each run's mean of {metric_label(metric)} "
            f"({metric}) over its {images} test images; {stats.better_text(stats.direction(metric))}.")


def _order(board: Board, entries: Sequence[EntryKey], badness: Mapping[EntryKey, float | None]
           ) -> tuple[list[EntryKey], dict[EntryKey, int | None]]:
    """Methods ranked by badness (competition ranks); then controls and reference rows, unranked."""
    ranked = [e for e in entries if board.ranked(e)]
    ranks: dict[EntryKey, int | None] = dict(zip(ranked, stats.rank([badness[e] for e in ranked]), strict=True))
    ranks.update({e: None for e in entries if not board.ranked(e)})
    order = sorted(entries, key=lambda e: (ROLE_ORDER.get(board.roles.get(e, "method"), 3), ranks[e] is None,
                                           ranks[e] or 0, board.labels[e]))
    return order, ranks


def versus_baseline(board: Board, entry: EntryKey, budget: str, metric: str, scale: str = OVERALL,
                    test: TestChoice = "auto") -> stats.PairedResult | None:
    """The paired test of ``entry`` against ``none`` at one budget; None for none itself, without it, and for
    reference rows (one run, no training: paired with `none`'s seed 0 alone, a p would read as a verdict on
    `none`'s luckiest or worst seed)."""
    baseline = board.baseline()
    if baseline is None or entry == baseline or not board.seeds(baseline, budget) \
            or board.roles.get(entry) == "reference":
        return None
    return compare(board, entry, baseline, budget, metric, scale, test)


def detectable(board: Board, budget: str, metric: str, scale: str = OVERALL
               ) -> tuple[int, float | None, float | None] | None:
    """The smallest difference from ``none`` the seeds could detect at this budget and bin: (seeds, pooled
    std of the methods' seed-paired differences, smallest difference; None when every difference is
    constant); None without ``none`` or 2 paired seeds."""
    baseline = board.baseline()
    if baseline is None:
        return None
    base = {k: run_value(f, metric, scale) for k, f in board.seeds(baseline, budget).items()}
    paired: list[list[float]] = []
    for e in board.entries:
        if e == baseline or not board.ranked(e):
            continue
        other = {k: run_value(f, metric, scale) for k, f in board.seeds(e, budget).items()}
        diffs = [x - y for k in other if k in base and (x := other[k]) is not None and (y := base[k]) is not None]
        if len(diffs) >= 2:
            paired.append(diffs)
    if not paired:
        return None
    # the table's seed count: the most pairs any method shares with none; pooled over those methods
    n = max(len(d) for d in paired)
    pooled = stats.pooled_difference_sd([d for d in paired if len(d) == n])
    return n, pooled, stats.detectable_difference(pooled, n)


def detectable_line(board: Board, budget: str, metric: str, scale: str = OVERALL) -> str:
    """What a tie means at this budget: the smallest difference from ``none`` the seeds could detect."""
    if board.baseline() is None:
        return "Detectable difference: n/a (no `none` entry to pair with)."
    found = detectable(board, budget, metric, scale)
    if found is None:
        return "Detectable difference: n/a (fewer than 2 seeds paired with `none`)."
    n, pooled, smallest = found
    if smallest is None:  # every paired difference constant: the sign test decides, and cannot at n < 6
        return (f"Detectable difference: none with {n} seeds (every seed-paired difference from none is "
                f"constant, and the exact sign test cannot reach alpha {stats.ALPHA} below "
                f"{stats.sign_test_min_pairs()} seeds).")
    return (f"Detectable difference: with {n} seeds, a paired t-test at alpha {stats.ALPHA} has power "
            f"{stats.POWER} against `none` for a true difference of {_fmt(smallest)} or more "
            f"(pooled std of the seed-paired differences from none of the methods with {n} seeds: {_fmt(pooled)}); "
            "rows with fewer seeds need a larger one. A true difference below it may go undetected: p >= "
            f"{stats.ALPHA} against none is a tie at these seeds, not evidence that the two are equal.")


def ranking_table(board: Board, budget: str, metric: str, scale: str = OVERALL,
                  test: TestChoice = "auto") -> Table:
    """Entries at one budget: the methods ranked, with the significance mark on the best where
    supported and each method's paired p-value against ``none``; controls and reference rows below."""
    better = stats.direction(metric)
    entries = [e for e in board.entries if board.seeds(e, budget)]
    summaries = {e: entry_summary(board, e, budget, metric, scale) for e in entries}
    means = {e: summaries[e].mean for e in entries}
    bad = {e: None if mean is None else stats.badness(mean, better) for e, mean in means.items()}
    order, ranks = _order(board, entries, bad)
    result, runner_up = None, None
    leaders = [e for e in order if ranks[e] == 1]
    seconds = [e for e in order if (ranks[e] or 0) > 1]
    if len(leaders) == 1 and seconds:
        runner_up = seconds[0]
        result = compare(board, leaders[0], runner_up, budget, metric, scale, test)
    rows, data = [], []
    unlearnt: list[str] = []
    for e in order:
        s = summaries[e]
        marked = result is not None and result.significant and e == leaders[0]
        failed, judged = unlearnt_pretexts(board, e, budget)
        if failed:
            unlearnt.append(f"{board.labels[e]} ({failed} of {judged} pretraining{'s' if judged != 1 else ''})")
        vs = versus_baseline(board, e, budget, metric, scale, test)
        vs_text = "-" if vs is None or vs.p_value is None else f"{vs.p_value:.3g}"
        # a reference row (oracle, classical) runs no network, whatever backbone its settings name
        backbone = None if board.roles.get(e) == "reference" else e.backbone
        rows.append([str(ranks[e]) if ranks[e] is not None else "-",
                     board.display(e) + (f" {MARK}" if marked else "") + (f" {UNLEARNT}" if failed else ""),
                     backbone or "-", _cell(s), str(s.n), vs_text])
        data.append({"rank": ranks[e], "entry": board.labels[e], "role": board.roles.get(e, "method"),
                     "method": e.method, "config_hash": e.config_hash,
                     "backbone": backbone, "mean": s.mean, "std": s.std, "n": s.n, "significant": marked,
                     "p_value": result.p_value if (result is not None and e == leaders[0]) else None,
                     "test": result.test if (result is not None and e == leaders[0]) else None,
                     "p_vs_none": None if vs is None else vs.p_value,
                     "pretext_unlearnt": failed, "pretext_judged": judged})
    n_images = board.budget_images(budget)
    scale_text = "" if scale == OVERALL else f", length scale {scale}"
    footer = [_value_note(metric, board),
              "Ranked by mean; tied means share a rank; controls and reference rows are shown, never ranked. "
              "p vs none: each entry against none, paired over seeds where both share >= 2, else Wilcoxon over "
              "test images (as for the mark)."]
    if result is None or runner_up is None:
        why = "one entry, nothing to compare" if len(order) < 2 else "the best mean is tied or undefined"
        footer.append(f"No {MARK} mark: {why}.")
    else:
        test_text = stats.TEST_DESCRIPTIONS[result.test]
        p = "n/a" if result.p_value is None else f"{result.p_value:.4g}"
        versus = f"best vs runner-up ({board.labels[runner_up]}): {test_text}, {result.n_pairs} pair(s), p = {p}"
        if result.p_value is None:
            footer.append(f"No {MARK} mark: {versus}; fewer than 2 pairs cannot be tested.")
        elif result.significant:
            footer.append(f"{MARK} the lead of the best entry is statistically supported: {versus} < alpha "
                          f"{stats.ALPHA}.")
        else:
            footer.append(f"No {MARK} mark: {versus} >= alpha {stats.ALPHA}, the lead over the runner-up is not "
                          "supported.")
    footer.append(detectable_line(board, budget, metric, scale))
    if unlearnt:
        footer.append(f"{UNLEARNT} pretext not learnt: the trained network did no better at its pretext than its "
                      f"method's rule without learning, on the same batches and draws, in {', '.join(unlearnt)}; "
                      "those seeds measure an unlearnt pretext, not the method (see 'Pretraining — was the pretext "
                      "learnt?').")
    return Table(
        board=board.key.title, status=board.key.status,
        title=f"Budget {budget} ({n_images} labelled image{'s' if n_images != 1 else ''}) — "
              f"{metric_label(metric)}{scale_text}",
        context={**_context(board), "view": "ranking", "budget": budget, "budget_images": n_images,
                 "metric": metric, "scale": scale},
        columns=["rank", "method", "backbone", f"{metric_label(metric)} (mean ± std)", "n seeds", "p vs none"],
        rows=rows, data=data, footer=footer,
    )


def efficiency_table(board: Board, metric: str, scale: str = OVERALL) -> Table:
    """Metric against label budget for every entry, and the normalised area under that curve."""
    better = stats.direction(metric)
    entries = board.entries
    grid = {(e, b): entry_summary(board, e, b, metric, scale) for e in entries for b, _ in board.budgets}
    common = [(b, n) for b, n in board.budgets if all(grid[(e, b)].mean is not None for e in entries)]
    max_n = max((s.n for s in grid.values()), default=0)
    aucs: dict[EntryKey, float | None] = {}
    for e in entries:
        points = [(float(n), mean) for b, n in common if (mean := grid[(e, b)].mean) is not None]
        aucs[e] = stats.log_budget_auc(points)
    bad = {e: None if (auc := aucs[e]) is None else stats.badness(auc, better) for e in entries}
    order, ranks = _order(board, entries, bad)
    rows, data = [], []
    for e in order:
        cells = []
        for b, _ in board.budgets:
            s = grid[(e, b)]
            cells.append(_cell(s, show_n=s.mean is not None and s.n != max_n) if board.seeds(e, b) else "-")
        rows.append([str(ranks[e]) if ranks[e] is not None else "-", board.display(e), *cells, _fmt(aucs[e])])
        for b, n in board.budgets:
            s = grid[(e, b)]
            data.append({"rank": ranks[e], "entry": board.labels[e], "method": e.method, "config_hash": e.config_hash,
                         "backbone": e.backbone, "budget": b, "budget_images": n, "mean": s.mean, "std": s.std,
                         "n": s.n, "auc_log_budget": aucs[e]})
    span = f"{common[0][1]} to {common[-1][1]} labelled images" if len(common) >= 2 else "fewer than 2 budgets"
    footer = [
        _value_note(metric, board) + f" Cells have n = {max_n} seeds unless marked (n=k); - = not run.",
        f"AUC: area under the mean curve against log10(labelled images), trapezoid rule, divided by the log10 "
        f"span, so it reads on the metric's scale (the average over a log-uniform budget); over the budgets "
        f"every entry has ({span}); ranked by it, {stats.better_text(better)}.",
    ]
    scale_text = "" if scale == OVERALL else f", length scale {scale}"
    return Table(
        board=board.key.title, status=board.key.status,
        title=f"Label efficiency — {metric_label(metric)}{scale_text}",
        context={**_context(board), "view": "label-efficiency", "metric": metric, "scale": scale},
        columns=["rank", "method", *(f"{b} ({n} img)" for b, n in board.budgets), "AUC log10 budget"],
        rows=rows, data=data, footer=footer,
    )


def _pretrainings(board: Board, entry: EntryKey, budget: str | None = None) -> dict[str, Any]:
    """The entry's distinct pretrainings (the budgets of a seed share one), by cache key and result; those of
    the seeds at ``budget`` only, if given."""
    found: dict[str, Any] = {}
    for each, _ in board.budgets:
        if budget is not None and each != budget:
            continue
        for filed in board.seeds(entry, each).values():
            info = filed.record.pretrain
            if info.steps and info.late_loss is not None:
                # one pretraining per key and result: the same key re-made on another machine (its float
                # kernels) is another pretraining, with its own losses
                found.setdefault(f"{info.cache_key or filed.record.run_id} {info.final_loss!r}", info)
    return found


def judged_loss(info: PretrainInfo) -> float | None:
    """The pretraining's pretext loss set against its rule: the trained network's on the rule's own
    batches and draws where the record keeps it (paired), else the mean of the last tenth of training."""
    return info.held_out_loss if info.held_out_loss is not None else info.late_loss


def unlearnt_pretexts(board: Board, entry: EntryKey, budget: str) -> tuple[int, int]:
    """(unlearnt, judged): of the entry's pretrainings at ``budget`` that kept the paired comparison
    (the trained network and the rule on the same batches and draws), how many did no better than
    the rule. Their seeds measure an unlearnt pretext, not the method. Only the paired figure
    judges: the last tenth saw other batches, and a rule that reads its batch moves with it (a
    denoise pretraining read 1.09 of its rule so and 0.98 paired)."""
    judged = [r for r in _pretrainings(board, entry, budget).values()
              if r.reference_loss is not None and r.held_out_loss is not None]
    return sum(r.held_out_loss >= r.reference_loss for r in judged), len(judged)


def pretext_table(board: Board) -> Table | None:
    """Was each method's pretext learnt? The pretraining's loss (:func:`judged_loss`) against the
    method's rule without learning (``PretrainModule.reference_loss``). None when no record of the
    board kept these (records from before they were kept)."""
    rows, data = [], []
    for e in board.entries:
        runs = list(_pretrainings(board, e).values())
        if not runs:
            continue
        late = stats.summarise([r.late_loss for r in runs])
        held = [r.held_out_loss for r in runs if r.held_out_loss is not None]
        held_out = stats.summarise(held) if held else None
        references = [r.reference_loss for r in runs if r.reference_loss is not None]
        reference = stats.summarise(references) if len(references) == len(runs) else None
        ratios = [judged_loss(r) / r.reference_loss for r in runs if r.reference_loss]
        ratio = float(np.mean(ratios)) if reference is not None and len(ratios) == len(runs) else None
        steps = sorted({r.steps for r in runs})
        held_text = "-" if held_out is None else _cell(held_out) + ("" if len(held) == len(runs) else
                                                                    f" ({len(held)} of {len(runs)})")
        rows.append([board.display(e), str(len(runs)), "/".join(map(str, steps)), _cell(late), held_text,
                     "-" if reference is None else _cell(reference), "-" if ratio is None else f"{ratio:.3f}"])
        data.append({"entry": board.labels[e], "method": e.method, "config_hash": e.config_hash,
                     "backbone": e.backbone, "pretrainings": len(runs), "steps": steps, "late_loss": late.mean,
                     "late_loss_std": late.std, "held_out_loss": None if held_out is None else held_out.mean,
                     "held_out_pretrainings": len(held),
                     "reference_loss": None if reference is None else reference.mean,
                     "ratio_to_reference": ratio})
    if not rows:
        return None
    return Table(
        board=board.key.title, status=board.key.status,
        title="Pretraining — was the pretext learnt?",
        context={**_context(board), "view": "pretext"},
        columns=["method", "pretrainings", "steps", "pretext loss, last tenth (mean ± std)",
                 "trained network on the rule's batches", "rule without learning", "ratio"],
        rows=rows, data=data,
        footer=["Each pretraining once (the budgets of a seed share it; one re-made on another machine, whose "
                "float kernels give other losses, counts again). Pretext loss: the method's own training "
                "loss, mean over the last tenth of the steps. Rule without learning: the same loss on the batches "
                "that follow, drawn the same way and answered without a network (FCMAE: hidden patches inpainted "
                "from the visible pixels; denoise: a Gaussian blur; SimCLR, DINO: one constant output); - where "
                "the method states none (a constant output is BYOL's optimum) or a run reused an encoder cached "
                "before runs kept the rule (`scripts/pretext_reference.py` computes it). Trained network on the "
                "rule's batches: the finished pretraining's own loss on those batches with the rule's very crops, "
                "masks and noise (kept since 2026-12-06; - before). Ratio: that paired loss over the rule where a "
                "pretraining kept it, else the last tenth's (other batches, so noisier). Below 1: the pretext was "
                "learnt beyond that rule; at 1 or above, the encoder did no better at its own pretext than no "
                "learning, and its rows measure an unlearnt pretext, not the method."],
    )


def scales_table(board: Board, budget: str, metric: str, test: TestChoice = "auto") -> Table:
    """One budget, one column per length-scale bin (and overall), each entry's p against none per bin."""
    better = stats.direction(metric)
    entries = [e for e in board.entries if board.seeds(e, budget)]
    scales = board.scales()
    grid = {(e, s): entry_summary(board, e, budget, metric, s) for e in entries for s in scales}
    versus = {(e, s): versus_baseline(board, e, budget, metric, s, test) for e in entries for s in scales}
    bad = {e: None if (mean := grid[(e, OVERALL)].mean) is None else stats.badness(mean, better) for e in entries}
    order, ranks = _order(board, entries, bad)
    rows, data = [], []

    def cell(e: EntryKey, s: str) -> str:
        vs = versus[(e, s)]
        return _cell(grid[(e, s)]) + ("" if vs is None or vs.p_value is None else f" (p {vs.p_value:.3g})")

    for e in order:
        rows.append([str(ranks[e]) if ranks[e] is not None else "-", board.display(e),
                     *(cell(e, s) for s in scales), str(grid[(e, OVERALL)].n)])
        for s in scales:
            g, vs = grid[(e, s)], versus[(e, s)]
            data.append({"rank": ranks[e], "entry": board.labels[e], "method": e.method,
                         "config_hash": e.config_hash, "backbone": e.backbone, "scale": s, "mean": g.mean,
                         "std": g.std, "n": g.n, "p_vs_none": None if vs is None else vs.p_value})
    counts = []
    for s in scales:
        n = sorted({n for f in board.all_filed() if (n := f.record.metrics.n_images(s)) is not None})
        counts.append(f"{s} {'/'.join(map(str, n))}")
    n_images = board.budget_images(budget)
    return Table(
        board=board.key.title, status=board.key.status,
        title=f"Per length scale — budget {budget} ({n_images} labelled image{'s' if n_images != 1 else ''}) — "
              f"{metric_label(metric)}",
        context={**_context(board), "view": "length-scale", "budget": budget, "budget_images": n_images,
                 "metric": metric},
        columns=["rank", "method", *scales, "n seeds"],
        rows=rows, data=data,
        footer=[f"Value: mean ± sample std over {_seeds_phrase(board)} of each run's mean over the test images of "
                f"that bin (test images per bin: {', '.join(counts)}); {stats.better_text(better)}; ranked by "
                "overall.",
                *_scales_tests(board, budget, metric, scales, sum(1 for key, vs in versus.items()
                                                                  if key[1] != OVERALL and vs is not None
                                                                  and vs.p_value is not None))],
    )


def _scales_tests(board: Board, budget: str, metric: str, scales: Sequence[str], tests: int) -> list[str]:
    """What the per-bin p-values (``tests`` of them outside the overall column) and a tie in one bin mean;
    nothing when the board has no `none`."""
    if board.baseline() is None:
        return []
    sizes, seeds = [], []
    for s in scales:
        found = detectable(board, budget, metric, s)
        if found is None:
            sizes.append(f"{s} n/a")
            continue
        seeds.append(found[0])
        constant = "none (every difference constant: the sign test decides)"
        sizes.append(f"{s} {constant if found[2] is None else _fmt(found[2])}")
    lines = [f"(p x): the entry against none in that bin, paired over seeds where both share >= 2, else Wilcoxon "
            f"over the bin's test images; {tests} such p outside the overall column, not corrected, so some below "
            "0.05 arise by chance: a bin's p points at a difference, a declared confirmation tests it.",
            f"Detectable difference from none per bin (paired t-test, {max(seeds) if seeds else 'n/a'} seeds, "
            f"alpha {stats.ALPHA}, power {stats.POWER}): {', '.join(sizes)}; below it, a bin's p >= "
            f"{stats.ALPHA} is a tie there, not equality."]
    return lines if seeds else lines[:1]


def _context(board: Board) -> dict[str, Any]:
    k = board.key
    context = {"dataset": k.dataset, "manifest": k.manifest, "profile": k.profile, "schema": k.schema,
               "protocol": k.protocol, "settings": k.settings}
    if k.numerics != LEGACY_NUMERICS:
        context["numerics"] = k.numerics
    if board.train_seeds is not None:  # a filtered table says so in CSV and JSON too
        context["train_seeds"] = seeds_text(board.train_seeds)
    return context


def build_tables(boards: Sequence[Board], metric: str, by: Literal["budget", "length-scale"] = "budget",
                 budget: str | None = None, test: TestChoice = "auto") -> list[Table]:
    """The ``show`` views: per board, a ranking per budget and the label-efficiency table, or per-bin tables."""
    stats.direction(metric)  # refuses unknown metrics early
    tables: list[Table] = []
    asked = metric
    for board in boards:
        metric = board_metric(board, asked)
        budgets = [b for b, _ in board.budgets if budget is None or b == budget]
        if by == "length-scale":
            tables.extend(scales_table(board, b, metric, test) for b in budgets)
        else:
            tables.extend(ranking_table(board, b, metric, test=test) for b in budgets)
            if budget is None and len(board.budgets) > 1:
                tables.append(efficiency_table(board, metric))
            pretext = pretext_table(board) if budget is None else None
            if pretext is not None:
                tables.append(pretext)
    return tables


# ---- rendering ----------------------------------------------------------------------------------


def render(tables: Sequence[Table], fmt: Format, heading_level: int = 2) -> str:
    if fmt == "md":
        return render_markdown(tables, heading_level)
    if fmt == "csv":
        return render_csv(tables)
    if fmt == "html":
        return render_html(tables)
    if fmt == "json":
        return render_json(tables)
    raise HarnessError(f"unknown format {fmt!r}: use md, csv, html or json")


def render_markdown(tables: Sequence[Table], heading_level: int = 2, board_headings: bool = True) -> str:
    blocks: list[str] = []
    board = None
    for t in tables:
        if board_headings and t.board != board:
            board = t.board
            blocks.append(f"{'#' * heading_level} {board}")
            if t.status:
                blocks.append(f"Status: {t.status}.")
        blocks.append(f"{'#' * (heading_level + 1)} {t.title}")
        blocks.append(tabulate(t.rows, headers=t.columns, tablefmt="github", disable_numparse=True))
        blocks.append("\n".join(t.footer))  # one paragraph
    return "\n\n".join(blocks) + "\n"


def render_csv(tables: Sequence[Table]) -> str:
    rows = [{**t.context, **row} for t in tables for row in t.data]
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    return pd.DataFrame(rows, columns=columns).to_csv(index=False, lineterminator="\n")


def render_json(tables: Sequence[Table]) -> str:
    payload = [{"board": t.board, "status": t.status, "title": t.title, "context": t.context, "columns": t.columns,
                "rows": t.rows, "data": t.data, "footer": t.footer} for t in tables]
    return json.dumps({"tables": payload}, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_html(tables: Sequence[Table]) -> str:
    out = ['<!DOCTYPE html>', '<html><head><meta charset="utf-8"><title>harness leaderboard</title></head><body>']
    board = None
    for t in tables:
        if t.board != board:
            board = t.board
            out.append(f"<h2>{html.escape(board)}</h2>")
            if t.status:
                out.append(f"<p>Status: {html.escape(t.status)}.</p>")
        out.append(f"<h3>{html.escape(t.title)}</h3>")
        out.append(pd.DataFrame(t.rows, columns=t.columns).to_html(index=False, escape=True, border=0))
        out.extend(f"<p>{html.escape(line)}</p>" for line in t.footer)
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def provenance_lines(board: Board) -> list[str]:
    """Where the board's numbers came from, summarised over its records (for the rendered README)."""
    filed = board.all_filed()

    def distinct(values) -> str:
        return ", ".join(sorted({str(v) for v in values})) or "n/a"

    commits = distinct(f"{(f.record.git.get('commit') or 'unknown')[:10]}"
                       f"{' (dirty)' if f.record.git.get('dirty') else ''}" for f in filed)
    seeds = seeds_text([f.record.seeds.train for f in filed]) or "n/a"
    methods = distinct(" ".join((f.record.method.name, f.record.method.distribution, f.record.method.version))
                       for f in filed)
    devices = distinct(" ".join(str(f.record.device.get(k)) for k in ("type", "name", "precision"))
                       + (f" ({machine_kind(f.record.device, f.record.hardware)})"
                          if f.record.device.get("type", "cpu") == "cpu" else "") for f in filed)
    return [
        f"- status: {board.key.status}",
        f"- records: {len(filed)} (entries {len(board.labels)}, budgets {', '.join(b for b, _ in board.budgets)}, "
        f"training seeds {seeds})",
        f"- harness: {distinct(f.record.versions.get('harness') for f in filed)}; git: {commits}",
        f"- methods: {methods}",
        f"- backbones: {distinct(f.record.backbone for f in filed)}; torch "
        f"{distinct(f.record.versions.get('torch') for f in filed)}",
        f"- devices: {devices}",
        f"- created: {min(f.record.created for f in filed)} to {max(f.record.created for f in filed)}",
    ]
