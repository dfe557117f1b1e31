"""Scanning a folder: the file listings, each image's record (pixel size, data bar), in worker processes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from harness.data import scalebar
from harness.data.cache import cache_root
from harness.data.databar import resolve_databar
from harness.data.folder.decode import Header, _reason, read_gray, read_header
from harness.data.folder.metadata import _MetaRow, read_metadata
from harness.data.folder.records import (
    IMAGES_DIR,
    MASKS_DIR,
    PIXEL_SIZE_TOLERANCE,
    RGB_MASK,
    FolderScan,
    ImageRecord,
    Problem,
)
from harness.data.io import (
    IMAGE_SUFFIXES,
    METADATA_FILE,
    link_problem,
    stem_key,
    write_text_atomic,
)
from harness.data.parallel import map_in_processes
from harness.data.scales import UNKNOWN_SCALE, length_scale_of
from harness.data.tiffmeta import PLAUSIBLE_NM, UNKNOWN, PixelSize
from harness.errors import HarnessError

# ----------------------------------------------------------------------------------------- scan


def _listing(directory: Path, kind: str) -> tuple[dict[str, Path], list[Problem]]:
    """Files of ``directory`` by stem; problems for duplicates and formats harness cannot read."""
    found: dict[str, Path] = {}
    problems: list[Problem] = []
    if not directory.is_dir():
        return found, problems
    clashes: dict[str, list[str]] = {}
    for path in sorted(directory.iterdir()):
        rel = f"{directory.name}/{path.name}"
        if path.name.startswith("."):
            continue
        if problem := link_problem(path):
            problems.append(Problem(file=rel, reason=f"{problem}; it is ignored", severity="warning"))
            continue
        if path.is_dir():
            problems.append(Problem(file=rel, reason="sub-folders are not read; it is ignored", severity="warning"))
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(
                Problem(
                    file=rel,
                    reason=f"not a format harness reads ({', '.join(IMAGE_SUFFIXES)}); it is ignored",
                    severity="warning",
                )
            )
            continue
        clashes.setdefault(stem_key(path), []).append(path.name)
        found.setdefault(stem_key(path), path)
    for stem, names in clashes.items():
        if len(names) > 1:
            problems.append(
                Problem(
                    file=f"{directory.name}/{names[0]}",
                    reason=f"{kind} stem {stem!r} is used by several files ({', '.join(names)}); keep one",
                )
            )
            found.pop(stem)
    return found, problems


def _pixel_size(header: Header, meta: _MetaRow | None, rel: str) -> tuple[PixelSize, list[Problem]]:
    problems: list[Problem] = []
    from_tag = header.pixel_size
    if meta is not None and meta.pixel_size_nm is not None:
        if from_tag.nm is not None and abs(from_tag.nm - meta.pixel_size_nm) > PIXEL_SIZE_TOLERANCE * from_tag.nm:
            problems.append(
                Problem(
                    file=rel,
                    reason=(
                        f"pixel size {meta.pixel_size_nm:g} nm in {METADATA_FILE} differs from "
                        f"{from_tag.nm:g} nm in the {from_tag.source} tag; {METADATA_FILE} is used"
                    ),
                    severity="warning",
                )
            )
        return PixelSize(nm=meta.pixel_size_nm, source=METADATA_FILE), problems
    if from_tag.note:
        problems.append(Problem(file=rel, reason=from_tag.note, severity="warning"))
    return from_tag, problems


def scan_folder(root: str | Path, crop_bottom: int | None = None, flat: bool = False,
                read_masks: bool = True) -> FolderScan:
    """Read a folder's listing, metadata.csv and every file header; collect every problem.

    ``flat``: the micrographs lie in ``root`` itself, without masks (what ``harness predict``
    reads); metadata.csv, when there, lies beside them. ``read_masks=False`` leaves ``masks/`` unread,
    as predict does, so a bad mask there, or a metadata split that would need one, is no problem of it."""
    root = Path(root)
    problems: list[Problem] = []
    if not root.is_dir():
        raise HarnessError(f"{root}: not a folder")
    images_dir = root if flat else root / IMAGES_DIR
    if not images_dir.is_dir():
        problems.append(Problem(file=f"{IMAGES_DIR}/", reason="folder is missing; put the micrographs there"))
        return FolderScan(root=str(root), records=[], problems=problems)
    images, found = _listing(images_dir, "image")
    problems += found
    masks: dict[str, Path] = {}
    if read_masks and not flat:
        masks, found = _listing(root / MASKS_DIR, "mask")
        problems += found
    if not images:
        problems.append(Problem(file=f"{IMAGES_DIR}/", reason="holds no readable image files"))
    for stem in sorted(set(masks) - set(images)):
        problems.append(
            Problem(
                file=f"{MASKS_DIR}/{masks[stem].name}",
                reason=f"has no image with the stem {stem!r} in {IMAGES_DIR}/; it is ignored",
                severity="warning",
            )
        )
    metadata, found = read_metadata(root, [p.name for p in images.values()])
    problems += found
    jobs: list[_RecordJob] = [(stem, path, path.relative_to(root).as_posix(), masks.get(stem),
                               metadata.get(path.name), crop_bottom, read_masks)
                              for stem, path in sorted(images.items())]
    # headers and remembered readings first, in this process; the images whose printed pixel size
    # must still be read (decode + OCR, ~0.15 s each) are then shared out to worker processes
    found_now = [_record(*job, read_printed=False) for job in jobs]
    unread = [job for job, record in zip(jobs, found_now, strict=True) if record is None]
    read = iter(map_in_processes(_record_job, unread, READINGS_PER_WORKER))
    records = [record if record is not None else next(read) for record in found_now]
    return FolderScan(root=str(root), records=records, problems=problems)


#: Images whose printed pixel size must be read, per worker process, below which one process reads.
READINGS_PER_WORKER = 16

_RecordJob = tuple[str, Path, str, Path | None, _MetaRow | None, int | None, bool]


def _record_job(job: _RecordJob) -> ImageRecord:
    record = _record(*job)
    assert record is not None  # read_printed: always a record
    return record


def _record(
    stem: str, path: Path, rel: str, mask_path: Path | None, meta: _MetaRow | None, crop_bottom: int | None,
    read_masks: bool = True, read_printed: bool = True,
) -> ImageRecord | None:
    """The record of one image (``rel``: its path in the folder) from its header and metadata row.
    Without ``read_printed``, None where the pixel size printed on the image would have to be read
    (not yet remembered). Without ``read_masks`` (predict) a split that needs a mask is no problem."""
    mask_rel = f"{MASKS_DIR}/{mask_path.name}" if mask_path is not None else None
    problems: list[Problem] = list(meta.problems) if meta is not None else []
    try:
        header = read_header(path)
    except HarnessError as err:
        header = None
        problems.append(Problem(file=rel, reason=_reason(err)))
    if mask_path is not None:
        try:
            mask_header = read_header(mask_path)
            if mask_header.layout == "rgb":
                problems.append(Problem(file=mask_rel, reason=RGB_MASK))
            elif header is not None:
                (h, w), (mh, mw) = header.shape, mask_header.shape
                # a mask only covering the rows above the data bar is settled when the bar is known
                if mw != w or mh > h:
                    problems.append(Problem(file=mask_rel, reason=f"mask is {mh}x{mw} pixels but the image is {h}x{w}"))
        except HarnessError as err:
            problems.append(Problem(file=mask_rel, reason=_reason(err)))
    split = meta.split if meta is not None else None
    if read_masks and split not in (None, "unlabeled") and mask_path is None:
        problems.append(
            Problem(file=rel, reason=f"{METADATA_FILE} puts it in split {split!r}, which needs a mask, and it has none")
        )
    if header is not None:
        size, found = _pixel_size(header, meta, rel)
        problems += found
    else:
        given = meta.pixel_size_nm if meta else None
        size = PixelSize(nm=given, source=METADATA_FILE if given else "unknown")
    modality = (meta.modality if meta else None) or ("SEM" if header is not None and header.vendor else "unknown")
    scale = length_scale_of(size.nm)
    if scale == UNKNOWN_SCALE and meta is not None and meta.length_scale:
        scale = meta.length_scale
    if crop_bottom is not None:
        bar, bar_source = crop_bottom, "crop-bottom"
    elif meta is not None and meta.databar_rows is not None:
        bar, bar_source = meta.databar_rows, METADATA_FILE
    else:
        bar, bar_source = None, None
    if header is not None and bar is not None and bar >= header.shape[0]:
        problems.append(
            Problem(file=rel, reason=f"data bar of {bar} rows ({bar_source}) leaves none of its {header.shape[0]} rows")
        )
    elif header is not None and size.nm is None:  # no number anywhere: read the one printed on the image
        printed = _printed_pixel_size(path, rel, bar, read=read_printed)
        if printed is None:
            return None
        size, found = printed
        problems += found
        scale = length_scale_of(size.nm) if size.nm is not None else scale
    return ImageRecord(
        id=stem,
        image=rel,
        mask=mask_rel,
        shape=header.shape if header else (0, 0),
        dtype=header.dtype if header else "",
        layout=header.layout if header else "gray",
        pixel_size_nm=size.nm,
        pixel_size_source=size.source,
        modality=modality,
        length_scale=scale,
        split=split,
        databar_rows=bar,
        databar_source=bar_source,
        magnification=meta.magnification if meta else None,
        problems=tuple(problems),
    )


def _printed_pixel_size(path: Path, rel: str, databar_rows: int | None,
                        read: bool = True) -> tuple[PixelSize, list[Problem]] | None:
    """The pixel size printed on the image (:mod:`~harness.data.scalebar`), cached by file content:
    reading it decodes the image and runs an OCR, so each file is read once per content. Without
    ``read``, None where it is not remembered."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:32]
    memo = cache_root() / "printed-pixel-sizes" / f"{digest}-{databar_rows}-{scalebar.READER_VERSION}.json"
    reading = None
    if memo.is_file():
        try:
            reading = scalebar.Reading(**json.loads(memo.read_text()))
        except (ValueError, TypeError):  # a damaged memo is read again
            reading = None
    if reading is None and not read:
        return None
    if reading is None:
        try:
            image = read_gray(path)
            rows, _ = resolve_databar(image, None, databar_rows)
            reading = scalebar.read_pixel_size(image, rows)
        except HarnessError as err:
            return UNKNOWN, [Problem(file=rel, reason=f"pixel size not read from the image: {_reason(err)}",
                                     severity="warning")]
        write_text_atomic(memo, json.dumps({"nm": reading.nm, "source": reading.source, "note": reading.note}))
    if reading.nm is not None and PLAUSIBLE_NM[0] <= reading.nm <= PLAUSIBLE_NM[1]:
        return PixelSize(nm=reading.nm, source=reading.source or "unknown"), []
    if reading.note == scalebar.NO_BAR or reading.nm is not None:
        return UNKNOWN, []
    return UNKNOWN, [Problem(file=rel, reason=f"no pixel size: {reading.note}; sizes stay in px", severity="warning")]
