"""The embedded dataset ``synthetic-nanowire``: TEM-like micrographs of nanowires, each image of
one morphology class (Lu et al. 2022's four: bundle, dispersed, network, singular), with exact
instance masks and a physical pixel size.

It serves two tasks: the per-image morphology class (classification with few labels per class,
Lu et al.'s main task) and, like the particle datasets, instance segmentation. The classes are
made by how wires are placed, not by how they look one by one, so a classifier must see the
arrangement:

- ``singular``: one wire crossing the field;
- ``dispersed``: several short wires apart from each other, none touching;
- ``bundle``: wires side by side along one direction, touching, staggered along their length;
- ``network``: many long wires at all angles, crossing one another (the upper one is seen).

A small catalogue of wire materials (diameters 8-300 nm) is imaged at pixel sizes from 0.5 to 50
nm/px, so that a wire is 3.5-16 px wide; classes and length-scale bins are balanced (every 12
consecutive images hold each class at each bin). Wires are curved centre lines of a diameter;
contrast, blur, noise and quantisation are those of ``synthetic-tem``
(:func:`harness.data.synthetic._render`). Every image comes from its own seeded streams, as in
:mod:`harness.data.synthetic`, so any image can be made alone and gives the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from scipy import ndimage

from harness.data.base import CATEGORY_COLUMN, DatasetIdentity, stable_hash
from harness.data.sample import Sample
from harness.data.scales import LENGTH_SCALES
from harness.data.synthetic import (
    PIXEL_SIZE_RANGE_NM,
    ImageParams,
    SyntheticDataset,
    _large_enough,
    _particle_table,
    _relabel,
    _render,
)

GENERATOR_VERSION = "1"
NAME = "synthetic-nanowire"
#: The morphology classes, in the order of their codes.
MORPHOLOGIES = ("bundle", "dispersed", "network", "singular")
#: Seed stream code (the particle datasets use 1 for SEM and 2 for TEM).
STREAM = 3
#: A wire is this many pixels wide at least and at most (the material is chosen to fit).
WIDTH_PX = (3.5, 16.0)


@dataclass(frozen=True)
class WireMaterial:
    name: str
    diameter_nm: float
    sigma: float  # log-normal shape parameter of the diameter


WIRE_MATERIALS: tuple[WireMaterial, ...] = (
    WireMaterial("Au nanowires", 8.0, 0.12),
    WireMaterial("Ag nanowires", 40.0, 0.15),
    WireMaterial("ZnO nanowires", 80.0, 0.18),
    WireMaterial("Si nanowires", 150.0, 0.15),
    WireMaterial("Cu nanowires", 300.0, 0.15),
)


class WireParams(BaseModel):
    """Everything that decides one nanowire image, drawn before any pixel is rendered."""

    model_config = ConfigDict(frozen=True)

    index: int
    morphology: str
    imaging: ImageParams  # pixel size, material, dose, noise, blur, gradient (TEM, 16-bit, no data bar)

    # what the dataset machinery reads of any synthetic image's parameters
    @property
    def size(self) -> int:
        return self.imaging.size

    @property
    def pixel_size_nm(self) -> float:
        return self.imaging.pixel_size_nm

    @property
    def databar_rows(self) -> int:
        return 0


def draw_wire_params(seed: int, index: int, size: int) -> WireParams:
    rng = np.random.default_rng([seed, STREAM, index, 0])
    scale = LENGTH_SCALES[index % len(LENGTH_SCALES)]
    morphology = MORPHOLOGIES[(index // len(LENGTH_SCALES)) % len(MORPHOLOGIES)]
    low = max(scale.min_nm_per_px, PIXEL_SIZE_RANGE_NM[0])
    high = min(scale.max_nm_per_px, PIXEL_SIZE_RANGE_NM[1])
    pixel = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    fits = [m for m in WIRE_MATERIALS if WIDTH_PX[0] <= m.diameter_nm / pixel <= WIDTH_PX[1]]
    if not fits:  # the edges of the pixel-size range: the material closest to 7 px wide
        fits = [min(WIRE_MATERIALS, key=lambda m: abs(math.log(m.diameter_nm / pixel / 7)))]
    material = fits[int(rng.integers(len(fits)))]
    imaging = ImageParams(
        index=index, modality="TEM", size=size, pixel_size_nm=round(pixel, 6), material=material.name,
        coverage=0.0, cluster_prob=0.0,
        dose=float(np.exp(rng.uniform(np.log(15), np.log(400)))),
        detector_noise=float(rng.uniform(0.005, 0.03)),
        blur_px=float(rng.uniform(0.5, 1.4)),
        jitter_prob=0.0,
        gradient=float(rng.uniform(0.0, 0.2)),
        databar_rows=0,
        bit_depth=16,
    )
    return WireParams(index=index, morphology=morphology, imaging=imaging)


# ---------------------------------------------------------------- wires


@dataclass
class _Wire:
    centre: np.ndarray  # (N, 2) points (y, x), about half a pixel apart
    radius: float  # px
    diameter_nm: float
    length_nm: float


def _centre_line(start: tuple[float, float], heading: float, length: float, bend: float, wiggle: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Points half a pixel apart from ``start`` along ``heading`` (radians), turning by ``bend``
    per pixel plus a random walk of ``wiggle`` (rad per sqrt(px))."""
    steps = max(2, int(length * 2))
    turns = bend * 0.5 + rng.normal(0, wiggle * math.sqrt(0.5), steps)
    angles = heading + np.cumsum(turns)
    dy, dx = 0.5 * np.sin(angles), 0.5 * np.cos(angles)
    return np.stack([start[0] + np.cumsum(dy), start[1] + np.cumsum(dx)], 1)


def _wire_pixels(wire: _Wire, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the field within ``wire.radius`` of its centre line (a line that runs
    partly or wholly outside the field still reaches in with its width)."""
    pad = math.ceil(wire.radius) + 1
    top, left = np.floor(wire.centre.min(0)).astype(int) - pad
    bottom, right = np.ceil(wire.centre.max(0)).astype(int) + pad
    canvas = np.ones((bottom - top, right - left), dtype=bool)
    canvas[np.round(wire.centre[:, 0]).astype(int) - top, np.round(wire.centre[:, 1]).astype(int) - left] = False
    ys, xs = np.nonzero(ndimage.distance_transform_edt(canvas) <= wire.radius)
    ys, xs = ys + top, xs + left
    inside = (ys >= 0) & (ys < size) & (xs >= 0) & (xs < size)
    return ys[inside], xs[inside]


def _new_wire(material: WireMaterial, p: ImageParams, start: tuple[float, float], heading: float,
              rng: np.random.Generator, length_nm: float, bend: float | None = None,
              wiggle: float | None = None) -> _Wire:
    diameter_nm = float(material.diameter_nm * np.exp(rng.normal(0, material.sigma)))
    radius = max(1.2, diameter_nm / p.pixel_size_nm / 2)
    length = length_nm / p.pixel_size_nm
    bend = float(rng.normal(0, 0.004)) if bend is None else bend
    wiggle = float(rng.uniform(0.005, 0.02)) if wiggle is None else wiggle
    return _Wire(_centre_line(start, heading, length, bend, wiggle, rng), radius, diameter_nm, length_nm)


def _through(point: tuple[float, float], heading: float, half: float) -> tuple[float, float]:
    """The start of a line of half-length ``half`` centred on ``point`` along ``heading``."""
    return point[0] - half * math.sin(heading), point[1] - half * math.cos(heading)


def _wires(p: WireParams, rng: np.random.Generator) -> list[_Wire]:
    """The centre lines of one image's wires, placed as its morphology says (drawing order: the
    later wire lies on top)."""
    imaging = p.imaging
    size = imaging.size
    material = next(m for m in WIRE_MATERIALS if m.name == imaging.material)
    width = material.diameter_nm / imaging.pixel_size_nm  # px
    wires: list[_Wire] = []
    if p.morphology == "singular":
        heading = float(rng.uniform(0, math.pi))
        length_nm = imaging.pixel_size_nm * size * float(rng.uniform(0.6, 1.4))
        centre = tuple(rng.uniform(0.35 * size, 0.65 * size, 2))
        half = length_nm / imaging.pixel_size_nm / 2
        wires.append(_new_wire(material, imaging, _through(centre, heading, half), heading, rng,
                               length_nm=length_nm))
    elif p.morphology == "dispersed":
        wanted = int(rng.integers(5, 13))
        taken = np.zeros((size, size), dtype=bool)
        for _ in range(60 * wanted):
            if len(wires) == wanted:
                break
            heading = float(rng.uniform(0, 2 * math.pi))
            length_nm = imaging.pixel_size_nm * size * float(rng.uniform(0.12, 0.3))
            wire = _new_wire(material, imaging, tuple(rng.uniform(0, size, 2)), heading, rng,
                             length_nm=length_nm)
            rr, cc = _wire_pixels(wire, size)
            if rr.size < 4 * width:  # mostly outside the field
                continue
            # apart: no pixel within one diameter of a wire already placed
            if taken[rr, cc].any():
                continue
            wires.append(wire)
            grown = np.zeros_like(taken)
            grown[rr, cc] = True
            taken |= ndimage.binary_dilation(grown, iterations=max(2, round(width)))
    elif p.morphology == "bundle":
        count = int(rng.integers(4, 10))
        heading = float(rng.uniform(0, math.pi))
        bend = float(rng.normal(0, 0.003))
        wiggle = float(rng.uniform(0.002, 0.006))
        length_nm = imaging.pixel_size_nm * size * float(rng.uniform(0.7, 1.3))
        middle = np.array(rng.uniform(0.35 * size, 0.65 * size, 2))
        across = np.array([math.cos(heading), -math.sin(heading)])  # (dy, dx) perpendicular to the heading
        along = np.array([math.sin(heading), math.cos(heading)])
        offset = 0.0
        for _ in range(count):
            wire_centre = middle + (offset - 0.5 * (count - 1) * width) * across
            wire_centre = wire_centre + float(rng.uniform(-0.15, 0.15)) * size * along  # staggered
            half = length_nm / imaging.pixel_size_nm / 2
            wires.append(_new_wire(material, imaging, _through(tuple(wire_centre), heading, half), heading,
                                   rng, bend=bend, wiggle=wiggle, length_nm=length_nm * float(rng.uniform(0.7, 1.0))))
            offset += width * float(rng.uniform(0.85, 1.0))  # touching neighbours
    else:  # network
        count = int(rng.integers(12, 25))
        for _ in range(count):
            heading = float(rng.uniform(0, 2 * math.pi))
            length_nm = imaging.pixel_size_nm * size * float(rng.uniform(0.8, 1.6))
            centre = tuple(rng.uniform(0, size, 2))
            half = length_nm / imaging.pixel_size_nm / 2
            wires.append(_new_wire(material, imaging, _through(centre, heading, half), heading, rng,
                                   length_nm=length_nm))
    return wires


def render_wires(p: WireParams, seed: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Image (uint16), instance labels (int32, one id per wire) and the wire table."""
    rng = np.random.default_rng([seed, STREAM, p.index, 1])
    size = p.imaging.size
    labels = np.zeros((size, size), dtype=np.int32)
    wires = _wires(p, rng)
    records: list[dict[str, Any]] = []
    for label, wire in enumerate(wires, start=1):
        rr, cc = _wire_pixels(wire, size)
        labels[rr, cc] = label  # the later wire lies on top
        records.append({"label": label, "shape": "wire", "diameter_nm": wire.diameter_nm, "drawn_px": int(rr.size),
                        "clustered": p.morphology in ("bundle", "network")})
    labels = np.where(_large_enough(labels, len(records))[labels], labels, 0)
    image = _render(p.imaging, labels, rng)
    labels, mapping = _relabel(labels, _large_enough(labels, len(records)))
    table = _particle_table(labels, records, mapping, p.imaging)
    lengths = {int(mapping[r["label"]]): w.length_nm for r, w in zip(records, wires, strict=True)}
    table["length_nm"] = [lengths[int(label)] for label in table["label"]]
    pixels = np.clip(np.round(1200 + image * 42000), 0, 65535).astype(np.uint16)
    return pixels, labels.astype(np.int32), table


# ---------------------------------------------------------------- dataset


class NanowireDataset(SyntheticDataset):
    """``synthetic-nanowire`` at a profile's size (the particle datasets' profiles), from ``seed``.

    Its index has a ``category`` column: each image's morphology class."""

    renderer = staticmethod(render_wires)

    def __init__(self, profile: str = "quick", seed: int = 0, image_size: int | None = None):
        self.modality = "TEM"
        self._sized(profile, seed, image_size)
        params = {
            "generator": GENERATOR_VERSION, "seed": seed, "size": self.size, "profile": self.profile.model_dump(),
            "materials": [m.__dict__ for m in WIRE_MATERIALS], "morphologies": MORPHOLOGIES,
            "pixel_size_range_nm": PIXEL_SIZE_RANGE_NM, "width_px": WIDTH_PX,
            "length_scales": [(s.name, s.min_nm_per_px, s.max_nm_per_px) for s in LENGTH_SCALES],
        }
        self.identity = DatasetIdentity(name=NAME, version=GENERATOR_VERSION, params_hash=stable_hash(params))
        self._params = [draw_wire_params(seed, i, self.size) for i in range(self.profile.n_images)]
        self._by_id = {self._id(p.index): p for p in self._params}

    def _id(self, index: int) -> str:
        return f"nanowire-{index:06d}"

    def index(self) -> pd.DataFrame:
        index = super().index()
        index[CATEGORY_COLUMN] = [p.morphology for p in self._params]
        return index

    def _sample(self, sample_id: str, image: np.ndarray, mask: np.ndarray, table: pd.DataFrame) -> Sample:
        p = self.params(sample_id)
        return Sample(id=sample_id, image=image, mask=mask, pixel_size_nm=p.pixel_size_nm, modality=self.modality,
                      databar_rows=0, pixel_size_source="synthetic", particles=table, category=p.morphology)
