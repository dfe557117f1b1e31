"""``harness predict``: apply a run's fine-tuned network to a folder of micrographs.

The folder is either in the folder format (``images/``, optional ``metadata.csv``; masks are
ignored) or a plain folder of images (with an optional ``metadata.csv`` beside them). Every image
is read as ``harness data check`` reads it (formats, data bars, pixel size from metadata, tags
or the printed scale bar), scaled as the model's card says, predicted at the run's working
resolution with its tuned post-processing, and measured as the metrics measure particles.

Written to OUT: ``masks/<id>.png`` (16-bit instance masks), ``overlays/<id>.png`` (predicted
outlines), ``particles.csv`` (one row per particle: area and equivalent diameter in px and, where the
pixel size is known, in nm, border flag), ``images.csv`` (one row per image, also those where nothing
was found: pixel size and its source, particle count, count clear of the border, size statistics of
those, particles found on print and not counted), ``histograms/<id>.png`` per image and
``histogram.png`` pooled. Print and the particles dropped on it are drawn in cyan on the overlays.
Sizes in the histograms and in images.csv are those of particles clear of the image border, as the
metrics size them (a particle cut by the border would pass for a smaller one). OUT appears whole or
not at all: everything is written into a hidden folder beside it and renamed at the end.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from harness.data.folder import FOLDER_VERSION, PREDICTS_AS_CURRENT, FolderDataset, folder_version_of
from harness.data.intensity import to_unit_float
from harness.data.io import csv_text, folder_written_whole, lies_inside, write_bytes_atomic, write_text_atomic
from harness.data.printed import drop_printed, printed_mask
from harness.data.sample import Sample
from harness.errors import HarnessError
from harness.evaluation.predict import predict_maps
from harness.metrics import measure_particles
from harness.metrics.measure import Particles, diameters_from_areas
from harness.numerics import LEGACY_NUMERICS, NUMERICS_VERSION
from harness.results.artifacts import encode_labels, load_model
from harness.task import get_task
from harness.task.scale import whole_image_labels
from harness.training.runtime import resolve_runtime

PARTICLES_FILE = "particles.csv"
IMAGES_FILE = "images.csv"
MAX_WORKING_SCALE = 4.0  # upsampling past 4x only interpolates
COLUMNS = ("image", "particle", "area_px", "area_nm2", "diameter_px", "diameter_nm", "pixel_size_nm",
           "pixel_size_source", "touches_border")
IMAGE_COLUMNS = ("image", "pixel_size_nm", "pixel_size_source", "databar_rows", "particles", "clear_of_border",
                 "size_unit", "diameter_mean", "diameter_median", "diameter_sd", "diameter_median_px",
                 "dropped_on_print")
FOUND = (255, 115, 0)  # outlines of the particles counted (orange)
ON_PRINT = (0, 190, 255)  # what was read as print, and the particles found there and not counted (cyan)
SIZE_RATIO = 2.0  # particles this many times wider (or narrower) than the model learnt are named in a note


@dataclass(frozen=True)
class PredictSummary:
    images: int
    particles: int
    with_pixel_size: int
    out: Path
    working_scale: float
    second_look_px: float | None = None  # each image's second look aims here (harness.task.scale)
    notes: list[str] = field(default_factory=list)  # where this harness reads the model otherwise than its run


def card_drift(card: dict[str, object]) -> list[str]:
    """Why predictions with this harness may differ from what the model's own run measured: the
    card was written under another numerics version, or on a folder dataset of another version
    (how folders are read, printed marks, each image's second look: :mod:`harness.numerics`)."""
    notes = []
    numerics = str(card.get("numerics", LEGACY_NUMERICS))
    if numerics != NUMERICS_VERSION:
        notes.append(f"the model was made under numerics {numerics}; this harness computes numerics "
                     f"{NUMERICS_VERSION}, so its masks may differ from those its run's record scored")
    folder = folder_version_of(str(card.get("dataset", "")))
    if folder is not None and folder not in PREDICTS_AS_CURRENT:
        notes.append(f"the model was made on a {folder} folder; this harness reads folders as "
                     f"{FOLDER_VERSION} (printed marks, each image's second look), so its masks may differ "
                     "from those its run's record scored")
    return notes


def _histogram(diameters: np.ndarray, unit: str, title: str, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if diameters.size:
        ax.hist(diameters, bins=min(30, max(5, diameters.size // 3)), color="tab:orange", edgecolor="white")
    ax.set_xlabel(f"equivalent diameter ({unit})")
    ax.set_ylabel("particles")
    ax.set_title(title, fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    write_bytes_atomic(path, buffer.getvalue())


def _sized_title(name: str, sized: int, on_border: int) -> str:
    border = f" (+{on_border} on the border, not sized)" if on_border else ""
    return f"{name}: {sized} particles clear of the border{border}"


def _image_row(sample_id: str, sample: Sample, particles: Particles, sized: np.ndarray,
               median_px: float | None, dropped: int | None) -> dict[str, object]:
    """``sized``: the diameters of the particles clear of the border (Particles.sized_diameters);
    ``dropped``: particles found at least half on print and not counted (None: print not looked for)."""
    stats = (float(sized.mean()), float(np.median(sized)), float(sized.std(ddof=1)) if sized.size > 1 else "") \
        if sized.size else ("", "", "")
    return {"image": sample_id, "pixel_size_nm": "" if sample.pixel_size_nm is None else sample.pixel_size_nm,
            "pixel_size_source": sample.pixel_size_source, "databar_rows": sample.databar_rows,
            "particles": particles.count, "clear_of_border": int(sized.size), "size_unit": particles.units,
            "diameter_mean": stats[0], "diameter_median": stats[1], "diameter_sd": stats[2],
            "diameter_median_px": "" if median_px is None else median_px,
            "dropped_on_print": "" if dropped is None else dropped}


def _median_px(particles: Particles) -> float | None:
    """The median equivalent diameter, in the image's own px, of the particles clear of the border."""
    sized = particles.sized_diameters_px
    return float(np.median(sized)) if sized.size else None


def size_note(medians_px: dict[str, float | None], trained_px: float | None, card_scale: float,
              scale: float, looks: bool) -> str | None:
    """A note when many images' particles, as the network sees them, are far from the size it learnt.

    ``medians_px``: each image's median found particle diameter in its own px; ``trained_px``: the
    run's labelled median (the card's ``budget_median_diameter_px``), seen at ``card_scale``; the images
    were read at ``scale``. With each image's second look (``looks``), larger particles are handled
    already. A particle too wide for the network comes back in pieces, which look narrower, so "wider"
    is understated and "narrower" may be shards rather than small particles."""
    if trained_px is None:
        return None
    learnt = trained_px * card_scale
    ratios = {i: m * scale / learnt for i, m in medians_px.items() if m is not None}
    wide = sorted(i for i, r in ratios.items() if r > SIZE_RATIO and not looks)
    narrow = sorted(i for i, r in ratios.items() if r < 1 / SIZE_RATIO)
    parts = []
    if wide:
        k = float(np.median([ratios[i] for i in wide]))
        parts.append(f"{_some(wide)} show particles over {SIZE_RATIO:g}x wider than the {learnt:.0f} px the model "
                     f"learnt (median {k:.1f}x); too wide a particle comes back in pieces: look at overlays/, and "
                     f"try --working-scale {scale / k:.2g}")
    if narrow:
        parts.append(f"{_some(narrow)} show particles under 1/{SIZE_RATIO:g} of the {learnt:.0f} px the model "
                     "learnt: smaller particles (more px per particle would help) or pieces of larger ones; look "
                     "at overlays/")
    return "; ".join(parts) or None


def _some(names: list[str]) -> str:
    return f"{len(names)} image(s) ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"


def _outline_png(image: np.ndarray, labels: np.ndarray, dropped: np.ndarray | None = None,
                 marks: np.ndarray | None = None) -> bytes:
    """The grey image with the counted particles' outlines in orange and, in cyan, the edges of what was
    read as print (``marks``) and the outlines of the particles found there and not counted
    (``dropped``), as RGB PNG bytes (full resolution)."""
    import imageio.v3 as iio
    from skimage.segmentation import find_boundaries

    grey = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if marks is not None and marks.any():
        rgb[find_boundaries(marks, mode="inner")] = ON_PRINT
    if dropped is not None and dropped.any():
        rgb[find_boundaries(dropped, mode="inner")] = ON_PRINT
    rgb[find_boundaries(labels, mode="inner")] = FOUND
    buffer = io.BytesIO()
    iio.imwrite(buffer, rgb, extension=".png")
    return buffer.getvalue()


def predict_folder(run_dir: Path, images: Path, out: Path, device: str = "auto",
                   progress: bool = True, working_scale: float | None = None,
                   print_marks: bool = True) -> PredictSummary:
    """Apply the model of ``run_dir`` to every image of ``images``; write OUT (see module docstring).

    ``working_scale`` replaces the card's resampling factor: for micrographs whose particles are
    larger (smaller factor) or smaller in pixels than the run's labelled images were. ``print_marks``:
    particles at least half on what the OCR reads as print are not counted, as in runs
    (:mod:`harness.data.printed`); False for images that carry no print over the specimen, where a
    clump read as a digit would otherwise lose its particles."""
    if working_scale is not None and not 0 < working_scale <= MAX_WORKING_SCALE:
        raise HarnessError(f"--working-scale {working_scale}: must lie in (0, {MAX_WORKING_SCALE}]")
    net, card = load_model(run_dir)
    scale = card["working_scale"] if working_scale is None else working_scale
    # a factor the user chose is used as given; the card's gets the run's second look (harness.task.scale)
    second_look = card.get("second_look_px") if working_scale is None else None
    if lies_inside(out, images):
        raise HarnessError(f"--out {out} lies inside the image folder {images}: choose a folder outside it")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        # masks of images no longer in the folder would stay beside the new ones, unlisted in particles.csv
        raise HarnessError(f"--out {out} is not an empty folder: choose a new one (nothing is written over)")
    dataset = FolderDataset.of_micrographs(images)
    records = dataset.records()  # refuses, naming each bad file, as `harness data check` would
    if not records:
        raise HarnessError(f"{images}: holds no readable image files")
    runtime = resolve_runtime(device)
    net = runtime.prepare(net)
    task = get_task(card["task"])
    rows: list[dict[str, object]] = []
    image_rows: list[dict[str, object]] = []
    pooled: dict[str, list[float]] = {"nm": [], "px": []}
    on_border = {"nm": 0, "px": 0}
    medians: dict[str, float | None] = {}
    on_print: dict[str, int] = {}
    known = 0
    with folder_written_whole(out) as work:
        for sample_id in tqdm(sorted(records), desc="predict", unit="img", disable=not progress):
            read = dataset.load(sample_id)
            sample = read if print_marks else replace(read, may_carry_print=False)
            # the maps as a run reads them, and its labels with the particles on print kept apart to be shown
            maps = predict_maps(net, sample, runtime, task, scale, second_look)
            found = whole_image_labels(task.to_instances(maps, card["postprocess"]), sample)
            labels = drop_printed(found, sample)  # the same array where nothing was dropped
            dropped = None if labels is found else np.where(labels == 0, found, 0)
            dropped_count = int(np.unique(dropped[dropped > 0]).size) if dropped is not None else 0
            if dropped_count:
                on_print[sample_id] = dropped_count
            write_bytes_atomic(work / "masks" / f"{sample_id}.png", encode_labels(labels))
            marks = printed_mask(sample) if dropped is not None else None
            write_bytes_atomic(work / "overlays" / f"{sample_id}.png",
                               _outline_png(to_unit_float(sample.image), labels, dropped, marks))
            particles = measure_particles(labels, sample.pixel_size_nm, sample.databar_rows)
            known += sample.pixel_size_nm is not None
            rows.extend(_particle_rows(sample_id, sample, particles))
            unit, sized = particles.units, particles.sized_diameters
            medians[sample_id] = _median_px(particles)
            image_rows.append(_image_row(sample_id, sample, particles, sized, medians[sample_id],
                                         dropped_count if sample.may_carry_print else None))
            pooled[unit].extend(sized.tolist())
            on_border[unit] += particles.count - sized.size
            _histogram(sized, unit, _sized_title(sample_id, sized.size, particles.count - sized.size),
                       work / "histograms" / f"{sample_id}.png")
        write_text_atomic(work / PARTICLES_FILE, csv_text(COLUMNS, rows))
        write_text_atomic(work / IMAGES_FILE, csv_text(IMAGE_COLUMNS, image_rows))
        unit = "nm" if pooled["nm"] or known else "px"
        # never pool nm with px: the pooled histogram shows the images with a pixel size, if any
        over = f"{known} images with a pixel size" if known and known < len(records) else f"{len(records)} images"
        _histogram(np.asarray(pooled[unit]), unit, _sized_title(f"pooled over the {over}", len(pooled[unit]),
                                                                on_border[unit]), work / "histogram.png")
    sizes = size_note(medians, card.get("budget_median_diameter_px"), card["working_scale"], scale,
                      second_look is not None)
    return PredictSummary(images=len(records), particles=len(rows), with_pixel_size=known, out=out,
                          working_scale=scale, second_look_px=second_look,
                          notes=card_drift(card) + ([sizes] if sizes else []) + _print_note(on_print))


def _print_note(on_print: dict[str, int]) -> list[str]:
    """A note naming the images where found particles lay on what was read as print."""
    if not on_print:
        return []
    return [f"{sum(on_print.values())} particle(s) found in {_some(sorted(on_print))} lie at least half on what "
            "was read as print (panel letters, scale bars, their labels) and are not counted, as in runs (images.csv "
            "dropped_on_print; cyan on overlays/). The OCR can read a bright clump of particles as a digit: if these "
            "images carry no print over the specimen, run again with --no-print-marks"]


def _particle_rows(sample_id: str, sample: Sample, particles: Particles) -> list[dict[str, object]]:
    # each property computes the whole image's array: once here, not once per particle
    in_px, areas, diameters = diameters_from_areas(particles.areas_px, None), particles.areas, particles.diameters
    nm = sample.pixel_size_nm is not None
    return [{"image": sample_id, "particle": int(particle), "area_px": int(particles.areas_px[k]),
             "area_nm2": float(areas[k]) if nm else "", "diameter_px": float(in_px[k]),
             "diameter_nm": float(diameters[k]) if nm else "",
             "pixel_size_nm": sample.pixel_size_nm if nm else "", "pixel_size_source": sample.pixel_size_source,
             "touches_border": bool(particles.touches_border[k])}
            for k, particle in enumerate(particles.ids)]
