"""``harness data check DIR``: read a whole folder once and report everything found.

The report gives counts per pool, pixel sizes and their source, length-scale bins, data bars,
images without masks, near-duplicates between training and evaluation pools, and every problem
with its file and reason. A folder is *usable* when no problem is an error and at least one
image loads; warnings (no pixel size, no masks, an empty pool, ...) are shown but do not block.
Nothing is written inside the folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from pydantic import BaseModel
from skimage import measure
from tabulate import tabulate

from harness.data.base import Dataset, DatasetIdentity
from harness.data.cache import cache_root
from harness.data.folder import FolderDataset, ImageRecord, Problem, index_frame, load_record
from harness.data.io import METADATA_FILE, write_text_atomic
from harness.data.leakage import DEFAULT_MAX_DISTANCE, Fingerprint, fingerprint, leaks_from_fingerprints
from harness.data.parallel import map_in_processes
from harness.data.sample import Sample
from harness.data.splits import DEFAULT_SPLIT_SEED, POOLS, SplitManifest, make_manifest
from harness.errors import HarnessError

MAX_NAMES = 8  # names listed in one summary line before "and N more"
SELECTION_LEAK = " (the model and its post-processing are chosen on validation, so they would partly fit test)"
LEAK_REFUSAL = "; a run refuses this leak unless told otherwise"  # ends a leak's reason; a record keeps the rest


class ImageReport(BaseModel):
    id: str
    image: str
    mask: str | None
    pool: str | None
    shape: tuple[int, int]
    dtype: str
    layout: str
    pixel_size_nm: float | None
    pixel_size_source: str
    length_scale: str
    modality: str
    databar_rows: int | None
    databar_source: str | None
    mask_kind: str | None
    particles: int
    loaded: bool


class PixelSizeSummary(BaseModel):
    source: str
    images: int
    min_nm: float | None
    max_nm: float | None


class LeakReport(BaseModel):
    pretrain_id: str
    pretrain_pool: str
    eval_id: str
    eval_pool: str
    distance: int


Purpose = Literal["run", "predict"]


class CheckReport(BaseModel):
    """Everything ``harness data check`` found; ``usable`` decides the exit code."""

    folder: str
    dataset: str | None
    split_seed: int
    usable: bool
    images: list[ImageReport]
    pools: dict[str, int]
    pool_bins: dict[str, dict[str, int]]  # pool -> length-scale bin -> images
    pixel_sizes: list[PixelSizeSummary]
    databars: dict[str, int]  # source -> images
    without_masks: list[str]
    leaks: list[LeakReport]
    problems: list[Problem]
    # "run": a dataset for `harness run` (masks, pools, leaks); "predict": images for `harness predict`
    purpose: Purpose = "run"

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def to_text(self) -> str:
        """The human-readable report the CLI prints."""
        loaded = [i for i in self.images if i.loaded]
        labeled = sum(1 for i in loaded if i.mask is not None)
        lines = [f"folder     {self.folder}"]
        if self.dataset:
            lines.append(f"dataset    {self.dataset}")
        if self.purpose == "predict":
            lines.append(f"images     {len(self.images)} found, {len(loaded)} loaded (to predict: masks not needed)")
        else:
            lines.append(
                f"images     {len(self.images)} found, {len(loaded)} loaded: {labeled} with masks, "
                f"{len(loaded) - labeled} without (unlabeled pretraining pool)"
            )
        if self.pool_bins:
            table = pd.DataFrame(self.pool_bins).T.fillna(0).astype(int)
            table["total"] = table.sum(axis=1)
            lines += ["", f"pools and length-scale bins (split seed {self.split_seed}):"]
            lines += ["  " + row for row in tabulate(table, headers="keys").splitlines()]
        if self.pixel_sizes:
            lines += ["", "pixel sizes:"]
            for entry in self.pixel_sizes:
                if entry.min_nm is None:
                    span = "none: sizes are in px, length-scale bin 'unknown'"
                elif entry.min_nm == entry.max_nm:
                    span = f"{entry.min_nm:.4g} nm/px"
                else:
                    span = f"{entry.min_nm:.4g}-{entry.max_nm:.4g} nm/px"
                lines.append(f"  {entry.source:<16} {entry.images:>5} image(s)  {span}")
        if self.databars:
            bars = ", ".join(f"{source} {count}" for source, count in sorted(self.databars.items()))
            lines += ["", f"data bars: {bars}"]
        if self.without_masks and self.purpose == "run":
            lines += ["", f"images without masks ({len(self.without_masks)}): {_names(self.without_masks)}"]
        if self.leaks:
            lines += ["", f"near-duplicates between training and evaluation pools ({len(self.leaks)}):"]
            lines += [
                f"  {leak.pretrain_id} ({leak.pretrain_pool}) ~ {leak.eval_id} ({leak.eval_pool}): {leak.distance} bits"
                for leak in self.leaks
            ]
        lines.append("")
        if self.problems:
            lines.append(f"problems: {len(self.errors)} error(s), {len(self.warnings)} warning(s)")
            lines += ["  " + p.line() for p in sorted(self.problems, key=lambda p: (p.severity != "error", p.file))]
        else:
            lines.append("problems: none")
        verdict = "usable" if self.usable else f"NOT usable ({len(self.errors)} error(s))"
        verdict += " for harness predict" if self.purpose == "predict" else ""
        lines += ["", f"result: {verdict}"]
        return "\n".join(lines)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES])
    return shown + (f" and {len(names) - MAX_NAMES} more" if len(names) > MAX_NAMES else "")


class _Loaded(Dataset):
    """The records of a folder that loaded, so that the manifest can be drawn before a fix."""

    def __init__(self, identity: DatasetIdentity, records: list[ImageRecord], fractions: dict[str, float]):
        self.identity = identity
        self.split_fractions = fractions
        self._records = records

    def index(self) -> pd.DataFrame:
        return index_frame(self._records)

    def load(self, sample_id: str) -> Sample:  # pragma: no cover - the check never loads through it
        raise HarnessError("the check's record view holds no pixels")


@dataclass
class _Inspected:
    """What the check keeps of one loaded file: everything but its pixels (they stay in the worker)."""

    problems: list[Problem]
    loaded: bool
    databar_source: str
    mask_kind: str | None
    particles: int
    dtype: str | None = None
    databar_rows: int | None = None
    fingerprint: Fingerprint | None = None
    digest: str | None = None


def _ids_in_pieces(record: ImageRecord, mask: np.ndarray, connectivity: int) -> list[Problem]:
    """A warning where an instance id's pixels form more than one connected region. Checked here, not
    where a run loads the mask (every validation pass), since only the check reports it."""
    regions = measure.label(mask, background=0, connectivity=1 if connectivity == 4 else 2)
    if regions.max() == np.unique(mask[mask > 0]).size:
        return []
    ids = np.unique(np.stack([mask[regions > 0], regions[regions > 0]]), axis=1)[0]
    values, pieces = np.unique(ids, return_counts=True)
    split = [(int(v), int(n)) for v, n in zip(values, pieces, strict=True) if n > 1]
    return [Problem(file=record.mask or record.image, severity="warning", reason=(
        f"{len(split)} label id(s) cover separate regions (id {split[0][0]} in {split[0][1]} pieces): each id is "
        "one particle, so its pieces count and are sized as one; relabel them if they are different particles"))]


def _inspect(job: tuple[ImageRecord, Path, int]) -> _Inspected | None:
    """Decode one record (only clean ones: header-level errors were found by the scan), fingerprint
    and digest its pixels; picklable, so the files can be shared out to worker processes."""
    record, root, connectivity = job
    if not record.ok:
        return None
    result = load_record(record, root, connectivity)
    sample = result.sample  # None whenever loading found an error
    if sample is None:
        return _Inspected(result.problems, False, result.databar_source, result.mask_kind, result.particles)
    problems = result.problems
    if sample.mask is not None and result.mask_kind == "instance":
        problems = [*problems, *_ids_in_pieces(record, sample.mask, connectivity)]
    return _Inspected(problems, True, result.databar_source, result.mask_kind, result.particles,
                      str(sample.image.dtype), sample.databar_rows,
                      fingerprint(sample.image, sample.databar_rows), _pixel_digest(sample))


@dataclass
class _RecordPixels:
    """An image above its data bar, by id: the leak search's loader (picklable for its workers)."""

    records: dict[str, ImageRecord]
    root: Path
    connectivity: int

    def __call__(self, sample_id: str) -> np.ndarray:
        sample = load_record(self.records[sample_id], self.root, self.connectivity).sample
        assert sample is not None  # it loaded a moment ago
        return sample.image[: sample.valid_rows]


#: Files per worker process below which the check decodes in one process.
FILES_PER_WORKER = 64


def _pixel_digest(sample: Sample) -> str:
    digest = hashlib.sha256(f"{sample.image.dtype}{sample.image.shape}".encode())
    digest.update(np.ascontiguousarray(sample.image).tobytes())
    return digest.hexdigest()


def _pixel_size_summary(records: list[ImageRecord]) -> list[PixelSizeSummary]:
    by_source: dict[str, list[float | None]] = {}
    for record in records:
        by_source.setdefault(record.pixel_size_source, []).append(record.pixel_size_nm)
    summary = []
    for source, sizes in sorted(by_source.items()):
        known = [s for s in sizes if s is not None]
        summary.append(
            PixelSizeSummary(
                source=source,
                images=len(sizes),
                min_nm=min(known) if known else None,
                max_nm=max(known) if known else None,
            )
        )
    return summary


def _pool_warnings(manifest: SplitManifest, labeled: int) -> list[Problem]:
    if labeled == 0:
        return [
            Problem(
                file="masks/",
                reason="no image has a mask: a run needs labeled train, val and test images (the folder "
                "holds an unlabeled pretraining pool only)",
            )
        ]
    empty = [pool for pool in ("train", "val", "test") if not manifest.pools[pool]]
    if empty:
        return [
            Problem(
                file="masks/",
                reason=f"{labeled} labeled image(s) leave the {', '.join(empty)} pool(s) empty; "
                "a run needs at least one image in each",
            )
        ]
    return []


def check_folder(
    path: str | Path,
    connectivity: int = 8,
    crop_bottom: int | None = None,
    split_seed: int = DEFAULT_SPLIT_SEED,
    max_leak_distance: int = DEFAULT_MAX_DISTANCE,
    progress: bool = False,
    purpose: Purpose = "run",
) -> CheckReport:
    """Read every file of a folder dataset once and report what was found (see module docstring).

    ``purpose="predict"`` checks the folder as `harness predict` reads it: plain (images directly in
    it) or in the folder format, masks not needed; pools, leaks and duplicates do not apply."""
    for_predict = purpose == "predict"
    dataset = (FolderDataset.of_micrographs if for_predict else FolderDataset)(
        path, connectivity=connectivity, crop_bottom=crop_bottom)
    root = dataset.root
    scan = dataset.scan()
    problems: list[Problem] = list(scan.all_problems())
    reports: dict[str, ImageReport] = {}
    loaded: list[ImageRecord] = []
    fingerprints: dict[str, Fingerprint] = {}
    digests: dict[str, list[str]] = {}
    bar_sources: Counter[str] = Counter()
    jobs = [(record, root, connectivity) for record in scan.records]
    inspected = map_in_processes(_inspect, jobs, FILES_PER_WORKER, desc="check", progress=progress)
    for record, found in zip(scan.records, inspected, strict=True):
        problems += found.problems if found is not None else []
        shown = found if found is not None and found.loaded else None  # what the pixels said
        if shown is not None:
            assert shown.fingerprint is not None and shown.digest is not None
            loaded.append(record)
            fingerprints[record.id] = shown.fingerprint
            digests.setdefault(shown.digest, []).append(record.image)
            bar_sources[shown.databar_source] += 1
        reports[record.id] = ImageReport(
            id=record.id,
            image=record.image,
            mask=record.mask,
            pool=None,
            shape=record.shape,
            dtype=shown.dtype or record.dtype if shown is not None else record.dtype,
            layout=record.layout,
            pixel_size_nm=record.pixel_size_nm,
            pixel_size_source=record.pixel_size_source,
            length_scale=record.length_scale,
            modality=record.modality,
            databar_rows=shown.databar_rows if shown is not None else record.databar_rows,
            databar_source=shown.databar_source if shown is not None else record.databar_source,
            mask_kind=found.mask_kind if found is not None else None,
            particles=found.particles if found is not None else 0,
            loaded=shown is not None,
        )
    for files in digests.values():
        for duplicate in files[1:]:
            problems.append(Problem(file=duplicate, reason=f"same pixels as {files[0]} (duplicate file); keep one",
                                    severity="warning" if for_predict else "error"))

    identity: DatasetIdentity | None = None
    manifest: SplitManifest | None = None
    leaks: list[LeakReport] = []
    if loaded and not for_predict:
        identity = dataset.identity
        try:
            manifest = make_manifest(_Loaded(identity, loaded, dataset.split_fractions), split_seed)
        except HarnessError as err:
            problems.append(Problem(file=METADATA_FILE, reason=str(err)))
    if manifest is not None:
        pool_of = {i: pool for pool, ids in manifest.pools.items() for i in ids}
        for sample_id, report in reports.items():
            reports[sample_id] = report.model_copy(update={"pool": pool_of.get(sample_id)})
        records = {r.id: r for r in loaded}
        pixels = _RecordPixels(records, root, connectivity)
        pairs = leaks_from_fingerprints(fingerprints, manifest, max_leak_distance, load=pixels, workers=None)
        # a validation copy of a test image leaks too: the kept state and the post-processing are chosen on it
        pairs += leaks_from_fingerprints(fingerprints, manifest, max_leak_distance, load=pixels, workers=None,
                                         pretrain_pools=("val",), eval_pools=("test",))
        for leak in pairs:
            entry = LeakReport(
                pretrain_id=leak.pretrain_id,
                pretrain_pool=pool_of[leak.pretrain_id],
                eval_id=leak.eval_id,
                eval_pool=pool_of[leak.eval_id],
                distance=leak.distance,
            )
            leaks.append(entry)
            problems.append(
                Problem(
                    file=records[leak.pretrain_id].image,
                    reason=(
                        f"near-duplicate ({leak.distance} bits apart) of {records[leak.eval_id].image}: it sits in "
                        f"the {entry.pretrain_pool} pool, the other in {entry.eval_pool}"
                        f"{SELECTION_LEAK if entry.pretrain_pool == 'val' else ''}{LEAK_REFUSAL}"
                    ),
                    code="leak",
                )
            )
        problems += _pool_warnings(manifest, sum(1 for r in loaded if r.mask is not None))
        masked = [r for r in reports.values() if r.mask is not None and r.loaded]
        if masked and not sum(r.particles for r in masked):
            problems.append(Problem(file="masks/", reason=(
                f"the {len(masked)} mask(s) hold no particle (all background, or every label lies in the data bar "
                "or the cropped rows): there is nothing to fine-tune on or to score")))

    binary = [i.mask or i.image for i in reports.values() if i.mask_kind == "binary"]
    if binary and not for_predict:  # predict reads no mask
        problems.append(
            Problem(
                file="masks/",
                reason=f"{len(binary)} mask(s) are binary, so particles are their {connectivity}-connected "
                f"components: touching particles merge into one (save instance labels to keep them apart): "
                f"{_names(binary)}",
                severity="warning",
            )
        )
    unknown = [r.image for r in loaded if r.pixel_size_nm is None]
    if unknown:
        problems.append(
            Problem(
                file="images/",
                reason=f"{len(unknown)} image(s) have no pixel size in {METADATA_FILE} or their tags, so sizes are "
                f"in px and the length-scale bin is 'unknown': {_names(unknown)}",
                severity="warning",
            )
        )
    pool_bins: dict[str, dict[str, int]] = {}
    pools: dict[str, int] = {}
    if manifest is not None:
        for pool in POOLS:
            ids = manifest.pools[pool]
            pools[pool] = len(ids)
            pool_bins[pool] = dict(Counter(manifest.length_scales[i] for i in ids))
    errors = [p for p in problems if p.severity == "error"]
    return CheckReport(
        folder=str(root),
        dataset=identity.key if identity is not None else None,
        split_seed=split_seed,
        usable=not errors and bool(loaded),
        images=list(reports.values()),
        pools=pools,
        pool_bins=pool_bins,
        pixel_sizes=_pixel_size_summary(loaded),
        databars=dict(bar_sources),
        without_masks=[r.image for r in loaded if r.mask is None],
        leaks=leaks,
        problems=problems,
        purpose=purpose,
    )


#: Bump when a rule of :func:`check_folder` changes, so remembered verdicts are made again.
#: 2: validation is compared with test too; 3: masks that hold no particle at all are an error.
CHECK_RULES_VERSION = "3"


class RunVerdict(NamedTuple):
    """Whether ``harness run`` may use a folder: why not (None: it may), and the leaks it was told to
    accept (``--allow-leakage``), which its record states."""

    refusal: str | None
    accepted_leaks: list[str]


def verdict_for_run(dataset: FolderDataset, split_seed: int, allow_leakage: bool, progress: bool = False,
                    log: Callable[[str], None] = print) -> RunVerdict:
    """Why ``harness run`` must not use this folder, by the rules of ``harness data check`` (one
    set of rules for both), or None, with the leaks accepted. The verdict is remembered per dataset
    identity (content digests), so it is computed once per folder version, not once per run."""
    memo = cache_root() / "folder-checks" / f"{dataset.identity.key}-split{split_seed}-r{CHECK_RULES_VERSION}.json"
    try:
        errors = [Problem.model_validate(p) for p in json.loads(memo.read_text())]
    except (OSError, ValueError):
        report = check_folder(dataset.root, dataset.connectivity, dataset.crop_bottom, split_seed, progress=progress)
        errors = report.errors
        with contextlib.suppress(OSError):  # the memo only saves time
            write_text_atomic(memo, json.dumps([e.model_dump(mode="json") for e in errors]))
    leaks = [e for e in errors if e.code == "leak"]
    accepted: list[str] = []
    if allow_leakage and leaks:
        log(f"warning: {len(leaks)} training or validation image(s) are near-duplicates of images they are judged on "
            f"(e.g. {leaks[0].file}); running anyway (--allow-leakage)")
        errors = [e for e in errors if e.code != "leak"]
        accepted = [f"{e.file}: {e.reason.removesuffix(LEAK_REFUSAL)}" for e in leaks]
    if not errors:
        return RunVerdict(None, accepted)
    first = errors[0]
    hint = " (or pass --allow-leakage)" if all(e.code == "leak" for e in errors) else ""
    return RunVerdict(f"{dataset.root} is not usable: {len(errors)} error(s), the first {first.file}: {first.reason}; "
                      f"`harness data check {dataset.root}` lists them all{hint}", accepted)
