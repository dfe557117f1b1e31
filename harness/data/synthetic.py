"""The embedded datasets ``synthetic-sem`` and ``synthetic-tem``: procedurally generated
micrographs of particles with exact instance ground truth and a physical pixel size.

Every image is rendered from its own random streams, seeded by (seed, modality, image index), so
any image can be made alone, in any order, on any machine, and give the same bytes. A small
catalogue of materials (median diameters from 12 nm to 1.2 um) is imaged at pixel sizes from 0.5
to 50 nm/px, so one material appears at several length scales and every length-scale bin gets a
third of the images. Rendering follows the physics loosely but in the right order: particles
(shape, size, agglomeration) -> contrast (SEM: secondary-electron edge brightening and shadows;
TEM: mass-thickness absorption and a Fresnel fringe) -> probe blur -> scan-line jitter ->
background gradient -> shot noise at a dose -> detector noise -> data bar -> quantisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from scipy import ndimage
from skimage.draw import polygon as draw_polygon

from harness.data.base import Dataset, DatasetIdentity, stable_hash
from harness.data.cache import (
    cache_root,
    read_rendering,
    render_cached_only,
    render_into_cache,
)
from harness.data.parallel import map_in_processes
from harness.data.sample import Sample
from harness.data.scales import LENGTH_SCALES, length_scale_of
from harness.errors import HarnessError

GENERATOR_VERSION = "2"
MODALITY_CODE = {"SEM": 1, "TEM": 2}
SHAPES = ("sphere", "ellipse", "faceted", "rod")
PIXEL_SIZE_RANGE_NM = (0.5, 50.0)
MIN_PARTICLE_PX = 6  # visible pixels below which a particle is dropped from image and labels


class SyntheticProfile(BaseModel):
    model_config = ConfigDict(frozen=True)

    image_size: int
    n_images: int
    fractions: dict[str, float]  # pools: unlabeled, train, val, test


def _fractions(unlabeled: int, train: int, val: int, test: int) -> dict[str, float]:
    total = unlabeled + train + val + test
    return {"unlabeled": unlabeled / total, "train": train / total, "val": val / total, "test": test / total}


PROFILES: dict[str, SyntheticProfile] = {
    "smoke": SyntheticProfile(image_size=128, n_images=48, fractions=_fractions(24, 12, 6, 6)),
    "quick": SyntheticProfile(image_size=256, n_images=480, fractions=_fractions(300, 100, 40, 40)),
    "paper": SyntheticProfile(image_size=640, n_images=26_750, fractions=_fractions(25_000, 1000, 250, 500)),
}


@dataclass(frozen=True)
class Material:
    name: str
    median_nm: float
    sigma: float  # log-normal shape parameter of the diameter distribution
    shape_weights: tuple[float, float, float, float]  # sphere, ellipse, faceted, rod


MATERIALS: tuple[Material, ...] = (
    Material("Au nanospheres", 12.0, 0.18, (0.75, 0.2, 0.05, 0.0)),
    Material("Pt nanocubes", 25.0, 0.22, (0.1, 0.1, 0.8, 0.0)),
    Material("ZnO nanorods", 60.0, 0.30, (0.05, 0.15, 0.1, 0.7)),
    Material("TiO2 powder", 150.0, 0.40, (0.3, 0.3, 0.35, 0.05)),
    Material("SiO2 spheres", 400.0, 0.15, (0.8, 0.2, 0.0, 0.0)),
    Material("Al2O3 grains", 1200.0, 0.35, (0.1, 0.2, 0.65, 0.05)),
)


class ImageParams(BaseModel):
    """Everything that decides one image; drawn cheaply, before any pixel is rendered."""

    model_config = ConfigDict(frozen=True)

    index: int
    modality: str
    size: int
    pixel_size_nm: float
    material: str
    coverage: float  # target share of the field covered by particles
    cluster_prob: float  # chance that a particle is placed touching another
    dose: float  # mean electron count per pixel at full intensity
    detector_noise: float
    blur_px: float
    jitter_prob: float
    gradient: float
    databar_rows: int
    bit_depth: int


def _material(name: str) -> Material:
    return next(m for m in MATERIALS if m.name == name)


def draw_params(seed: int, modality: str, index: int, size: int) -> ImageParams:
    rng = np.random.default_rng([seed, MODALITY_CODE[modality], index, 0])
    scale = LENGTH_SCALES[index % len(LENGTH_SCALES)]  # stratified: a third of images per bin
    low = max(scale.min_nm_per_px, PIXEL_SIZE_RANGE_NM[0])
    high = min(scale.max_nm_per_px, PIXEL_SIZE_RANGE_NM[1])
    pixel = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    # materials whose median particle spans 10-45 px at this pixel size (and not over a third of the image)
    fits = [m for m in MATERIALS if 10 <= m.median_nm / pixel <= min(45, size / 3)]
    if not fits:
        fits = [min(MATERIALS, key=lambda m: abs(math.log(m.median_nm / pixel / 15)))]
    material = fits[int(rng.integers(len(fits)))]
    has_bar = modality == "SEM" and rng.random() < 0.5
    return ImageParams(
        index=index,
        modality=modality,
        size=size,
        pixel_size_nm=round(pixel, 6),
        material=material.name,
        coverage=float(rng.uniform(0.15, 0.4)),
        cluster_prob=float(rng.uniform(0.15, 0.5)),
        dose=float(np.exp(rng.uniform(np.log(15), np.log(400)))),
        detector_noise=float(rng.uniform(0.005, 0.03)),
        blur_px=float(rng.uniform(0.5, 1.4)),
        jitter_prob=float(rng.uniform(0.0, 0.08)) if modality == "SEM" else 0.0,
        gradient=float(rng.uniform(0.0, 0.2)),
        databar_rows=max(8, round(size * 0.08)) if has_bar else 0,
        bit_depth=8 if modality == "SEM" else 16,
    )


# ---------------------------------------------------------------- particles


def _outline(shape: str, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Polygon (N, 2) around the origin with the area of a circle of ``radius``."""
    angle = rng.uniform(0, 2 * np.pi)
    if shape == "sphere":
        t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        r = 1 + 0.04 * np.sin(3 * t + rng.uniform(0, 6)) + 0.03 * np.sin(5 * t + rng.uniform(0, 6))
        pts = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    elif shape == "ellipse":
        ratio = rng.uniform(1.3, 2.0)
        t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        pts = np.stack([np.sqrt(ratio) * np.cos(t), np.sin(t) / np.sqrt(ratio)], 1)
    elif shape == "faceted":
        n = int(rng.integers(4, 9))
        t = np.sort(np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(-0.25, 0.25, n) * (2 * np.pi / n))
        r = rng.uniform(0.85, 1.15, n)
        pts = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    else:  # rod: a stadium of aspect 3-8
        aspect = rng.uniform(3, 8)
        half = (aspect - 1) / 2
        t = np.linspace(-np.pi / 2, np.pi / 2, 12)
        right = np.stack([half + np.cos(t), np.sin(t)], 1)
        pts = np.concatenate([right, -right], 0)
    area = 0.5 * abs(np.dot(pts[:, 0], np.roll(pts[:, 1], 1)) - np.dot(pts[:, 1], np.roll(pts[:, 0], 1)))
    pts = pts * math.sqrt(math.pi / area) * radius
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return pts @ rot.T


def _place_particles(p: ImageParams, rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """Label image (top particle wins) and per-particle records before occlusion clean-up."""
    material = _material(p.material)
    size = p.size
    labels = np.zeros((size, size), dtype=np.int32)
    records: list[dict] = []
    covered, target = 0, p.coverage * size * size
    centres: list[tuple[float, float, float]] = []
    attempts = 0
    while covered < target and attempts < 4000:
        attempts += 1
        diameter_nm = float(material.median_nm * np.exp(rng.normal(0, material.sigma)))
        radius = diameter_nm / p.pixel_size_nm / 2
        if radius < 1.2:
            continue
        shape = SHAPES[int(rng.choice(4, p=np.asarray(material.shape_weights) / sum(material.shape_weights)))]
        clustered = bool(centres) and rng.random() < p.cluster_prob
        if clustered:  # touch a previous particle: agglomerates
            cy, cx, cr = centres[int(rng.integers(len(centres)))]
            direction = rng.uniform(0, 2 * np.pi)
            distance = (cr + radius) * rng.uniform(0.8, 0.95)
            y, x = cy + distance * math.sin(direction), cx + distance * math.cos(direction)
        else:  # anywhere, including partly outside the field
            y, x = rng.uniform(-radius * 0.6, size + radius * 0.6, 2)
        pts = _outline(shape, radius, rng) + [x, y]
        rr, cc = draw_polygon(pts[:, 1], pts[:, 0], shape=labels.shape)
        if rr.size == 0:
            continue
        overlap = np.count_nonzero(labels[rr, cc]) / rr.size
        if overlap > (0.25 if clustered else 0.05):
            continue
        label = len(records) + 1
        covered += rr.size - np.count_nonzero(labels[rr, cc])
        labels[rr, cc] = label
        centres.append((y, x, radius))
        records.append({"label": label, "shape": shape, "diameter_nm": diameter_nm, "drawn_px": int(rr.size),
                        "clustered": clustered})
    return labels, records


def _large_enough(labels: np.ndarray, n: int) -> np.ndarray:
    """Per old id (index 0 = background, always False): at least MIN_PARTICLE_PX visible pixels."""
    keep = np.bincount(labels.ravel(), minlength=n + 1) >= MIN_PARTICLE_PX
    keep[0] = False
    return keep


def _relabel(labels: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the ids flagged in ``keep`` (indexed by old id), renumbered 1..N; returns the map."""
    mapping = np.zeros(keep.size, dtype=np.int32)
    kept = np.flatnonzero(keep)
    mapping[kept] = np.arange(1, kept.size + 1, dtype=np.int32)
    return mapping[labels], mapping


# ---------------------------------------------------------------- image formation


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / (field.std() + 1e-12)


def _render(p: ImageParams, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = p.size
    foreground = labels > 0
    # inner distance to each particle's edge (touching particles have their own edges)
    edges = np.zeros_like(foreground)
    edges[:-1] |= labels[:-1] != labels[1:]
    edges[1:] |= labels[1:] != labels[:-1]
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edges[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    inside = ndimage.distance_transform_edt(foreground & ~edges) if foreground.any() else np.zeros(labels.shape)
    n = int(labels.max())
    peak = ndimage.maximum(inside, labels, index=np.arange(1, n + 1)) if n else np.zeros(0)
    peak_map = np.concatenate([[1.0], np.maximum(peak, 1.0)])[labels]
    t = np.clip(inside / peak_map, 0, 1)
    dome = np.sqrt(np.clip(1 - (1 - t) ** 2, 0, 1)) * foreground  # hemispherical height profile
    outside = ndimage.distance_transform_edt(~foreground) if foreground.any() else np.full(labels.shape, 1e3)
    brightness = np.concatenate([[0.0], rng.uniform(-1, 1, n)])[labels]
    texture = 0.6 * _smooth_noise(rng, labels.shape, 1.0) + 0.4 * _smooth_noise(rng, labels.shape, size / 40)
    if p.modality == "SEM":
        edge = np.exp(-inside / 1.5) * foreground
        shadow_dir = rng.uniform(0, 2 * np.pi)
        shifted = ndimage.shift(foreground.astype(float), (3 * math.sin(shadow_dir), 3 * math.cos(shadow_dir)),
                                order=0)
        shadow = ndimage.gaussian_filter(shifted, 2.0) * ~foreground
        substrate = 0.22 + 0.03 * texture - 0.08 * shadow
        particle = 0.5 + 0.12 * dome + 0.3 * edge + 0.06 * brightness + 0.02 * texture
        image = np.where(foreground, particle, substrate)
    else:
        thickness = dome * (0.6 + 0.4 * np.exp(-abs(brightness)))
        background = 0.82 + 0.025 * texture
        image = background * np.exp(-1.1 * thickness - 0.25 * foreground)
        fringe = 0.07 * np.exp(-(outside - 1) ** 2 / 0.8) * ~foreground  # Fresnel fringe just outside
        image = image + fringe
    image = ndimage.gaussian_filter(image, p.blur_px)  # probe blur
    yy, xx = np.mgrid[0:size, 0:size] / size
    direction = rng.uniform(0, 2 * np.pi)
    image = image * (1 + p.gradient * ((xx - 0.5) * math.cos(direction) + (yy - 0.5) * math.sin(direction)))
    image = rng.poisson(np.clip(image, 0, None) * p.dose) / p.dose  # shot noise
    image = image + rng.normal(0, p.detector_noise, image.shape)  # detector noise
    return image


def _jitter(
    image: np.ndarray, labels: np.ndarray, prob: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Scan-line jitter: whole rows shifted by one pixel, applied to image and labels alike."""
    shifts = np.where(rng.random(image.shape[0]) < prob, rng.choice([-1, 1], image.shape[0]), 0)
    if not shifts.any():
        return image, labels
    # edge pixels are repeated rather than wrapped, so no label fragment jumps across the field
    cols = np.clip(np.arange(image.shape[1])[None, :] - shifts[:, None], 0, image.shape[1] - 1)
    rows = np.arange(image.shape[0])[:, None]
    return image[rows, cols], labels[rows, cols]


def _glyph(rng: np.random.Generator, scale: int) -> np.ndarray:
    """A random 5x3 character-like bitmap (a stroke on at least one side), scaled up."""
    bits = rng.random((5, 3)) < 0.55
    bits[:, 0 if rng.random() < 0.5 else 2] = True
    return np.kron(bits, np.ones((scale, scale), dtype=bool))


def _write(bar: np.ndarray, x: int, top: int, n_chars: int, scale: int, rng: np.random.Generator) -> int:
    """Write ``n_chars`` glyphs from column ``x``; returns the column after the last one."""
    for _ in range(n_chars):
        glyph = _glyph(rng, scale)
        h, w = glyph.shape
        if x + w >= bar.shape[1] or top + h > bar.shape[0]:
            break
        bar[top : top + h, x : x + w][glyph] = 0.92
        x += w + scale
    return x


def _data_bar(image: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    """An instrument data bar: dark band with fields of text (e.g. 'EHT = 5.00 kV  WD = 4 mm')
    on the left, and a scale bar with its length written above it on the right."""
    width = image.shape[1]
    bar = np.full((rows, width), 0.05)
    scale = max(1, round(rows * 0.4 / 5))
    top = (rows - 5 * scale) // 2
    x = 2 * scale
    while x < width * 0.62:  # fields of 3-7 characters separated by wider gaps
        x = _write(bar, x, top, int(rng.integers(3, 8)), scale, rng) + 3 * scale
    length = max(8, width // 6)
    right = width - 3 * scale
    bar[rows - 2 * scale - max(1, scale) : rows - 2 * scale, right - length : right] = 1.0
    _write(bar, right - length, max(0, top - 2 * scale), 3, max(1, scale - 1) if rows >= 20 else 1, rng)
    image = image.copy()
    image[-rows:] = bar
    return image


def render_image(p: ImageParams, seed: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Image (uint8 SEM / uint16 TEM), instance labels (int32) and the particle table."""
    rng = np.random.default_rng([seed, MODALITY_CODE[p.modality], p.index, 1])
    labels, records = _place_particles(p, rng)
    # slivers left by occlusion or the field edge are removed before rendering, so the image
    # never shows a particle that the labels lack
    labels = np.where(_large_enough(labels, len(records))[labels], labels, 0)
    image = _render(p, labels, rng)
    image, labels = _jitter(image, labels, p.jitter_prob, rng)
    if p.databar_rows:
        image = _data_bar(image, p.databar_rows, rng)
        labels[-p.databar_rows :] = 0
    # the data bar can still cut a particle to a sliver; like a human annotator, leave it out
    labels, mapping = _relabel(labels, _large_enough(labels, len(records)))
    table = _particle_table(labels, records, mapping, p)
    if p.bit_depth == 8:
        pixels = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    else:  # a detector that fills ~2/3 of its 16-bit range, above a dark offset
        pixels = np.clip(np.round(1200 + image * 42000), 0, 65535).astype(np.uint16)
    return pixels, labels.astype(np.int32), table


def _particle_table(labels: np.ndarray, records: list[dict], mapping: np.ndarray, p: ImageParams) -> pd.DataFrame:
    n = int(labels.max())
    area = np.bincount(labels.ravel(), minlength=n + 1)
    valid_rows = p.size - p.databar_rows
    border = np.zeros(n + 1, dtype=bool)
    for edge in (labels[0], labels[valid_rows - 1], labels[:valid_rows, 0], labels[:valid_rows, -1]):
        border[edge] = True
    touching = np.zeros(n + 1, dtype=bool)
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
        contact = (a != b) & (a > 0) & (b > 0)
        touching[a[contact]] = True
        touching[b[contact]] = True
    rows = []
    for record in records:
        new = int(mapping[record["label"]])
        if new == 0:
            continue
        rows.append({
            "label": new, "material": p.material, "shape": record["shape"],
            "diameter_nm": record["diameter_nm"], "area_px": int(area[new]),
            "drawn_px": record["drawn_px"], "touches_border": bool(border[new]),
            "touching": bool(touching[new]), "clustered": record["clustered"],
        })
    columns = ["label", "material", "shape", "diameter_nm", "area_px", "drawn_px", "touches_border", "touching",
               "clustered"]
    return pd.DataFrame(rows, columns=columns).sort_values("label").reset_index(drop=True)


# ---------------------------------------------------------------- dataset


class SyntheticDataset(Dataset):
    """``synthetic-sem`` / ``synthetic-tem`` at a profile's size, generated from ``seed``."""

    # one parameter record per image: ImageParams here, another family's own (e.g. WireParams)
    _params: list[Any]
    _by_id: dict[str, Any]

    def __init__(self, modality: str = "SEM", profile: str = "quick", seed: int = 0, image_size: int | None = None):
        if modality not in MODALITY_CODE:
            raise HarnessError(f"unknown modality {modality!r}: use SEM or TEM")
        self.modality = modality
        self._sized(profile, seed, image_size)
        # everything that changes the bytes: a change here gives a new cache key, never stale data
        params = {
            "generator": GENERATOR_VERSION, "modality": modality, "seed": seed, "size": self.size,
            "profile": self.profile.model_dump(), "materials": [m.__dict__ for m in MATERIALS],
            "shapes": SHAPES, "pixel_size_range_nm": PIXEL_SIZE_RANGE_NM, "min_particle_px": MIN_PARTICLE_PX,
            "length_scales": [(s.name, s.min_nm_per_px, s.max_nm_per_px) for s in LENGTH_SCALES],
        }
        self.identity = DatasetIdentity(name=f"synthetic-{modality.lower()}", version=GENERATOR_VERSION,
                                        params_hash=stable_hash(params))
        self._params = [draw_params(seed, modality, i, self.size) for i in range(self.profile.n_images)]
        self._by_id = {self._id(p.index): p for p in self._params}

    def _sized(self, profile: str, seed: int, image_size: int | None) -> None:
        """Profile, seed, image size and pool fractions: what every family of synthetic images sets."""
        if profile not in PROFILES:
            raise HarnessError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
        self.profile = PROFILES[profile]
        self.profile_name = profile
        self.seed = seed
        self.size = image_size or self.profile.image_size
        if self.size < 64:
            raise HarnessError(f"image size {self.size} is too small: use at least 64 px")
        self.split_fractions = dict(self.profile.fractions)

    #: ``(params, seed) -> (image, mask, particle table)``; a module-level function, so that
    #: generation jobs pickle to worker processes. Another family of images swaps it.
    renderer: Callable[[Any, int], tuple[np.ndarray, np.ndarray, pd.DataFrame]] = staticmethod(render_image)

    def _id(self, index: int) -> str:
        return f"{self.modality.lower()}-{index:06d}"

    def index(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "id": list(self._by_id),
                "labeled": True,
                "pixel_size_nm": [p.pixel_size_nm for p in self._params],
                "length_scale": [length_scale_of(p.pixel_size_nm) for p in self._params],
                "modality": self.modality,
                "split": None,
            }
        )

    def params(self, sample_id: str) -> Any:
        if sample_id not in self._by_id:
            raise HarnessError(f"{self.identity.name} has no sample {sample_id!r}")
        return self._by_id[sample_id]

    @property
    def cache_dir(self) -> Path:
        return cache_root() / "datasets" / self.identity.key

    def missing(self) -> list[ImageParams]:
        """The images not yet in the cache."""
        return [p for p in self._params if not (self.cache_dir / f"{self._id(p.index)}.npz").is_file()]

    def generate(self, workers: int = 1, progress: bool = False) -> int:
        """Render every image not yet cached, in ``workers`` processes; returns how many were made.

        Each image comes from its own seeded stream (``render_image``), so the bytes do not depend
        on the worker count or the order; the paper profile's 26,750 images need this."""
        missing = self.missing()
        if not missing:
            return 0
        jobs = [(self.renderer, p, self.seed, self.cache_dir / f"{self._id(p.index)}.npz") for p in missing]
        for _ in map_in_processes(render_cached_only, jobs, per_worker=2, workers=workers,
                                  desc=f"generate {self.identity.name}", progress=progress):
            pass
        return len(jobs)

    def load(self, sample_id: str) -> Sample:
        p = self.params(sample_id)
        path = self.cache_dir / f"{sample_id}.npz"
        stored = read_rendering(path)
        if stored is None:
            image, mask, table = render_into_cache((self.renderer, p, self.seed, path))
        else:
            image, mask, table = stored
        return self._sample(sample_id, image, mask, table)

    def _sample(self, sample_id: str, image: np.ndarray, mask: np.ndarray, table: pd.DataFrame) -> Sample:
        p = self.params(sample_id)
        return Sample(id=sample_id, image=image, mask=mask, pixel_size_nm=p.pixel_size_nm, modality=self.modality,
                      databar_rows=p.databar_rows, pixel_size_source="synthetic", particles=table)


