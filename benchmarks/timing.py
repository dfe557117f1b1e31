"""Wall-clock timing shared by the benchmarks that compare contenders side by side in one run."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_seconds(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Fastest of ``rounds`` runs of each, interleaved so that a busy spell on the shared machine
    hits every contender alike; the minimum is the run least disturbed by other work."""
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best
