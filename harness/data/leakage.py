"""Leakage between the images a model trains on and the images it is judged on.

A micrograph that sits in the pretraining pool and, re-saved, rescaled or slightly cropped, also
in validation or test inflates every score. :func:`find_leaks` compares every pretraining image
with every evaluation image and returns the pairs that are the same micrograph.

Two stages, both measured in bits of one perceptual hash:

1. **Whole images.** :func:`perceptual_hash` is a DCT hash: drop the data bar, scale with
   :func:`~harness.data.intensity.to_unit_float`, average down to 32 x 32 pixels, take the 2-D
   DCT, keep the 8 x 8 lowest frequencies and set one bit per coefficient above their median
   (the DC term, the mean brightness, is replaced by that median). Re-encoding, a change of bit
   depth, rescaling and cutting off a data bar move it by a few bits; two different micrographs
   differ in about 32 of 64 bits.
2. **Crops.** A crop shifts the content under the coarse DCT grid, so on fine textures even a
   2 % crop can move the hash by 15 bits. When one image is smaller than the other (a crop makes
   it so) and the whole-image hashes are not far apart, the smaller one is located inside the
   larger one by normalised cross-correlation (coarse on thumbnails, then exact in full
   resolution), and the distance becomes the one between the smaller image and the matching
   window of the larger. A real crop then scores 0-2 bits. A large crop can move the hash
   past that screen (a 78 % crop of a 128 px image: 30 bits), so a pair shaped like a crop
   beyond it is nominated by its fingerprint thumbnails instead (:func:`coarse_crop_score`, a
   cross-correlation of ~48 px block means, at :data:`MIN_SCREEN_CORRELATION`).

3. **Pixels, the second opinion.** 64 bits cannot tell apart two micrographs of similar texture
   (a TEM of dark spheres and an SEM of bright cubes of EMPS sit 8 bits apart), so the hash only
   nominates. A nominated pair is a leak only when its pixels agree: :func:`pixel_correlation`
   of the two images on one grid (the smaller's, at most 512 px a side) for whole images, of the
   smaller image and its located window for crops, must reach :data:`MIN_PIXEL_CORRELATION`.
   Copies score above 0.95; different micrographs near 0. The grid is fine on purpose: two
   near-blank panels of one EMPS figure that share their scale bar correlate 0.83 on a 128 px
   grid (the particles average away) and 0.66 at 512 px.

A pair leaks when its distance is at most ``max_distance`` (default
:data:`DEFAULT_MAX_DISTANCE`) and its pixels confirm it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy.fft import dctn
from scipy.signal import correlate
from tqdm import tqdm

from harness.data.base import Dataset
from harness.data.intensity import to_unit_float
from harness.data.parallel import map_in_processes, workers_for
from harness.data.splits import SplitManifest
from harness.errors import HarnessError

HASH_SIDE = 8  # 8 x 8 = 64 bits
HASH_BITS = HASH_SIDE * HASH_SIDE
DOWNSAMPLED = 32
#: Default largest Hamming distance (of 64 bits) that counts as the same micrograph.
DEFAULT_MAX_DISTANCE = 10
#: Whole-image distance up to which a smaller image is searched for inside a larger one.
CROP_SCREEN_DISTANCE = 26
#: A crop keeps at least this share of each side of the original.
MIN_CROP_SHARE = 0.7
#: Long side of the thumbnails for the coarse crop search.
THUMB_SIDE = 128
#: Long side of the fingerprint thumbnails of the coarse crop screen.
SCREEN_SIDE = 48
#: Coarse correlation at which a crop-shaped pair beyond the hash screen is searched in full.
MIN_SCREEN_CORRELATION = 0.7
#: Normalised cross-correlation that a crop location must reach.
MIN_CORRELATION = 0.8
#: Pixel correlation of a nominated pair on one grid that confirms the same micrograph.
MIN_PIXEL_CORRELATION = 0.8
#: Longest side of the common grid of the pixel comparison.
CONFIRM_SIDE = 512
PRETRAIN_POOLS = ("unlabeled", "train")
EVAL_POOLS = ("val", "test")


class Leak(NamedTuple):
    """A pretraining image that is a near-duplicate of an evaluation image (hash distance in bits,
    and the pixel correlation that confirmed it; None where no pixels were compared)."""

    pretrain_id: str
    eval_id: str
    distance: int
    correlation: float | None = None


class Fingerprint(NamedTuple):
    """What the comparison needs of one image without holding its pixels."""

    hash: int
    shape: tuple[int, int]  # rows above the data bar, columns
    # a block-mean thumbnail (longest side about SCREEN_SIDE) and its block size: the cheap
    # crop screen for pairs whose whole-image hashes are too far apart
    thumb: np.ndarray | None = None
    factor: int = 1


def _without_bar(image: np.ndarray, databar_rows: int) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 2:
        raise HarnessError(f"perceptual hash needs a 2-D image, got shape {array.shape}")
    if 0 < databar_rows < array.shape[0]:
        return array[: array.shape[0] - databar_rows]
    return array


def _dct_hash(unit: np.ndarray) -> int:
    small = np.asarray(
        Image.fromarray(np.ascontiguousarray(unit, dtype=np.float32)).resize(
            (DOWNSAMPLED, DOWNSAMPLED), Image.Resampling.BOX
        ),
        dtype=np.float64,
    )
    low = dctn(small, norm="ortho")[:HASH_SIDE, :HASH_SIDE].ravel()
    low[0] = np.median(low[1:])
    bits = low > np.median(low)
    return int(np.packbits(bits).view(">u8")[0])


def perceptual_hash(image: np.ndarray, databar_rows: int = 0) -> int:
    """64-bit DCT hash of a 2-D micrograph, its data bar left out."""
    return _dct_hash(to_unit_float(_without_bar(image, databar_rows)))


def fingerprint(image: np.ndarray, databar_rows: int = 0) -> Fingerprint:
    array = _without_bar(image, databar_rows)
    unit = to_unit_float(array)
    factor = max(1, math.ceil(max(unit.shape) / SCREEN_SIDE))
    return Fingerprint(_dct_hash(unit), (int(array.shape[0]), int(array.shape[1])),
                       _block_mean(unit, factor).astype(np.float32), factor)


def coarse_crop_score(large: Fingerprint, small: Fingerprint) -> float:
    """Best normalised cross-correlation of ``small``'s thumbnail inside ``large``'s, on one scale:
    high for a crop whatever its hash distance, near 0 for unrelated images. 0 without thumbnails."""
    if large.thumb is None or small.thumb is None:
        return 0.0
    thumb = small.thumb
    if small.factor != large.factor:  # bring the small one to the large one's block size
        ratio = small.factor / large.factor
        size = (max(1, round(thumb.shape[1] * ratio)), max(1, round(thumb.shape[0] * ratio)))
        thumb = np.asarray(Image.fromarray(thumb).resize(size, Image.Resampling.BOX), dtype=np.float32)
    if min(thumb.shape) < 4 or thumb.shape[0] > large.thumb.shape[0] or thumb.shape[1] > large.thumb.shape[1]:
        return 0.0
    if float(thumb.std()) == 0.0:
        return 0.0
    return float(match_template(large.thumb, thumb).max())


def match_template(image: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of ``template`` at every offset where it fits inside ``image``:
    what skimage's ``match_template`` computes (no padding), in float64 and, for the arrays of
    this module, 1.3-3x faster (one FFT correlation; the window sums come from integral images,
    not from two more FFTs). A window without variance scores 0."""
    image = np.asarray(image, dtype=np.float64)
    centred = np.asarray(template, dtype=np.float64)
    centred = centred - centred.mean()
    th, tw = centred.shape
    # the template sums to 0, so the window's own mean drops out of the numerator
    numerator = correlate(image, centred, mode="valid", method="fft")
    sums, squares = (_window_sums(a, th, tw) for a in (image, image * image))
    spread = np.maximum(squares - sums * sums / (th * tw), 0.0) * float((centred * centred).sum())
    out = np.zeros_like(numerator)
    flat = spread <= np.finfo(np.float64).eps
    np.divide(numerator, np.sqrt(spread), out=out, where=~flat)
    return out


def _window_sums(array: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Sum of every rows x cols window that fits inside ``array`` (an integral image)."""
    integral = np.zeros((array.shape[0] + 1, array.shape[1] + 1))
    np.cumsum(np.cumsum(array, axis=0), axis=1, out=integral[1:, 1:])
    return integral[rows:, cols:] - integral[:-rows, cols:] - integral[rows:, :-cols] + integral[:-rows, :-cols]


def hamming(a: int, b: int) -> int:
    """Number of differing bits of two 64-bit hashes."""
    return (int(a) ^ int(b)).bit_count()


def _block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    rows, cols = array.shape[0] // factor, array.shape[1] // factor
    trimmed = array[: rows * factor, : cols * factor]
    return trimmed.reshape(rows, factor, cols, factor).mean(axis=(1, 3))


def thumb_factor(shape: tuple[int, ...]) -> int:
    """Block size of the coarse crop search's thumbnails for a larger image of ``shape``."""
    return max(1, math.ceil(max(shape) / THUMB_SIDE))


def locate_crop(large: np.ndarray, small: np.ndarray,
                thumbs: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[int, int] | None:
    """Top-left corner of ``small`` inside ``large`` (same pixel scale), or None if not found.

    Both are 2-D unit-float images. A coarse search on thumbnails finds the area; an exact search
    with ``small``'s central patch in full resolution fixes the offset to the pixel. ``thumbs``:
    both images' block means at :func:`thumb_factor` of ``large``, when already computed.
    """
    if small.shape[0] > large.shape[0] or small.shape[1] > large.shape[1]:
        return None
    factor = thumb_factor(large.shape)
    thumb_large, thumb_small = thumbs or (_block_mean(large, factor), _block_mean(small, factor))
    if min(thumb_small.shape) < 4:
        return None
    coarse = match_template(thumb_large, thumb_small)
    cy, cx = np.unravel_index(int(np.argmax(coarse)), coarse.shape)
    # exact search: a central patch of the small image, around the coarse position
    ph, pw = min(small.shape[0], 96), min(small.shape[1], 96)
    py, px = (small.shape[0] - ph) // 2, (small.shape[1] - pw) // 2
    patch = small[py : py + ph, px : px + pw]
    margin = 2 * factor
    y0 = max(0, cy * factor + py - margin)
    x0 = max(0, cx * factor + px - margin)
    region = large[y0 : cy * factor + py + ph + margin, x0 : cx * factor + px + pw + margin]
    if region.shape[0] < ph or region.shape[1] < pw or float(patch.std()) == 0.0:
        return None
    fine = match_template(region, patch)
    fy, fx = np.unravel_index(int(np.argmax(fine)), fine.shape)
    if fine[fy, fx] < MIN_CORRELATION:
        return None
    top, left = y0 + fy - py, x0 + fx - px
    if top < 0 or left < 0 or top + small.shape[0] > large.shape[0] or left + small.shape[1] > large.shape[1]:
        return None
    return int(top), int(left)


def crop_match(large: np.ndarray, small: np.ndarray, large_unit: np.ndarray | None = None,
               small_unit: np.ndarray | None = None, small_hash: int | None = None,
               thumbs: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[int, float] | None:
    """Hash distance and pixel correlation between ``small`` and the window of ``large`` it was
    cropped from, if one is found. ``large_unit``, ``small_unit`` (their :func:`to_unit_float`),
    ``small_hash`` (its :func:`perceptual_hash`) and ``thumbs`` (see :func:`locate_crop`) may be
    given when already computed."""
    large_unit = to_unit_float(large) if large_unit is None else large_unit
    small_unit = to_unit_float(small) if small_unit is None else small_unit
    corner = locate_crop(large_unit, small_unit, thumbs)
    if corner is None:
        return None
    top, left = corner
    window = large[top : top + small.shape[0], left : left + small.shape[1]]
    small_hash = perceptual_hash(small) if small_hash is None else small_hash
    return hamming(perceptual_hash(window), small_hash), pixel_correlation(window, small)


def pixel_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two 2-D images on one grid: both resampled (area average) to the
    smaller one's shape, its longest side at most :data:`CONFIRM_SIDE`. A flat image correlates 0."""
    rows, cols = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    shrink = min(1.0, CONFIRM_SIDE / max(rows, cols))
    size = (max(1, round(cols * shrink)), max(1, round(rows * shrink)))

    def on_grid(image: np.ndarray) -> np.ndarray:
        unit = np.ascontiguousarray(to_unit_float(image), dtype=np.float32)
        return np.asarray(Image.fromarray(unit).resize(size, Image.Resampling.BOX), dtype=np.float64).ravel()

    x, y = on_grid(a), on_grid(b)
    x, y = x - x.mean(), y - y.mean()
    norm = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / norm if norm > 0 else 0.0


def _may_be_crop(a: Fingerprint, b: Fingerprint) -> bool:
    """``b`` is smaller than ``a`` but keeps most of each side: it could be cropped from ``a``."""
    if a.shape == b.shape:
        return False
    return all(MIN_CROP_SHARE * big <= little <= big for big, little in zip(a.shape, b.shape))


def _crop_shaped(shape: tuple[int, int], others: np.ndarray) -> np.ndarray:
    """Which of ``others`` (rows of (height, width)) could be a crop of ``shape`` or the reverse:
    :func:`_may_be_crop` for many pairs at once."""
    mine = np.asarray(shape)
    same = (others == mine).all(axis=1)
    inside = ((MIN_CROP_SHARE * mine <= others) & (others <= mine)).all(axis=1)
    around = ((MIN_CROP_SHARE * others <= mine) & (mine <= others)).all(axis=1)
    return (inside | around) & ~same


def _thumbs_match(a: Fingerprint, b: Fingerprint) -> bool:
    large, small = (a, b) if a.shape[0] * a.shape[1] >= b.shape[0] * b.shape[1] else (b, a)
    return coarse_crop_score(large, small) >= MIN_SCREEN_CORRELATION


class _Pixels:
    """The images a leak search compares, with their unit-float scaling and hash, loaded once:
    an evaluation image is compared with many pretraining images (EMPS: 5,431 loads of 465
    images without this). Least recently used images go when :data:`PIXEL_MEMORY` is full."""

    def __init__(self, load: Callable[[str], np.ndarray], memory: int):
        self._load, self._memory, self._used = load, memory, 0
        self._kept: OrderedDict[str, tuple[np.ndarray, np.ndarray, int]] = OrderedDict()
        # block-mean thumbnails of the crop search, by image and block size: they go with their image
        self._thumbs: dict[str, dict[int, np.ndarray]] = {}

    def thumb(self, sample_id: str, factor: int) -> np.ndarray:
        """The image's block means of ``factor`` px (the crop search's thumbnail), made once."""
        unit = self(sample_id)[1]
        kept = self._thumbs.setdefault(sample_id, {})
        if factor not in kept:
            kept[factor] = _block_mean(unit, factor)
        return kept[factor]

    def __call__(self, sample_id: str) -> tuple[np.ndarray, np.ndarray, int]:
        if sample_id in self._kept:
            self._kept.move_to_end(sample_id)
            return self._kept[sample_id]
        image = self._load(sample_id)
        unit = to_unit_float(image)
        item = (image, unit, _dct_hash(unit))
        self._kept[sample_id] = item
        self._used += image.nbytes + unit.nbytes
        while self._used > self._memory and len(self._kept) > 1:
            old_id, (old, old_unit, _) = self._kept.popitem(last=False)
            self._used -= old.nbytes + old_unit.nbytes
            self._thumbs.pop(old_id, None)
        return item


#: Bytes of images (and their unit-float copies) a leak search keeps in memory per process.
PIXEL_MEMORY = 1 << 30
#: Pretraining images per worker process below which a leak search stays in one process.
ROWS_PER_WORKER = 64


def _compare(mine_id: str, mine: Fingerprint, eval_id: str, theirs: Fingerprint, distance: int,
             max_distance: int, pixels: _Pixels) -> Leak | None:
    """The verdict on one nominated pair: the crop search where the shapes call for it, the pixel
    comparison as the second opinion."""
    correlation: float | None = None
    found = None
    if distance > max_distance or mine.shape != theirs.shape:
        pair = None
        if _may_be_crop(mine, theirs):
            pair = (mine_id, eval_id)
        elif _may_be_crop(theirs, mine):
            pair = (eval_id, mine_id)
        if pair is not None:
            (large, large_unit, _), (small, small_unit, small_hash) = pixels(pair[0]), pixels(pair[1])
            factor = thumb_factor(large_unit.shape)
            found = crop_match(large, small, large_unit, small_unit, small_hash,
                               (pixels.thumb(pair[0], factor), pixels.thumb(pair[1], factor)))
    if found is not None and found[0] <= max(distance, max_distance):
        distance, correlation = min(distance, found[0]), found[1]
    elif distance <= max_distance:  # whole images, rescaled or not: the second opinion
        correlation = pixel_correlation(pixels(mine_id)[0], pixels(eval_id)[0])
    if correlation is not None and correlation < MIN_PIXEL_CORRELATION:
        return None
    return Leak(mine_id, eval_id, distance, correlation) if distance <= max_distance else None


def _leaks_of_rows(job: tuple[list[str], list[str], Mapping[str, Fingerprint], int,
                              Callable[[str], np.ndarray] | None]) -> list[Leak]:
    """The leaks of some pretraining images (rows) against every evaluation image; picklable, so
    rows can go to worker processes."""
    rows, evaluate, fingerprints, max_distance, load = job
    eval_hashes = np.array([fingerprints[i].hash for i in evaluate], dtype=np.uint64)
    eval_shapes = np.array([fingerprints[i].shape for i in evaluate], dtype=np.int64).reshape(-1, 2)
    pixels = _Pixels(load, PIXEL_MEMORY) if load is not None else None
    leaks: list[Leak] = []
    for pretrain_id in rows:  # one row at a time keeps memory flat for 25k x 1k comparisons
        mine = fingerprints[pretrain_id]
        distances = np.bitwise_count(eval_hashes ^ np.uint64(mine.hash))
        screened = distances <= max(max_distance, CROP_SCREEN_DISTANCE)
        # a large crop can move the whole-image hash past the screen (30 bits for a 78 % crop):
        # crop-shaped pairs beyond it are nominated by their thumbnails instead
        beyond = np.flatnonzero(~screened & _crop_shaped(mine.shape, eval_shapes))
        wide = [j for j in beyond if _thumbs_match(mine, fingerprints[evaluate[j]])]
        for j in [*np.flatnonzero(screened), *wide]:
            eval_id, distance = evaluate[j], int(distances[j])
            if pixels is None:  # the hashes alone decide
                if distance <= max_distance:
                    leaks.append(Leak(pretrain_id, eval_id, distance))
                continue
            leak = _compare(pretrain_id, mine, eval_id, fingerprints[eval_id], distance, max_distance, pixels)
            if leak is not None:
                leaks.append(leak)
    return leaks


def leaks_from_fingerprints(
    fingerprints: Mapping[str, Fingerprint],
    manifest: SplitManifest,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    load: Callable[[str], np.ndarray] | None = None,
    pretrain_pools: Iterable[str] = PRETRAIN_POOLS,
    eval_pools: Iterable[str] = EVAL_POOLS,
    workers: int | None = 1,
) -> list[Leak]:
    """Near-duplicate pairs between pools from precomputed fingerprints.

    ``load(id)`` returns an image without its data bar; it is called only for the few pairs that
    need the crop search or the pixel comparison (without it, the hashes alone decide). Ids
    without a fingerprint (unreadable images) are skipped. With ``workers`` > 1 or None (as many
    as the cores; ``load`` must then pickle), the pretraining images are shared out to spawned
    processes when there are enough of them; the result is the same.
    """
    if not 0 <= max_distance <= HASH_BITS:
        raise HarnessError(f"max_distance must be between 0 and {HASH_BITS} bits, got {max_distance}")
    pretrain = [i for pool in pretrain_pools for i in manifest.pools.get(pool, []) if i in fingerprints]
    evaluate = [i for pool in eval_pools for i in manifest.pools.get(pool, []) if i in fingerprints]
    if not pretrain or not evaluate:
        return []
    count = workers_for(len(pretrain), ROWS_PER_WORKER, workers)
    # one interleaved share of rows per process: each loads an evaluation image at most once
    mine = {i: fingerprints[i] for i in {*pretrain, *evaluate}}
    jobs = [(pretrain[k::count], evaluate, mine, max_distance, load) for k in range(count)]
    leaks = [leak for found in map_in_processes(_leaks_of_rows, jobs, per_worker=1, workers=count)
             for leak in found]
    return sorted(leaks, key=lambda leak: (leak.distance, leak.pretrain_id, leak.eval_id))


def find_leaks(
    dataset: Dataset,
    manifest: SplitManifest,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    pretrain_pools: Iterable[str] = PRETRAIN_POOLS,
    eval_pools: Iterable[str] = EVAL_POOLS,
    progress: bool = False,
) -> list[Leak]:
    """Pairs (pretraining id, validation/test id, distance) of near-duplicate micrographs.

    The pretraining side defaults to the unlabeled pool and the labeled training pool: both are
    seen during training (SSL recipes often pretrain on the training images too). Every image of
    these pools is loaded once; an empty list means no leak was found.
    """
    pretrain_pools, eval_pools = tuple(pretrain_pools), tuple(eval_pools)
    if manifest.dataset != dataset.identity:
        raise HarnessError(
            f"the split manifest belongs to {manifest.dataset.key}, not to dataset {dataset.identity.key}"
        )

    def load(sample_id: str) -> np.ndarray:
        sample = dataset.load(sample_id)
        return _without_bar(sample.image, sample.databar_rows)

    wanted = sorted({i for pool in (*pretrain_pools, *eval_pools) for i in manifest.pools.get(pool, [])})
    fingerprints = {}
    # the first pass over a dataset: embedded images are generated here, hence the progress bar
    for sample_id in tqdm(wanted, desc="leakage check", unit="img", disable=not progress, leave=False):
        sample = dataset.load(sample_id)
        fingerprints[sample_id] = fingerprint(sample.image, sample.databar_rows)
    return leaks_from_fingerprints(fingerprints, manifest, max_distance, load, pretrain_pools, eval_pools)
