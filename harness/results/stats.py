"""Statistics of the leaderboard: metric direction, seed summaries, paired tests, label efficiency.

Every decision here is stated in the table footers, because a reader must know what a mark means:

- a value per run is the record's mean over test images (the ``per_image`` summary), the same
  number as the run's headline;
- across runs of one entry: mean and sample standard deviation (ddof 1) over seeds;
- the best entry is marked only when a **two-sided paired test at alpha 0.05** separates it from
  the runner-up: a paired t-test over training seeds matched by seed (an exact sign test where
  all the differences are equal and t is unbounded), or a Wilcoxon signed-rank
  test over test images matched by image (same manifest, so the same images in the same order);
  with fewer than 2 pairs nothing is marked;
- label efficiency: the area under the mean metric curve against log10(number of labelled
  images), trapezoid rule, divided by the log10 span so that it reads on the metric's own scale
  (the average of the metric over a log-uniform budget).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats as sps

from harness.errors import HarnessError
from harness.metrics.classification import CLASSIFICATION_METRICS
from harness.metrics.scores import METRICS

ALPHA = 0.05
Direction = Literal["lower", "higher", "zero"]
TestKind = Literal["seeds", "images"]

TEST_DESCRIPTIONS: dict[str, str] = {
    "seeds": "two-sided paired t-test over training seeds matched by seed (exact sign test where all the "
             "differences are equal)",
    "images": "two-sided Wilcoxon signed-rank test over test images matched by image (values averaged over "
              "the seeds both entries share; image-level variation only, not seed variation)",
}


def direction(metric: str) -> Direction:
    """Which way is better for ``metric``, from the metric definitions in :mod:`harness.metrics`."""
    known = {**METRICS, **CLASSIFICATION_METRICS}
    if metric not in known:
        raise HarnessError(f"unknown metric {metric!r}; known: {', '.join(known)}")
    return known[metric].better


def badness(value: float, better: Direction) -> float:
    """A number where smaller is always better, so every metric ranks the same way."""
    if better == "lower":
        return value
    if better == "higher":
        return -value
    return abs(value)


def better_text(better: Direction) -> str:
    return {"lower": "lower is better", "higher": "higher is better", "zero": "closest to 0 is better"}[better]


@dataclass(frozen=True)
class Summary:
    mean: float | None
    std: float | None  # sample std, None with fewer than two values
    n: int


def summarise(values: Sequence[float | None]) -> Summary:
    defined = np.array([v for v in values if v is not None], dtype=float)
    if defined.size == 0:
        return Summary(None, None, 0)
    std = float(np.std(defined, ddof=1)) if defined.size > 1 else None
    return Summary(float(np.mean(defined)), std, int(defined.size))


def t_interval(summary: Summary, level: float = 0.95) -> tuple[float, float] | None:
    """Student-t confidence interval of the mean over seeds; None with fewer than two seeds."""
    if summary.mean is None or summary.std is None or summary.n < 2:
        return None
    half = float(sps.t.ppf(0.5 + level / 2, summary.n - 1)) * summary.std / math.sqrt(summary.n)
    return summary.mean - half, summary.mean + half


@dataclass(frozen=True)
class PairedResult:
    """Best vs runner-up: the test used, the number of pairs, the p-value (None: not testable)."""

    test: TestKind
    n_pairs: int
    p_value: float | None

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA


def constant_up_to_rounding(differences: Sequence[float] | np.ndarray) -> bool:
    """True where every difference is the same up to float rounding (0.475 - 0.45 and 0.5 - 0.475
    differ in the last bits): where a paired t-test has no spread to work with."""
    diff = np.asarray(differences, dtype=float)
    return float(np.ptp(diff)) <= 1e-12 * float(np.max(np.abs(diff)))


def sign_test_min_pairs(alpha: float = ALPHA) -> int:
    """The fewest pairs, all of one sign, with which the exact two-sided sign test (p = 2 ** (1 - n))
    reaches ``alpha``: 6 at alpha 0.05."""
    return math.floor(1 - math.log2(alpha)) + 1


def paired_t(best: Sequence[float], other: Sequence[float]) -> float | None:
    """Two-sided paired t-test p-value; None with fewer than 2 pairs.

    Zero spread of the differences is handled explicitly (scipy would return NaN): all differences
    0 means no evidence (p = 1). A constant non-zero difference makes t unbounded, but on a
    discrete metric (accuracy over 40 images moves in steps of 0.025) equal steps are common and
    say little; the exact two-sided sign test answers instead, 2 ** (1 - n) for n pairs of one
    sign: 0.25 with 3 seeds, significant only from 6 pairs on.
    """
    a, b = np.asarray(best, dtype=float), np.asarray(other, dtype=float)
    if a.size < 2:
        return None
    diff = a - b
    scale = float(np.max(np.abs(diff)))
    if scale == 0.0:
        return 1.0
    if constant_up_to_rounding(diff):  # t is unbounded: the sign test answers
        return float(sps.binomtest(int(np.sum(diff > 0)), int(diff.size), 0.5).pvalue)
    return float(sps.ttest_rel(a, b).pvalue)


def wilcoxon_p(best: Sequence[float], other: Sequence[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value; None with fewer than 2 pairs; 1 when all pairs tie."""
    a, b = np.asarray(best, dtype=float), np.asarray(other, dtype=float)
    if a.size < 2:
        return None
    diff = a - b
    if np.all(diff == 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample and tie warnings: the p-value stays exact or normal
        return float(sps.wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)


def seed_test(best: Mapping[object, float | None], other: Mapping[object, float | None],
              better: Direction) -> PairedResult:
    """Paired t-test over the seeds both entries have a defined value for."""
    pairs = [(x, y) for k in sorted((k for k in best if k in other), key=repr)
             if (x := best[k]) is not None and (y := other[k]) is not None]
    a = [badness(x, better) for x, _ in pairs]
    b = [badness(y, better) for _, y in pairs]
    return PairedResult("seeds", len(pairs), paired_t(a, b))


def image_test(best: Mapping[Any, Sequence[float | None]], other: Mapping[Any, Sequence[float | None]],
               better: Direction) -> PairedResult:
    """Wilcoxon over test images: per image, the mean over the seeds both entries share.

    ``best``/``other`` map a seed key to the per-image values of that run, in manifest order.
    """
    seeds = sorted((k for k in best if k in other), key=repr)
    if not seeds:
        return PairedResult("images", 0, None)
    lengths = {len(best[k]) for k in seeds} | {len(other[k]) for k in seeds}
    if len(lengths) != 1:
        raise HarnessError("per-image scores of compared runs cover different numbers of test images")
    a_vals, b_vals = [], []
    for i in range(lengths.pop()):
        a_i = [v for k in seeds if (v := best[k][i]) is not None]
        b_i = [v for k in seeds if (v := other[k][i]) is not None]
        if len(a_i) + len(b_i) < 2 * len(seeds):
            continue  # undefined for this image in some run: no pair
        a_vals.append(float(np.mean([badness(v, better) for v in a_i])))
        b_vals.append(float(np.mean([badness(v, better) for v in b_i])))
    return PairedResult("images", len(a_vals), wilcoxon_p(a_vals, b_vals))


def rank(badness_values: Sequence[float | None]) -> list[int | None]:
    """Competition ranks (1, 2, 2, 4) by badness; None for entries without a value."""
    defined = sorted(v for v in badness_values if v is not None)
    return [None if v is None else 1 + sum(1 for d in defined if d < v) for v in badness_values]


def log_budget_auc(points: Sequence[tuple[float, float]]) -> float | None:
    """Normalised area under metric vs log10(labelled images) (trapezoid); None below 2 budgets.

    ``points`` are (labelled images, metric value). Equal image counts are averaged first.
    """
    by_x: dict[float, list[float]] = {}
    for n_images, value in points:
        if n_images <= 0:
            raise HarnessError(f"a label budget of {n_images} images has no logarithm")
        by_x.setdefault(math.log10(n_images), []).append(value)
    if len(by_x) < 2:
        return None
    xs = np.array(sorted(by_x))
    ys = np.array([float(np.mean(by_x[x])) for x in xs])
    area = float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0))
    return area / float(xs[-1] - xs[0])


POWER = 0.8


def pooled_difference_sd(differences: Sequence[Sequence[float]]) -> float:
    """Several comparisons' seed-paired differences pooled into one standard deviation: the root mean
    square of each one's sample sd, over the comparisons whose differences vary. Differences constant
    up to rounding (a discrete metric's equal steps) are left out, since :func:`paired_t` answers them
    with the sign test, not the t-test this sd sizes; counting them as 0 would shrink the pool and
    overstate what the table can resolve. 0 when every comparison is constant (then
    :func:`detectable_difference` sizes the sign test)."""
    sds = [float(np.std(d, ddof=1)) for d in differences if not constant_up_to_rounding(d)]
    return float(np.sqrt(np.mean(np.square(sds)))) if sds else 0.0


def detectable_difference(sd_of_differences: float | None, n_pairs: int, alpha: float = ALPHA,
                          power: float = POWER) -> float | None:
    """The smallest true mean difference that a two-sided paired t-test at ``alpha`` detects with
    probability ``power``, given ``n_pairs`` pairs whose differences have standard deviation
    ``sd_of_differences`` (exact, from the noncentral t distribution). None below 2 pairs or with
    an undefined spread. When the differences do not vary at all, :func:`paired_t` answers with the
    exact sign test, which detects any constant difference from 6 pairs on (2 ** (1 - n) < alpha)
    and none below: 0 there, None here.

    It gives "no significant difference" a size: a tie in a table says the entries differ by less
    than this, or that the seeds could not tell.
    """
    if sd_of_differences is None or n_pairs < 2 or not math.isfinite(sd_of_differences):
        return None
    if sd_of_differences == 0:
        return 0.0 if n_pairs >= sign_test_min_pairs(alpha) else None
    df = n_pairs - 1
    critical = float(sps.t.ppf(1 - alpha / 2, df))

    def shortfall(effect: float) -> float:  # effect in units of the sd of the differences
        noncentrality = effect * math.sqrt(n_pairs)
        # the far tail (a significant result of the wrong sign) is tiny; scipy can return NaN for it
        wrong_sign = float(np.nan_to_num(sps.nct.cdf(-critical, df, noncentrality)))
        reached = float(sps.nct.sf(critical, df, noncentrality)) + wrong_sign
        return reached - power

    from scipy.optimize import brentq

    high = 1.0
    while shortfall(high) < 0:  # widen the bracket; the power rises monotonically with the effect
        high *= 2
    return float(brentq(shortfall, 1e-9, high) * sd_of_differences)
