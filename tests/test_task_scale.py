"""The working resolution: chosen from the budget's masks, applied to images and masks alike, and
undone on predictions so that scoring happens in the original pixels."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from harness.data.sample import Sample
from harness.errors import HarnessError
from harness.evaluation.predict import predict_maps
from harness.task import get_task
from harness.task.scale import (
    MIN_SIDE_PX,
    area_weighted_width_px,
    median_diameter_px,
    probe_scale,
    resample_image,
    resample_labels,
    restore_labels,
    second_look_scale,
    working_scale,
)


def disks(radius: int, shape=(200, 200)) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.int32)
    for label, (r, c) in enumerate([(50, 50), (50, 150), (150, 100)], start=1):
        rr, cc = disk((r, c), radius, shape=shape)
        mask[rr, cc] = label
    return mask


def test_median_diameter_is_the_equivalent_diameter():
    mask = disks(20)
    area = (mask == 1).sum()
    assert median_diameter_px([mask]) == pytest.approx(2 * np.sqrt(area / np.pi))
    assert median_diameter_px([np.zeros((5, 5), dtype=np.int32)]) is None


def test_small_particles_keep_native_pixels_and_large_ones_are_shrunk_to_the_target():
    assert working_scale(30.0, 48, 32) == 1.0 and working_scale(None, 48, 32) == 1.0
    assert working_scale(128.0, 48, 32) == pytest.approx(0.25)
    with pytest.raises(HarnessError):
        working_scale(100.0, 30, 40)


def test_resampled_masks_keep_their_particles_and_the_diameter_lands_on_the_target():
    mask = disks(40)
    scale = working_scale(median_diameter_px([mask]), 48, 32)
    small = resample_labels(mask, scale)
    assert small.dtype == mask.dtype and set(np.unique(small)) == set(np.unique(mask))
    assert median_diameter_px([small]) == pytest.approx(32, rel=0.05)
    image = resample_image((mask > 0).astype(np.float32), scale)
    assert image.shape == small.shape and 0 <= image.min() and image.max() <= 1


def test_restored_labels_are_back_in_the_original_pixels():
    mask = disks(40)
    small = resample_labels(mask, 0.25)
    back = restore_labels(small, mask.shape)
    assert back.shape == mask.shape
    agreement = (back == mask).mean()
    assert agreement > 0.97  # only edge pixels of a 4x round trip differ
    assert restore_labels(mask, mask.shape) is mask


def test_the_area_weighted_width_follows_the_large_particle_not_its_fragments():
    mask = np.zeros((400, 400), dtype=np.int32)
    rr, cc = disk((200, 200), 100, shape=mask.shape)
    mask[rr, cc] = 1
    for k in range(20):  # twenty 3 px shards: the median particle is a shard, the pixels are the disk's
        mask[5 + 4 * k: 8 + 4 * k, 5:8] = k + 2
    big = 2 * np.sqrt((mask == 1).sum() / np.pi)
    assert median_diameter_px([mask]) < 5
    assert area_weighted_width_px(mask) == pytest.approx(big, rel=0.02)
    assert area_weighted_width_px(np.zeros((4, 4), dtype=np.int32)) is None


def test_the_second_look_only_shrinks_images_whose_particles_came_out_too_large():
    native = disks(60, shape=(600, 600))  # 120 px particles in the image's own pixels
    d = area_weighted_width_px(native)
    assert second_look_scale(native, 1.0, 32) == 1.0  # a run at native pixels never looks twice
    assert second_look_scale(native, 32 / d, 32) == pytest.approx(32 / d)  # already at the target
    assert second_look_scale(native, 0.5, 32) == pytest.approx(32 / d, abs=1e-4)  # 60 px at 0.5: shrunk to 32
    assert second_look_scale(native, 0.3, 32) == 0.3  # 36 px at 0.3: within the margin (1.25 x 32)
    assert second_look_scale(np.zeros((600, 600), dtype=np.int32), 0.5, 32) == 0.5  # nothing found: no look
    assert second_look_scale(disks(20, shape=(600, 600)), 0.9, 32) == 0.9  # 36 px at 0.9 is within the margin
    huge = np.ones((200, 200), dtype=np.int32)  # one particle filling the image: the short side keeps 64 px
    assert second_look_scale(huge, 0.5, 8) == pytest.approx(MIN_SIDE_PX / 200)


def mask_sample(mask: np.ndarray, sample_id: str) -> Sample:
    """A sample whose image is its own foreground, for the stand-in network to read the truth from."""
    return Sample(id=sample_id, image=(mask > 0).astype(np.float32), mask=mask, pixel_size_nm=None)


def disk_sample(radius: int) -> Sample:
    return mask_sample(disks(radius, shape=(640, 640)), f"r{radius}")


def recording_network(shatter_above: float = 1.0):
    """A stand-in network whose maps are the true mask's at each factor it is asked for (it records them);
    above ``shatter_above`` it breaks every particle into 8 px shards, as a network does with particles
    too large for it."""
    looked: list[float] = []

    def look(net, sample, runtime, task, scale):
        looked.append(scale)
        labels = resample_labels(sample.truth, scale)
        if scale > shatter_above:
            rows, cols = np.indices(labels.shape)
            labels = np.where(labels > 0, 1 + (rows // 8) * 1000 + cols // 8, 0).astype(np.int32)
        return task.truth_maps(labels)

    return look, looked


def test_an_image_of_large_particles_is_predicted_again_at_its_own_factor():
    task, sample = get_task("distmap-v2"), disk_sample(80)
    oracle, looked = recording_network()
    maps = predict_maps(None, sample, None, task, 0.8, 32.0, oracle)
    own = looked[-1]
    assert looked[:2] == [0.8, probe_scale(0.8, sample.truth.shape)] == [0.8, 0.4] and own < 0.4
    assert area_weighted_width_px(resample_labels(sample.truth, own)) == pytest.approx(32, rel=0.1)
    assert maps.shape[1:] == resample_labels(sample.truth, own).shape
    looked.clear()
    predict_maps(None, sample, None, task, 0.8, None, oracle)  # no target: the run's factor only
    predict_maps(None, sample, None, task, 1.0, 32.0, oracle)  # native pixels: never a second look
    assert looked == [0.8, 1.0]


def test_a_particle_shattered_at_the_run_factor_is_sized_from_the_coarser_look():
    """Shards pass for small particles, but at half the factor the particle is seen whole: the wider
    estimate wins, and the image is shrunk to the target."""
    task, sample = get_task("distmap-v2"), disk_sample(80)
    shattering, looked = recording_network(shatter_above=0.5)
    predict_maps(None, sample, None, task, 0.8, 32.0, shattering)
    assert looked[:2] == [0.8, 0.4] and len(looked) == 3
    assert area_weighted_width_px(resample_labels(sample.truth, looked[-1])) == pytest.approx(32, rel=0.1)
    looked.clear()  # particles already right at the run's factor keep it, after the probe
    predict_maps(None, disk_sample(12), None, task, 0.8, 32.0, shattering)
    assert looked == [0.8, 0.4]


def rod_and_blob(shape=(640, 640)) -> tuple[np.ndarray, np.ndarray]:
    """A 600 x 40 px rod, and a disk of the same area (so of the same equivalent diameter, 175 px)."""
    rod = np.zeros(shape, dtype=np.int32)
    rod[300:340, 20:620] = 1
    blob = np.zeros(shape, dtype=np.int32)
    rr, cc = disk((320, 320), np.sqrt(rod.sum() / np.pi), shape=shape)
    blob[rr, cc] = 1
    return rod, blob


def test_a_rod_is_sized_by_its_thickness_so_the_second_look_does_not_thin_it_away():
    """The network must see across a particle, not along it: a rod 40 px thick shown at half its size is
    20 px thick and needs no second look, while its equivalent diameter (175 px) would have shrunk it to
    7 px. A round particle of the same area is shrunk as before."""
    rod, blob = rod_and_blob()
    assert area_weighted_width_px(rod) == pytest.approx(40, abs=2)
    assert area_weighted_width_px(blob) == pytest.approx(2 * np.sqrt(rod.sum() / np.pi), rel=0.02)
    assert second_look_scale(rod, 0.5, 32) == 0.5
    assert second_look_scale(blob, 0.5, 32) == pytest.approx(32 / area_weighted_width_px(blob), abs=1e-4)
    task = get_task("distmap-v2")
    oracle, looked = recording_network()
    predict_maps(None, mask_sample(rod, "rod"), None, task, 0.5, 32.0, oracle)
    assert looked == [0.5, 0.25]  # the look and the probe, and no third look


@pytest.mark.parametrize("name", ["synthetic-sem", "synthetic-tem", "synthetic-nanowire"])
def test_no_embedded_instance_dataset_resamples_so_the_second_look_never_acts_on_it(name):
    """Why the second look is keyed by the folder version and not the numerics version
    (harness/numerics.py): at every budget the embedded datasets' particles fit the network's view."""
    from harness.data.registry import open_dataset
    from harness.data.splits import Budget, make_manifest
    from harness.training.settings import PROFILE_SETTINGS

    dataset = open_dataset(name, profile="smoke")
    manifest = make_manifest(dataset, 0)
    settings = PROFILE_SETTINGS["smoke"]
    for budget in ("1%", "10%", "100%"):
        ids = manifest.budget_ids(Budget.parse(budget), None)
        diameter = median_diameter_px(dataset.load(i).truth for i in ids)
        assert working_scale(diameter, settings.scale_max_diameter_px, settings.scale_target_diameter_px) == 1.0


def test_fine_tuning_shows_each_labelled_image_at_the_factor_its_second_look_would_reach():
    """Training and prediction agree on sizes: an image whose true particles would be shrunk further by
    the second look is stored for fine-tuning at that factor; the others at the run's factor."""
    from harness.training.batches import ImageStore

    samples = {"large": Sample(id="large", image=np.zeros((600, 600), np.float32), mask=disks(60, (600, 600)),
                               pixel_size_nm=None),
               "small": Sample(id="small", image=np.zeros((600, 600), np.float32), mask=disks(20, (600, 600)),
                               pixel_size_nm=None)}

    class Folder:
        def load(self, sample_id):
            return samples[sample_id]

    task = get_task("distmap-v2")
    own = second_look_scale(samples["large"].mask, 0.5, 32.0)
    assert own < 0.5
    looked = ImageStore(Folder(), ["large", "small"], task, scale=0.5, second_look_px=32.0)
    image, target = looked.get("large")
    assert image.shape == resample_labels(samples["large"].mask, own).shape == target.shape[:2]
    assert looked.get("small")[0].shape == (300, 300)  # 20 px at 0.5: within the margin, the run's factor
    single = ImageStore(Folder(), ["large", "small"], task, scale=0.5)
    assert single.get("large")[0].shape == (300, 300)
    native = ImageStore(Folder(), ["large"], task, scale=1.0, second_look_px=32.0)  # a native run never looks
    assert native.get("large")[0].shape == (600, 600)
