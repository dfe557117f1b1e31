"""Particle metrics: exact agreement with the regionprops/brute-force reference, the rules, the errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.metrics import (
    COMPANION_METRIC,
    HEADLINE_METRIC,
    METRIC_NAMES,
    ImageScores,
    MetricsReport,
    aggregate,
    binary_to_instances,
    is_binary,
    match,
    measure_particles,
    score_image,
)
from harness.metrics.match import Overlaps
from harness.metrics.reference import reference_match, reference_score_image, reference_w1

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_labels(seed: int, shape: tuple[int, int] = (40, 48), n: int = 8, sparse_ids: bool = False) -> np.ndarray:
    """Discs and rectangles, later ones painted over earlier ones (so some are cut or split)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.int32)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    ids = rng.choice(np.arange(1, 10_000), size=n, replace=False) if sparse_ids else np.arange(1, n + 1)
    for pid in ids:
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        if rng.random() < 0.5:
            r = rng.uniform(1.5, 7)
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = pid
        else:
            labels[cy : cy + rng.integers(1, 10), cx : cx + rng.integers(1, 10)] = pid
    return labels


def perturb(truth: np.ndarray, seed: int) -> np.ndarray:
    """A plausible prediction: some particles shifted, dropped, eroded or merged; some false ones."""
    rng = np.random.default_rng(seed)
    pred = np.zeros_like(truth)
    for pid in np.unique(truth)[1:]:
        action = rng.integers(0, 4)
        if action == 0:
            continue  # missed
        region = truth == pid
        if action == 1:
            region = np.roll(region, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
        pred[region] = pid + 100 if action != 3 else 999  # action 3 merges into one id
    extra = random_labels(seed + 7, truth.shape, n=2)
    pred[(extra > 0) & (pred == 0)] = extra[(extra > 0) & (pred == 0)] + 500
    return pred


def assert_matches_reference(ours: ImageScores, ref: dict) -> None:
    for name, value in ours.model_dump().items():
        if name not in ref:
            continue
        expected = ref[name]
        if expected is None or value is None:
            assert value is None and expected is None, name
        elif isinstance(expected, list):
            np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-12, err_msg=name)
        else:
            assert value == pytest.approx(expected, rel=1e-12, abs=1e-12), name


# ---- properties against the independent reference -----------------------------------------------


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(0, 12), pixel=st.sampled_from([None, 0.37, 4.0, 25.0]),
       bar=st.integers(0, 6), sparse=st.booleans())
def test_scores_agree_with_regionprops_reference(seed: int, n: int, pixel: float | None, bar: int, sparse: bool):
    truth = random_labels(seed, n=n, sparse_ids=sparse)
    pred = perturb(truth, seed + 1)
    ours = score_image(pred, truth, pixel, databar_rows=bar)
    assert_matches_reference(ours, reference_score_image(pred, truth, pixel, bar))


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(0, 12), pixel=st.sampled_from([None, 1.5]), bar=st.integers(0, 5))
def test_areas_and_diameters_agree_with_regionprops(seed: int, n: int, pixel: float | None, bar: int):
    labels = random_labels(seed, n=n, sparse_ids=True)
    particles = measure_particles(labels, pixel, bar)
    ref = reference_score_image(labels, labels, pixel, bar)
    np.testing.assert_array_equal(particles.areas_px, ref["true_areas_px"])
    np.testing.assert_allclose(particles.sized_diameters, ref["true_diameters"], rtol=1e-12)
    assert int(particles.touches_border.sum()) == ref["n_true_border"]
    assert particles.units == ("px" if pixel is None else "nm")


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(0, 12), pixel=st.sampled_from([None, 2.0]))
def test_truth_against_itself_is_perfect(seed: int, n: int, pixel: float | None):
    truth = random_labels(seed, n=n)
    s = score_image(truth, truth, pixel)
    assert s.f1 == 1.0 and s.precision == 1.0 and s.recall == 1.0
    assert s.pixel_iou == 1.0 and s.dice == 1.0
    assert s.false_positives == 0 and s.false_negatives == 0
    if s.n_true:
        assert s.count_rel_error == 0.0 and s.mean_matched_iou == 1.0
    else:
        assert s.count_rel_error is None and s.mean_matched_iou is None
    if s.true_diameters:
        assert s.mean_diameter_rel_error == 0.0 and s.median_diameter_rel_error == 0.0 and s.size_w1_rel == 0.0


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(1, 12), data=st.data())
def test_deleting_k_of_n_particles_gives_count_error_k_over_n(seed: int, n: int, data):
    truth = random_labels(seed, n=n, sparse_ids=True)
    ids = np.unique(truth)[1:]
    k = data.draw(st.integers(0, ids.size))
    pred = truth.copy()
    pred[np.isin(pred, ids[:k])] = 0
    s = score_image(pred, truth, 3.0)
    assert s.n_true == ids.size
    assert s.count_rel_error == pytest.approx(k / ids.size, abs=0, rel=1e-15)
    assert s.count_signed_rel_error == pytest.approx(-k / ids.size, rel=1e-15)
    assert s.recall == pytest.approx((ids.size - k) / ids.size)
    assert s.precision == (1.0 if k < ids.size else None)


@SETTINGS
@given(u=st.lists(st.floats(0.1, 100), min_size=1, max_size=20),
       v=st.lists(st.floats(0.1, 100), min_size=1, max_size=20))
def test_wasserstein_reference_agrees_with_scipy(u: list[float], v: list[float]):
    from scipy.stats import wasserstein_distance

    assert reference_w1(np.array(u), np.array(v)) == pytest.approx(wasserstein_distance(u, v), rel=1e-9, abs=1e-9)


# ---- matching ------------------------------------------------------------------------------------


def test_optimal_matching_beats_greedy():
    # truth 1 overlaps pred 1 (0.6) and pred 2 (0.4); truth 2 overlaps only pred 1 (0.45).
    # Greedy by IoU takes (1, 1) and stops at one match; the optimum pairs (1, 2) and (2, 1).
    pairs = Overlaps(pred=np.array([1, 2, 1]), truth=np.array([1, 1, 2]), intersection=np.array([6, 4, 4]),
                     iou=np.array([0.6, 0.4, 0.45]))
    m = match(pairs, threshold=0.3)
    assert sorted(zip(m.pred.tolist(), m.truth.tolist())) == [(1, 2), (2, 1)]
    assert m.iou.sum() == pytest.approx(0.85)
    assert len(reference_match(np.array([[0.6, 0.45], [0.4, 0.0]]), 0.3)) == 2


def test_exact_half_iou_ties_match_one_to_one():
    truth = np.zeros((10, 10), np.int32)
    truth[2:6, 2:4] = 1
    truth[2:6, 4:6] = 2
    pred = np.zeros_like(truth)
    pred[2:6, 2:6] = 7  # IoU exactly 0.5 with each true particle
    s = score_image(pred, truth, None)
    assert s.matched == 1 and s.mean_matched_iou == 0.5
    assert s.false_negatives == 1 and s.false_positives == 0


def test_below_threshold_overlap_is_no_match():
    truth = np.zeros((12, 12), np.int32)
    truth[2:10, 2:10] = 1
    pred = np.zeros_like(truth)
    pred[2:10, 2:5] = 1  # IoU 3/8
    s = score_image(pred, truth, None)
    assert s.matched == 0 and s.f1 == 0.0 and s.mean_matched_iou is None
    assert s.pixel_iou == pytest.approx(24 / 64)


# ---- rules: border, data bar, units, empty images ------------------------------------------------


def test_border_particles_count_but_are_not_sized():
    labels = np.zeros((20, 20), np.int32)
    labels[0:3, 5:8] = 1  # top edge
    labels[8:12, 8:12] = 2
    labels[15:20, 0:2] = 3  # bottom-left corner
    p = measure_particles(labels, 2.0)
    assert p.count == 3
    assert p.touches_border.tolist() == [True, False, True]
    np.testing.assert_allclose(p.sized_diameters, [2 * math.sqrt(16 / math.pi) * 2.0])
    np.testing.assert_allclose(p.areas, [9 * 4.0, 16 * 4.0, 10 * 4.0])


def test_databar_is_excluded_everywhere_and_its_edge_is_a_border():
    truth = np.zeros((30, 20), np.int32)
    truth[5:10, 5:10] = 1
    truth[18:24, 5:10] = 2  # straddles the bar top (row 20): counted, cut, not sized
    truth[25:29, 12:16] = 3  # inside the bar: does not exist
    pred = truth.copy()
    pred[26:29, 1:4] = 9  # a "false positive" inside the bar: ignored
    s = score_image(pred, truth, 1.0, databar_rows=10)
    assert s.n_true == 2 and s.n_pred == 2 and s.n_true_border == 1
    assert s.fg_true_px == 25 + 2 * 5
    assert s.f1 == 1.0 and len(s.true_diameters) == 1
    assert score_image(pred, truth, 1.0).n_pred == 4


def test_units_follow_the_pixel_size():
    truth = random_labels(3, n=6)
    pred = perturb(truth, 4)
    px, nm = score_image(pred, truth, None), score_image(pred, truth, 2.5)
    assert (px.units, nm.units) == ("px", "nm")
    np.testing.assert_allclose(np.array(nm.true_diameters), 2.5 * np.array(px.true_diameters), rtol=1e-12)
    for name in METRIC_NAMES:  # relative scores do not depend on the unit
        assert nm.metric(name) == pytest.approx(px.metric(name), rel=1e-12)


@pytest.mark.parametrize(
    ("pred_n", "truth_n", "expected"),
    [
        (0, 0, {"count_rel_error": None, "precision": 1.0, "recall": 1.0, "f1": 1.0, "pixel_iou": 1.0,
                "dice": 1.0, "mean_matched_iou": None, "mean_diameter_rel_error": None}),
        (0, 2, {"count_rel_error": 1.0, "precision": None, "recall": 0.0, "f1": 0.0, "pixel_iou": 0.0,
                "dice": 0.0, "mean_matched_iou": None, "mean_diameter_rel_error": None}),
        (2, 0, {"count_rel_error": None, "precision": 0.0, "recall": None, "f1": 0.0, "pixel_iou": 0.0,
                "dice": 0.0, "mean_matched_iou": None, "size_w1_rel": None}),
    ],
)
def test_empty_image_rules(pred_n: int, truth_n: int, expected: dict):
    def blobs(n: int) -> np.ndarray:
        labels = np.zeros((16, 16), np.int32)
        for i in range(n):
            labels[2 + 6 * i : 5 + 6 * i, 3:7] = i + 1
        return labels

    s = score_image(blobs(pred_n), blobs(truth_n), 1.0)
    for name, value in expected.items():
        assert s.metric(name) == value, name
    assert s.count_abs_error == abs(pred_n - truth_n)
    json.dumps(s.model_dump(mode="json"), allow_nan=False)  # no NaN or inf anywhere


def test_sparse_and_huge_ids_give_the_same_scores():
    truth = random_labels(11, n=9)
    pred = perturb(truth, 12)
    big = np.where(truth > 0, truth.astype(np.int64) * 10**12, 0)
    a = score_image(pred, truth, 1.0).model_dump()
    b = score_image(pred.astype(np.uint32), big, 1.0).model_dump()
    assert a == b


def test_binary_masks_to_instances_by_connectivity():
    mask = np.zeros((6, 6), np.uint8)
    mask[1, 1] = mask[2, 2] = 255  # diagonal neighbours
    mask[4:6, 4:6] = 255
    assert is_binary(mask) and is_binary(mask > 0) and is_binary((mask > 0) * 7)  # one non-zero value
    two_ids = mask.astype(np.int32)
    two_ids[4:6, 4:6] = 3
    assert not is_binary(two_ids)
    assert binary_to_instances(mask, 4).max() == 3
    assert binary_to_instances(mask, 8).max() == 2
    with pytest.raises(HarnessError, match="connectivity"):
        binary_to_instances(mask, 6)  # type: ignore[arg-type]


def test_dropping_ids_clears_exactly_those_particles():
    from harness.data.masks import drop_ids

    labels = np.array([[0, 1, 1], [2, 2, 5], [5, 0, 1]], np.int32)
    drop = np.zeros(6, bool)
    assert drop_ids(labels, drop) is labels  # nothing dropped: the same array
    drop[[0, 2, 5]] = True  # the background entry is ignored
    out = drop_ids(labels, drop)
    assert out.tolist() == [[0, 1, 1], [0, 0, 0], [0, 0, 1]] and labels[1, 0] == 2  # the input is untouched


# ---- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "truth", "kwargs", "message"),
    [
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8), {}, "pred: expected a 2-D.*RGB"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.float32), {}, "truth: .*dtype float32"),
        (np.full((8, 8), -1, np.int16), np.zeros((8, 8), np.uint8), {}, "pred: negative label -1"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8), {}, r"shapes differ: \(8, 8\) vs \(8, 9\)"),
        (np.zeros((8, 8), bool), np.zeros((8, 8), np.uint8), {}, "pred: boolean mask"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), {"pixel_size_nm": 0.0}, "pixel size"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), {"pixel_size_nm": math.nan}, "pixel size"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), {"databar_rows": 8}, "databar_rows=8"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), {"databar_rows": -1}, "databar_rows=-1"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), {"iou_threshold": 0.0}, "iou_threshold"),
        (np.zeros((0, 8), np.uint8), np.zeros((0, 8), np.uint8), {}, "empty"),
    ],
)
def test_bad_input_is_one_clear_error(pred, truth, kwargs, message):
    kwargs = {"pixel_size_nm": None, **kwargs}
    with pytest.raises(HarnessError, match=message):
        score_image(pred, truth, **kwargs)


# ---- aggregation ---------------------------------------------------------------------------------


def _scored(n_images: int = 9) -> tuple[list[ImageScores], list[str]]:
    scores, scales = [], []
    for i in range(n_images):
        truth = random_labels(100 + i, n=6)
        pixel = [1.0, 5.0, None][i % 3]
        scores.append(score_image(perturb(truth, 200 + i), truth, pixel))
        scales.append(["high-mag", "mid-mag", "unknown"][i % 3])
    return scores, scales


def test_aggregate_groups_means_and_pooled():
    scores, scales = _scored()
    report = aggregate(scores, scales, seed=0)
    assert list(report.groups) == ["high-mag", "mid-mag", "unknown", "overall"]
    overall = report.group("overall")
    assert overall.n_images == 9 and overall.units == "mixed"
    assert report.group("unknown").units == "px" and report.group("high-mag").units == "nm"
    f1 = [s.f1 for s in scores]
    assert overall.per_image["f1"].mean == pytest.approx(np.mean(f1))
    ci = overall.per_image["f1"]
    assert ci.ci_low <= ci.mean <= ci.ci_high
    tp, n_pred, n_true = (sum(getattr(s, k) for s in scores) for k in ("matched", "n_pred", "n_true"))
    assert overall.pooled["f1"] == pytest.approx(2 * tp / (n_pred + n_true))
    assert overall.pooled["count_rel_error"] == pytest.approx(abs(n_pred - n_true) / n_true)
    assert overall.pooled["mean_diameter_rel_error"] is None  # nm and px cannot be pooled
    high = [s for s, b in zip(scores, scales) if b == "high-mag"]
    pred_d = np.concatenate([s.pred_diameters for s in high])
    true_d = np.concatenate([s.true_diameters for s in high])
    assert report.group("high-mag").pooled["mean_diameter_rel_error"] == pytest.approx(
        abs(pred_d.mean() - true_d.mean()) / true_d.mean()
    )
    assert report.overall_mean("f1") == pytest.approx(np.mean(f1))


def test_aggregate_is_deterministic_and_round_trips_through_json():
    scores, scales = _scored()
    a, b = aggregate(scores, scales, seed=3), aggregate(scores, scales, seed=3)
    assert a == b
    text = json.dumps(a.model_dump(mode="json"), allow_nan=False)
    assert MetricsReport.model_validate(json.loads(text)) == a
    c = aggregate(scores, scales, seed=4)
    assert c.group("overall").per_image["f1"].mean == a.group("overall").per_image["f1"].mean


def test_headline_and_table():
    scores, scales = _scored()
    report = aggregate(scores, scales)
    head = report.headline().model_dump(mode="json")
    assert head["metric"] == HEADLINE_METRIC == "count_rel_error"
    assert head["companion_metric"] == COMPANION_METRIC
    assert set(head["per_length_scale"]) == {"high-mag", "mid-mag", "unknown"}
    json.dumps(head, allow_nan=False)
    table = report.table()
    for word in ("high-mag", "mid-mag", "unknown", "overall", "rel. count error *", "Pooled", "mixed"):
        assert word in table
    with pytest.raises(HarnessError, match="unknown metric"):
        report.table(["nope"])


def test_summary_edge_cases():
    truth = random_labels(5, n=5)
    one = aggregate([score_image(truth, truth, 1.0)], ["high-mag"])
    f1 = one.group("overall").per_image["f1"]
    assert (f1.mean, f1.ci_low, f1.ci_high, f1.n) == (1.0, None, None, 1)
    same = aggregate([score_image(truth, truth, 1.0)] * 3, ["high-mag"] * 3)
    f1 = same.group("overall").per_image["f1"]
    assert (f1.ci_low, f1.ci_high) == (1.0, 1.0)
    empty = np.zeros_like(truth)
    undefined = aggregate([score_image(truth, empty, 1.0)] * 2, ["high-mag"] * 2)
    count = undefined.group("overall").per_image["count_rel_error"]
    assert (count.mean, count.n, count.n_undefined) == (None, 0, 2)
    with pytest.raises(HarnessError, match="undefined on every image"):
        undefined.overall_mean("count_rel_error")


@pytest.mark.parametrize(
    ("scales", "message"),
    [(["high-mag"], "1 image scores but 1"), (["nowhere", "high-mag"], "unknown length scale.*nowhere")],
)
def test_aggregate_bad_input(scales, message):
    truth = random_labels(5, n=5)
    scores = [score_image(truth, truth, 1.0)] * 2
    if len(scales) == 1:
        message = "2 image scores but 1 length scales"
    with pytest.raises(HarnessError, match=message):
        aggregate(scores, scales)
    with pytest.raises(HarnessError, match="no images"):
        aggregate([], [])
