"""Printed marks (harness.data.printed): a predicted particle on a scale bar or its label is not
counted on a folder image, and nothing changes where a dataset never draws print.

The images carry a drawn bar and label at known places; the OCR is the real one."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from harness.data import printed, scalebar
from harness.data.printed import PRINT_SHARE, drop_printed, printed_mask
from harness.data.registry import open_dataset
from harness.data.sample import Sample
from harness.evaluation.predict import labels_from_maps
from tests.test_scalebar import draw_bar, field


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(printed, "_seen", {})


def folder_sample(image: np.ndarray, databar_rows: int = 0) -> Sample:
    return Sample(id="panel", image=image, mask=None, pixel_size_nm=None, databar_rows=databar_rows,
                  may_carry_print=True)


def test_the_mask_covers_the_bar_and_its_label_and_nothing_else(fresh_cache):
    image = draw_bar(field(), left=40, top=200, width=100, label="200 nm")
    marks = printed_mask(folder_sample(image))
    assert marks is not None and marks.shape == image.shape
    assert marks[200:206, 40:140].all()  # the bar
    assert marks[175:195, 50:110].mean() > 0.9  # its label, 22 px type above it
    assert not marks[:150].any() and not marks[:, 200:].any()  # the specimen field carries no print


def test_a_sample_that_cannot_carry_print_is_left_alone_without_an_ocr(fresh_cache, monkeypatch):
    monkeypatch.setattr(scalebar, "rapid_ocr", lambda: pytest.fail("no OCR for a synthetic image"))
    image = draw_bar(field(), left=40, top=200, width=100, label="200 nm")
    synthetic = Sample(id="s", image=image, mask=None, pixel_size_nm=1.0)
    labels = np.zeros(image.shape, np.int32)
    labels[198:208, 40:140] = 1
    assert printed_mask(synthetic) is None and drop_printed(labels, synthetic) is labels


def expected_kept(labels: np.ndarray, marks: np.ndarray) -> set[int]:
    """The ids kept, one particle at a time (the independent computation)."""
    return {int(i) for i in np.unique(labels[labels > 0]) if marks[labels == i].mean() < PRINT_SHARE}


def test_particles_on_print_are_dropped_and_the_others_kept(fresh_cache):
    image = draw_bar(field(), left=40, top=200, width=100, label="200 nm")
    sample = folder_sample(image)
    labels = np.zeros(image.shape, np.int32)
    labels[198:208, 60:120] = 1  # on the bar
    labels[20:50, 20:50] = 2  # on the specimen
    labels[190:200, 130:190] = 3  # a corner on the end of the bar, the rest beside it: kept
    labels[60:90, 250:280] = 4
    marks = printed_mask(sample)
    assert marks is not None
    kept = drop_printed(labels, sample)
    assert set(np.unique(kept[kept > 0]).tolist()) == expected_kept(labels, marks) == {2, 3, 4}
    assert (kept[labels != 1] == labels[labels != 1]).all() and not kept[labels == 1].any()


def test_the_boxes_are_found_once_per_image_content(fresh_cache, monkeypatch):
    image = draw_bar(field(), left=40, top=200, width=100, label="200 nm")
    first = printed.printed_boxes(folder_sample(image))
    monkeypatch.setattr(scalebar, "rapid_ocr", lambda: pytest.fail("the memo on disk is read instead"))
    monkeypatch.setattr(printed, "_seen", {})  # a new process: only the disk memo is left
    assert printed.printed_boxes(folder_sample(image.copy())) == first and first
    other = image.copy()
    other[0, 0] ^= 1  # other content: found again
    with pytest.raises(pytest.fail.Exception, match="memo on disk"):
        printed.printed_boxes(folder_sample(other))


def test_a_folder_images_predicted_particles_on_print_are_not_counted(fresh_cache, tmp_path):
    from PIL import Image

    root = tmp_path / "mine"
    (root / "images").mkdir(parents=True)
    image = draw_bar(field(), left=40, top=200, width=100, label="200 nm")
    Image.fromarray(image).save(root / "images" / "panel.png")
    sample = open_dataset(str(root)).load("panel")
    assert sample.may_carry_print
    found = np.zeros(image.shape, np.int32)
    found[198:208, 60:120] = 1  # what a network takes the bar for
    found[20:50, 20:50] = 2
    task = SimpleNamespace(to_instances=lambda maps, params: found)
    labels = labels_from_maps(np.zeros((2, *image.shape), np.float32), sample, task)  # type: ignore[arg-type]
    assert set(np.unique(labels[labels > 0]).tolist()) == {2}


def test_what_is_taken_for_print_is_scored_on_neither_side(fresh_cache):
    """The OCR can take a clump of real particles for type (BAM's TiO2 clump read as "8"): a prediction
    loses its particles there, and the truth must lose its own too, or every method (and the oracle)
    is charged for particles no prediction may keep."""
    from harness.evaluation.predict import score_labels
    from harness.metrics import score_image
    from harness.task.scale import labels_from_instances

    image = draw_bar(field(), left=40, top=200, width=100, label="200 nm")
    truth = np.zeros(image.shape, np.int32)
    truth[198:208, 60:120] = 1  # a labelled particle where print is found
    truth[20:50, 20:50] = 2
    truth[60:90, 250:280] = 3
    sample = Sample(id="panel", image=image, mask=truth, pixel_size_nm=None, may_carry_print=True)
    labels = labels_from_instances(truth.copy(), sample)  # a perfect prediction, read as every prediction is
    assert set(np.unique(labels[labels > 0]).tolist()) == {2, 3}  # its particle on print is not kept
    scores = score_labels(labels, sample)
    assert (scores.n_true, scores.n_pred, scores.matched, scores.count_rel_error) == (2, 2, 2, 0.0)
    # the independent computation: both sides without the particle, scored by the plain metric
    both = truth.copy()
    both[both == 1] = 0
    assert scores == score_image(labels, both, None, 0)
    assert score_image(labels, truth, None, 0).n_true == 3  # what scoring the whole truth charged


def test_a_sample_that_cannot_carry_print_is_scored_against_its_whole_truth(fresh_cache, monkeypatch):
    from harness.evaluation.predict import score_labels
    from harness.metrics import score_image

    monkeypatch.setattr(scalebar, "rapid_ocr", lambda: pytest.fail("no OCR for a synthetic image"))
    image = draw_bar(field(), left=40, top=200, width=100, label="200 nm")
    truth = np.zeros(image.shape, np.int32)
    truth[198:208, 60:120] = 1
    sample = Sample(id="s", image=image, mask=truth, pixel_size_nm=1.0)
    assert score_labels(truth, sample) == score_image(truth, truth, 1.0, 0)


def test_only_type_sized_text_and_bars_clear_of_the_frame_count_as_print():
    from harness.data.scalebar import Text

    image = field((200, 300))
    image[100:104, 60:160] = 255  # a scale bar
    image[0:3, 200:230] = 255  # a bright line along the top edge: the frame, not a bar
    image[150:152, 250:262] = 255  # 12 px: a particle's edge more likely than a bar

    def ocr(gray, zoom=1):  # what the real OCR was seen to return on EMPS figures
        return [Text("A", 10, 10, 30, 25),  # a panel letter: print
                Text("：", -16, -16, 216, 316),  # the whole image, from the OCR's edge padding
                Text("00", 40, 150, 100, 260)]  # two round particles, 60 px tall (30% of the image)

    boxes = scalebar.printed_boxes(image, ocr, pad=0)
    assert sorted(boxes) == [(10, 10, 31, 26), (100, 60, 105, 161)]
