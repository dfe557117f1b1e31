"""``leaderboard/README.md``: the published leaderboard, generated from filed records only.

Everything in the file comes from the records (or a release's records) and from the command
that wrote it, which the file states so that anyone can regenerate it. There are no clocks and
no machine paths in it, so re-rendering unchanged records gives an identical file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data.io import write_text_atomic
from harness.errors import HarnessError
from harness.metrics.classification import CLASSIFY_TASK
from harness.metrics.scores import COMPANION_METRIC, HEADLINE_METRIC
from harness.numerics import LEGACY_NUMERICS
from harness.results import plots, stats
from harness.results.boards import Board, build_boards
from harness.results.confirmation import (
    Outcome,
    covers,
    declared_confirmations,
    describe,
    evaluate,
    hold_pending,
    summary,
)
from harness.results.leaderboard import CONFIRMATIONS_DIR, Filed, RecordStore
from harness.results.tables import (
    MARK,
    TestChoice,
    board_metrics,
    efficiency_table,
    entry_summary,
    pretext_table,
    provenance_lines,
    ranking_table,
    render_markdown,
    scales_table,
)

README = "README.md"
PLOTS_DIR = "plots"
DEFAULT_METRICS: tuple[str, ...] = (HEADLINE_METRIC, COMPANION_METRIC, "f1")


def slug(board: Board) -> str:
    """The figures' file-name stem of ``board``: every part of its key that can tell two boards apart
    (the task is inside the settings hash), so that no section's figures overwrite another's."""
    k = board.key
    numerics = "" if k.numerics == LEGACY_NUMERICS else f"-numerics{k.numerics}"
    stem = f"{k.dataset}-{k.profile}-{k.protocol}-{k.manifest}-{k.settings}-schema{k.schema}{numerics}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem)


def best_run(board: Board, budget: str, metric: str) -> Filed | None:
    """The run of the best entry at ``budget`` (lowest seed), for the one-run figures."""
    better = stats.direction(metric)
    scored = []
    for entry in board.entries:
        s = entry_summary(board, entry, budget, metric)
        if s.mean is not None and board.ranked(entry):  # the best method, never the oracle
            scored.append((stats.badness(s.mean, better), board.labels[entry], entry))
    if not scored:
        return None
    entry = min(scored)[2]
    runs = board.seeds(entry, budget)
    return runs[min(runs)]


def _figure_links(paths: Sequence[Path], root: Path, alt: str) -> str:
    png, svg = (p.relative_to(root).as_posix() for p in paths)
    return f"![{alt}]({png})\n\n[{Path(svg).name}]({svg})"


@dataclass(frozen=True)
class OverlayRequest:
    """Predicted outlines on test image ``image`` of run ``run`` (a run_id, or ``best``). Its model
    is re-trained by ``rebuild`` (:func:`harness.reproduce.rebuild_prediction`, which the CLI
    passes in: re-training belongs to the orchestration layer above results), so it is opt-in."""

    run: str
    image: int
    rebuild: Callable[..., Any]


def render_readme(
    store: RecordStore,
    command: str,
    release: str | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    test: TestChoice = "auto",
    overlay: OverlayRequest | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Write README.md and its figures under the leaderboard root; returns the README path."""
    text = render_page(store, command, store.root, release, metrics, test, overlay, log)
    return write_text_atomic(store.root / README, text)


def render_page(
    store: RecordStore,
    command: str,
    root: Path,
    release: str | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    test: TestChoice = "auto",
    overlay: OverlayRequest | None = None,
    log: Callable[[str], None] = print,
) -> str:
    """The leaderboard page as Markdown, its figures written under ``root``/plots/ and linked
    relative to ``root`` (the leaderboard's README, or the static site)."""
    for metric in metrics:
        stats.direction(metric)
    filed = store.select(release)
    declared = declared_confirmations(store, release)
    tabled, held = hold_pending(filed, declared)
    boards = build_boards(tabled)
    plot_dir = root / PLOTS_DIR
    if plot_dir.is_dir():  # the folder holds generated figures only: stale ones must not linger
        for old in plot_dir.iterdir():
            if old.suffix in (".png", ".svg"):
                old.unlink()
    if release:
        source = (f"the records frozen in release `{release}` (`releases/{release}.json`, every file checked "
                  "against its sha256)")
    else:
        latest = store.latest_release()
        released = sum(latest.datasets.values()) if latest is not None else 0
        since = f"release `{latest.release}`'s {released} and {len(filed) - released} filed since" \
            if latest is not None else "no release yet"
        source = f"the record files under `records/` ({since})"
    lines = [
        "# Leaderboard",
        "",
        "<!-- generated by `harness leaderboard render`: do not edit by hand -->",
        "",
        f"Generated from {source}: {len(filed)} run record(s). Nothing here is typed by hand. "
        "Regenerate it with:",
        "",
        "```bash",
        command,
        "```",
        "",
        "Print the same tables in a terminal with `harness leaderboard show"
        + (f" --release {release}" if release else "") + "`, or as CSV/HTML/JSON with `--format`. "
        "Records from different dataset versions, split manifests, profiles, training settings, task versions, "
        "protocols, numerics versions or record schema versions never share a table: each combination is its "
        f"own section. A {MARK} marks the best entry only where a paired test supports its lead over the "
        "runner-up (each table's footer names the test and its p-value).",
        "",
        "How to read the numbers: error metrics are fractions (0.10 = 10 %; relative count error is |predicted - "
        "true| / true particles per test image, averaged over images), F1 counts a particle found when its "
        "predicted outline overlaps the true one at IoU >= 0.5, and the length-scale bins are magnifications "
        "(high-mag < 2.5 nm/px, mid-mag 2.5-10, low-mag >= 10). The embedded datasets are synthetic "
        "micrographs with exact ground truth, and the profile (`quick`: a few hundred pretraining steps on "
        "CPU) fixes the budgets of training: a verdict here holds for that data and profile, not for every "
        "lab's micrographs (the repository README's 'A lab's road' shows how to measure on yours).",
        "",
        "Sections, current first (history: records of a retired task or an older numerics version, kept as filed):",
        "",
        *(f"- {board.key.title}: {len(board.all_filed())} record(s); {board.key.status}" for board in boards),
        "",
    ]
    lines += [*held, *([""] if held else [])]
    outcomes = [evaluate(c, filed) for c in declared]
    lines += _confirmations(outcomes)
    asked = metrics
    for board in boards:
        metrics = board_metrics(board, asked)  # a classification board shows accuracy and macro-F1
        headline = metrics[0]
        name = slug(board)
        lines += [f"## {board.key.title}", "", *provenance_lines(board), ""]
        tested = [summary(o) for o in outcomes if covers(o.confirmation, board)]
        if tested:  # the tables pool every filed seed; a verdict rests on its confirmation's own seeds
            lines += ["Confirmations in this section (each tested on its own seeds only; the tables below pool "
                      "every filed seed, so their p-values are not verdicts): " + "; ".join(tested) + ".", ""]
        largest = board.budgets[-1][0]
        lines += [f"### Ranking per label budget: {headline}", ""]
        lines.append(_md([ranking_table(board, b, headline, test=test) for b, _ in board.budgets]))
        lines += ["### Label efficiency", ""]
        for metric in metrics:
            if len(board.budgets) > 1:
                lines.append(_md([efficiency_table(board, metric)]))
            paths = plots.budget_curves(board, metric, plot_dir / f"{name}-{metric}-vs-budget")
            lines += [_figure_links(paths, root, f"{metric} against label budget"), "",
                      "Bands: Student-t 95 % interval over seeds (two or more seeds), else the single run's "
                      "95 % bootstrap interval over test images.", ""]
        pretext = pretext_table(board)
        if pretext is not None:
            lines += ["### Pretraining", "", _md([pretext])]
        lines += [f"### Per length scale at budget {largest}", ""]
        for metric in metrics:
            lines.append(_md([scales_table(board, largest, metric)]))
        paths = plots.scale_bars(board, largest, headline, plot_dir / f"{name}-{headline}-per-scale")
        lines += [_figure_links(paths, root, f"{headline} per length scale"), ""]
        if board.key.task != CLASSIFY_TASK:  # the one-run view shows particle sizes and outlines
            lines += _one_run(board, store, root, largest, headline, plot_dir, name, overlay, log)
    return "\n".join(lines).rstrip("\n") + "\n"


def _confirmations(outcomes: list[Outcome]) -> list[str]:
    """Each declared confirmation's state (of the release's, if one is rendered): its missing cells, or its
    test and verdicts."""
    if not outcomes:
        return []
    lines = ["## Confirmations", "",
             f"Each was declared in `{CONFIRMATIONS_DIR}/NAME.json` before any of its cells ran, and is tested "
             "once, on its own training seeds only, when all its cells are filed (`harness leaderboard confirm "
             "NAME`).", ""]
    for outcome in outcomes:
        lines += [f"### {outcome.confirmation.name}", "", describe(outcome), ""]
    return lines


def _md(tables) -> str:
    return render_markdown(tables, heading_level=3, board_headings=False)


def _one_run(board: Board, store: RecordStore, root: Path, budget: str, metric: str, plot_dir: Path, name: str,
             overlay: OverlayRequest | None, log: Callable[[str], None]) -> list[str]:
    run = best_run(board, budget, metric)
    if overlay is not None and overlay.run != "best":
        matches = [f for f in board.all_filed() if f.record.run_id == overlay.run]
        run = matches[0] if matches else run
    if run is None:
        return []
    r = run.record
    lines = [f"### One run: {r.method.name}, budget {r.budget}, seed {r.seeds.train} (run `{r.run_id}`)", "",
             f"The best entry at the largest budget by {metric}; "
             f"record `{run.path.relative_to(store.root).as_posix()}`.",
             ""]
    per_image = run.per_image_scores()
    if per_image is None:
        lines += ["(No per-image scores were filed with this run: no size histogram.)", ""]
    else:
        paths = plots.size_histogram(per_image, plot_dir / f"{name}-{r.run_id}-sizes",
                                     f"{r.method.name} · budget {r.budget} · seed {r.seeds.train}: particle sizes "
                                     "on the test split")
        lines += [_figure_links(paths, root, "predicted vs true particle sizes"), ""]
    if overlay is not None and overlay.run in ("best", r.run_id):
        image = overlay.image
        log(f"rebuilding run {r.run_id} for the outline overlay (re-trains it)")
        rebuilt = overlay.rebuild(r, image, per_image, log=log)
        if rebuilt.matches_record is False:
            raise HarnessError(f"the rebuilt model of run {r.run_id} does not reproduce its recorded scores on test "
                               f"image {image}; not publishing an overlay from a different model")
        paths = plots.overlay(rebuilt.image, rebuilt.true_labels, rebuilt.pred_labels,
                              plot_dir / f"{name}-{r.run_id}-overlay-{image}",
                              f"{r.method.name} · budget {r.budget} · seed {r.seeds.train} · test image {image} "
                              f"({rebuilt.sample_id})")
        f1 = rebuilt.scores.get("f1")
        lines += [_figure_links(paths, root, "predicted outlines on a test image"), "",
                  f"Test image {image} (`{rebuilt.sample_id}`): {rebuilt.scores['n_pred']} predicted / "
                  f"{rebuilt.scores['n_true']} true particles, F1 {f1:.3f}; the model was rebuilt from the record "
                  "and its scores on this image equal the recorded ones.", ""]
    return lines

