"""Leaderboard figures (matplotlib, Agg; every figure as PNG and SVG).

- metric against label budget per entry, with a confidence band;
- per-length-scale bars at one budget;
- for one run: predicted vs true particle-size histograms per length scale, and predicted
  outlines over a test image.

Bands and error bars: a Student-t 95 % interval of the mean over seeds where an entry has at
least two seeds; with one seed, the run's own 95 % bootstrap interval over test images (from its
record). Figures carry no timestamps, so re-rendering unchanged records gives identical files.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.data.io import write_bytes_atomic
from harness.data.scales import SCALE_NAMES, length_scale_of
from harness.metrics.aggregate import OVERALL
from harness.results import stats
from harness.results.boards import Board, EntryKey
from harness.results.tables import entry_summary, metric_label

_RC: dict[Any, Any] = {"svg.hashsalt": "harness-leaderboard", "svg.fonttype": "path", "font.size": 9}


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write ``stem``.png and ``stem``.svg without timestamps or version stamps."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    with matplotlib.rc_context(_RC):
        for path, options in ((png, {"dpi": 120, "metadata": {"Software": None}}),
                              (svg, {"metadata": {"Date": None, "Creator": None}})):
            buffer = io.BytesIO()
            fig.savefig(buffer, format=path.suffix[1:], **options)
            write_bytes_atomic(path, buffer.getvalue())
    return [png, svg]


def interval(board: Board, entry: EntryKey, budget: str, metric: str, scale: str) -> tuple[float, float] | None:
    """95 % interval for one entry and budget: t over seeds, or the single run's bootstrap CI."""
    summary = entry_summary(board, entry, budget, metric, scale)
    band = stats.t_interval(summary)
    if band is not None or summary.n != 1:
        return band
    (own,) = [s for f in board.seeds(entry, budget).values()
              if (s := f.record.metrics.summary(scale, metric)) is not None and s.mean is not None]
    if own.ci_low is None or own.ci_high is None:
        return None
    return float(own.ci_low), float(own.ci_high)


def _colors(n: int) -> list[Any]:
    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def budget_curves(board: Board, metric: str, stem: Path, scale: str = OVERALL) -> list[Path]:
    """Metric against labelled images (log axis), one line and band per entry."""
    fig = _figure(6.0, 3.8)
    ax = fig.add_subplot()
    for color, entry in zip(_colors(len(board.entries)), board.entries, strict=True):
        xs, ys, lows, highs = [], [], [], []
        for budget, n_images in board.budgets:
            s = entry_summary(board, entry, budget, metric, scale)
            if s.mean is None:
                continue
            band = interval(board, entry, budget, metric, scale)
            xs.append(n_images)
            ys.append(s.mean)
            lows.append(band[0] if band else s.mean)
            highs.append(band[1] if band else s.mean)
        if not xs:
            continue
        ax.plot(xs, ys, marker="o", color=color, label=board.display(entry))
        ax.fill_between(xs, lows, highs, color=color, alpha=0.18, linewidth=0)
    ax.set_xscale("log")
    ticks = sorted({n for _, n in board.budgets})
    names = {n: "/".join(b for b, m in board.budgets if m == n) for n in ticks}
    ax.set_xticks(ticks, [str(n) if names[n] == str(n) else f"{n}\n({names[n]})" for n in ticks])
    ax.minorticks_off()
    ax.set_xlabel("labelled training images (budget)")
    ax.set_ylabel(f"{metric_label(metric)} ({stats.better_text(stats.direction(metric))})")
    scale_text = "" if scale == OVERALL else f", {scale}"
    ax.set_title(f"{board.key.short_title}{scale_text}", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return save(fig, stem)


def scale_bars(board: Board, budget: str, metric: str, stem: Path) -> list[Path]:
    """Grouped bars: one group per length-scale bin (and overall), one bar per entry."""
    scales = board.scales()
    entries = [e for e in board.entries if board.seeds(e, budget)]
    fig = _figure(max(5.0, 1.2 + 0.35 * len(entries) * len(scales)), 3.8)
    ax = fig.add_subplot()
    width = 0.8 / max(len(entries), 1)
    x = np.arange(len(scales))
    for i, (color, entry) in enumerate(zip(_colors(len(entries)), entries, strict=True)):
        means: list[float] = []
        errs: list[list[float]] = [[], []]
        for scale in scales:
            s = entry_summary(board, entry, budget, metric, scale)
            mean = s.mean
            band = interval(board, entry, budget, metric, scale) if mean is not None else None
            means.append(np.nan if mean is None else mean)
            errs[0].append(0.0 if band is None or mean is None else max(mean - band[0], 0.0))
            errs[1].append(0.0 if band is None or mean is None else max(band[1] - mean, 0.0))
        ax.bar(x + (i - (len(entries) - 1) / 2) * width, means, width, yerr=errs, capsize=2, color=color,
               label=board.display(entry))
    ax.set_xticks(x, scales)
    ax.set_ylabel(f"{metric_label(metric)} ({stats.better_text(stats.direction(metric))})")
    ax.set_title(f"{board.key.short_title}\nbudget {budget} ({board.budget_images(budget)} img)", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return save(fig, stem)


def size_histogram(per_image: Sequence[dict[str, Any]], stem: Path, title: str) -> list[Path]:
    """Predicted vs true equivalent diameters, pooled over test images, one panel per length scale.

    Bins are log-spaced because particle sizes span decades between magnifications.
    """
    panels: dict[str, dict[str, list[float]]] = {}
    units: set[str] = set()
    for image in per_image:
        scale = length_scale_of(image.get("pixel_size_nm"))
        panel = panels.setdefault(scale, {"true": [], "pred": []})
        panel["true"].extend(image.get("true_diameters", []))
        panel["pred"].extend(image.get("pred_diameters", []))
        units.add(image.get("units", "px"))
    order = [s for s in (*SCALE_NAMES, "unknown") if s in panels]
    fig = _figure(3.2 * max(len(order), 1), 3.2)
    axes = fig.subplots(1, max(len(order), 1), squeeze=False)[0]
    unit = "/".join(sorted(units)) or "px"
    for ax, scale in zip(axes, order, strict=False):
        true, pred = np.asarray(panels[scale]["true"]), np.asarray(panels[scale]["pred"])
        both = np.concatenate([true, pred])
        both = both[both > 0]
        if both.size == 0:
            ax.text(0.5, 0.5, "no sizeable particles", ha="center", va="center", transform=ax.transAxes)
        else:
            low, high = float(both.min()), float(both.max())
            bins = np.geomspace(low * 0.9, high * 1.1, 16) if high > low else np.array([low * 0.9, low * 1.1])
            ax.hist(true, bins=bins, histtype="stepfilled", alpha=0.35, color="tab:blue", label=f"true ({true.size})")
            ax.hist(pred, bins=bins, histtype="step", linewidth=1.6, color="tab:orange",
                    label=f"predicted ({pred.size})")
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.legend(fontsize=7)
        ax.set_title(scale, fontsize=9)
        ax.set_xlabel(f"equivalent diameter ({unit})")
    axes[0].set_ylabel("particles (clear of the border)")
    fig.suptitle(title, fontsize=9)
    return save(fig, stem)


def _outlines(ax: Any, image: np.ndarray, true_labels: np.ndarray | None, pred_labels: np.ndarray,
              title: str) -> None:
    """One panel: the grayscale image, predicted outlines in orange, true ones (when known) in blue."""
    from skimage.segmentation import find_boundaries

    ax.imshow(image, cmap="gray", interpolation="nearest")
    rgba = np.zeros((*image.shape[:2], 4))
    if true_labels is not None:
        rgba[find_boundaries(true_labels, mode="inner")] = (0.1, 0.6, 1.0, 0.9)
    rgba[find_boundaries(pred_labels, mode="inner")] = (1.0, 0.45, 0.0, 1.0)
    ax.imshow(rgba, interpolation="nearest")
    ax.set_axis_off()
    legend = f"orange: predicted ({_count(pred_labels)})"
    if true_labels is not None:
        legend += f"; blue: true ({_count(true_labels)})"
    ax.set_title(f"{title}\n{legend}", fontsize=7)


def overlay(image: np.ndarray, true_labels: np.ndarray | None, pred_labels: np.ndarray, stem: Path,
            title: str) -> list[Path]:
    """Predicted particle outlines (and true ones, when known) over the grayscale image."""
    fig = _figure(5.0, 5.0 * image.shape[0] / max(image.shape[1], 1) + 0.4)
    _outlines(fig.add_subplot(), image, true_labels, pred_labels, title)
    return save(fig, stem)


def overlay_montage(panels: Sequence[tuple[np.ndarray, np.ndarray | None, np.ndarray, str]], path: Path,
                    columns: int = 3) -> Path:
    """Several outline panels (image, true labels or None, predicted labels, title) in one PNG."""
    rows = max(1, -(-len(panels) // columns))
    fig = _figure(3.2 * columns, 3.5 * rows)
    for k, (image, true_labels, pred_labels, title) in enumerate(panels):
        _outlines(fig.add_subplot(rows, columns, k + 1), image, true_labels, pred_labels, title)
    buffer = io.BytesIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return write_bytes_atomic(path, buffer.getvalue())


def _count(labels: np.ndarray) -> int:
    return int(np.count_nonzero(np.unique(labels)))
