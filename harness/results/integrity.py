"""Is a record what its per-image scores say? Recomputing every aggregate before filing.

A record's tables (means, bootstrap CIs, pooled scores, per length-scale bin, the headline) are
all functions of its per-image scores. The leaderboard therefore never takes them on trust:
:func:`check_record` recomputes them from ``per_image.json`` with the same code that made them
and refuses a record whose numbers differ, and also checks each image's own scores against its
raw counts, so an edited headline, an edited per-image file or a NaN turned into ``null`` is
caught. After filing, a digest file beside each record (``sha256sum -c`` format) tells whether
either file was edited since.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.data.scales import UNKNOWN_SCALE, length_scale_of
from harness.errors import HarnessError
from harness.metrics import ImageScores, aggregate
from harness.metrics.aggregate import pooled_scores
from harness.metrics.classification import ClassificationReport, classification_report
from harness.metrics.scores import METRIC_NAMES
from harness.results.record import RunRecord

#: Recomputed floats may differ from the stored ones by summation order on another machine;
#: anything an editor would change is far larger than this.
REL_TOLERANCE = 1e-7
DIGEST_SUFFIX = ".sha256"
_SHOWN = 3


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) or math.isnan(b):  # a stored NaN never equals a recomputed value
            return False
        return math.isclose(a, b, rel_tol=REL_TOLERANCE, abs_tol=1e-12)
    return a == b


def differences(stored: Any, recomputed: Any, path: str = "") -> list[str]:
    """Where two JSON values differ (floats within :data:`REL_TOLERANCE`)."""
    if isinstance(stored, dict) and isinstance(recomputed, dict):
        out: list[str] = []
        for key in sorted(set(stored) | set(recomputed), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in stored or key not in recomputed:
                out.append(f"{where} is {'missing' if key not in stored else 'not expected'}")
            else:
                out.extend(differences(stored[key], recomputed[key], where))
        return out
    if isinstance(stored, list) and isinstance(recomputed, list):
        if len(stored) != len(recomputed):
            return [f"{path} has {len(stored)} items, {len(recomputed)} expected"]
        return [d for i, (a, b) in enumerate(zip(stored, recomputed)) for d in differences(a, b, f"{path}[{i}]")]
    return [] if _close(stored, recomputed) else [f"{path} = {stored!r}, recomputed {recomputed!r}"]


def _image_problems(index: int, s: ImageScores) -> list[str]:
    """An image's scores against its own raw counts (the formulas are the pooled ones on one image)."""
    problems = []
    expected = pooled_scores([s])
    for name in METRIC_NAMES:
        if differences(s.metric(name), expected[name]):
            problems.append(f"image {index}: {name} = {s.metric(name)!r}, its counts give {expected[name]!r}")
    for name, value in (("false_positives", s.n_pred - s.matched), ("false_negatives", s.n_true - s.matched),
                        ("count_abs_error", abs(s.n_pred - s.n_true))):
        if getattr(s, name) != value:
            problems.append(f"image {index}: {name} = {getattr(s, name)}, its counts give {value}")
    return problems


def bins_of_test_images(record: RunRecord, scores: Sequence[ImageScores]) -> list[str]:
    """The bin of each test image: stated by the record, or (older records) from each pixel size."""
    if record.test_length_scales is not None:
        return list(record.test_length_scales)
    return [length_scale_of(s.pixel_size_nm) if s.pixel_size_nm is not None else UNKNOWN_SCALE for s in scores]


def check_record(record: RunRecord, per_image: Sequence[dict[str, Any]] | None, source: Path) -> None:
    """Refuse (HarnessError, one line) a record whose aggregates its per-image scores do not give."""
    if per_image is None:
        raise HarnessError(f"{source}: no per_image.json beside the record, so its numbers cannot be checked; "
                           "only runs that kept their per-image scores are filed")
    stored_metrics, stored_headline = record.metrics.model_dump(mode="json"), record.headline.model_dump(mode="json")
    if isinstance(record.metrics, ClassificationReport):
        metrics, headline = classification_report(per_image, record.metrics.classes, seed=record.metrics.seed)
        problems = differences(stored_metrics, metrics.model_dump(mode="json"), "metrics")
        problems += differences(stored_headline, headline.model_dump(mode="json"), "headline")
        if problems:
            raise HarnessError(f"{source}: the record disagrees with its per-image rows: "
                               + "; ".join(problems[:_SHOWN]))
        return
    scores = [ImageScores.model_validate(s) for s in per_image]
    problems = [p for i, s in enumerate(scores) for p in _image_problems(i, s)]
    if not problems:
        scales = bins_of_test_images(record, scores)
        if len(scales) != len(scores):
            problems.append(f"test_length_scales has {len(scales)} entries for {len(scores)} images")
        else:
            report = aggregate(scores, scales, seed=record.metrics.seed)
            problems += differences(stored_metrics, report.model_dump(mode="json"), "metrics")
            problems += differences(stored_headline, report.headline().model_dump(mode="json"), "headline")
    if problems:
        more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
        raise HarnessError(f"{source}: the record disagrees with its per-image scores: "
                           + "; ".join(problems[:_SHOWN]) + more)


# ---- digests of filed files ---------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def digest_path(record_path: Path) -> Path:
    return record_path.with_name(record_path.stem + DIGEST_SUFFIX)


def digest_text(files: Sequence[Path]) -> str:
    """``sha256sum`` lines for ``files`` (names relative to their folder)."""
    return "".join(f"{sha256_of(p)}  {p.name}\n" for p in files)


def digest_problem(record_path: Path, files: Sequence[Path]) -> str | None:
    """Why the filed files no longer match their digest, or None (also None with no digest file)."""
    path = digest_path(record_path)
    if not path.is_file():
        return None
    stated: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        stated[name] = digest
    for file in files:
        if file.name not in stated:
            return f"{file.name} is not in {path.name}"
        if sha256_of(file) != stated[file.name]:
            return f"{file.name} was changed after filing (its sha256 differs from {path.name})"
    missing = sorted(set(stated) - {f.name for f in files})
    if missing:
        return f"{', '.join(missing)} named in {path.name} is missing"
    return None
