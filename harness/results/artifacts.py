"""What a run folder keeps beside its record, so that a person can look and a lab can apply:

- ``predictions/<id>.png``: the predicted instance mask of every test image (16-bit PNG, 0 =
  background, one id per particle), exactly the masks the record's scores were computed from;
- ``overlay.png``: a montage of a few test images per length-scale bin with true (blue) and
  predicted (orange) outlines;
- ``model.safetensors`` and ``model.json``: the fine-tuned network (or an ensemble's networks, their
  weights under ``members.K.``) and its card (task, backbone, method, record id, input scaling,
  working resolution, tuned post-processing, ensemble size above 1, weights digest),
  everything :func:`load_model` (and ``harness predict``) needs to apply it to new micrographs.

They are written before ``record.json``, so a record never stands without them.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np

from harness.data.intensity import to_unit_float
from harness.data.io import write_bytes_atomic, write_text_atomic
from harness.data.sample import Sample
from harness.errors import HarnessError

PREDICTIONS_DIR = "predictions"
OVERLAY_FILE = "overlay.png"
MODEL_FILE = "model.safetensors"
CARD_FILE = "model.json"
#: Test images per length-scale bin in the overlay montage.
PANELS_PER_BIN = 2
CARD_VERSION = 1
INPUT_SCALING = ("harness.data.intensity.to_unit_float: 8-bit / 255, other depths a 0.5-99.5 percentile "
                 "stretch, over the rows above the data bar; the data bar rows are cut before the network")


def encode_labels(labels: np.ndarray) -> bytes:
    """An instance mask as a 16-bit grey PNG (ids above 65535 cannot be stored and are refused)."""
    if labels.size and int(labels.max()) > np.iinfo(np.uint16).max:
        raise HarnessError(f"{int(labels.max())} instances do not fit a 16-bit mask")
    buffer = io.BytesIO()
    iio.imwrite(buffer, labels.astype(np.uint16), extension=".png")
    return buffer.getvalue()


def read_labels(path: Path) -> np.ndarray:
    return np.asarray(iio.imread(path)).astype(np.int32)


class Predictions:
    """The predicted masks of one split, kept as PNG bytes while the split is scored, and the
    montage panels (the first :data:`PANELS_PER_BIN` images of each bin)."""

    def __init__(self) -> None:
        self.encoded: dict[str, bytes] = {}
        self.panels: list[tuple[np.ndarray, np.ndarray | None, np.ndarray, str]] = []
        self._per_bin: dict[str, int] = {}

    def keep(self, sample: Sample, labels: np.ndarray) -> None:
        self.encoded[sample.id] = encode_labels(labels)
        scale = sample.length_scale
        if self._per_bin.get(scale, 0) < PANELS_PER_BIN:
            self._per_bin[scale] = self._per_bin.get(scale, 0) + 1
            self.panels.append((to_unit_float(sample.image), sample.mask, labels, f"{sample.id} ({scale})"))

    def write(self, out: Path) -> None:
        from harness.results.plots import overlay_montage

        for sample_id, data in self.encoded.items():
            write_bytes_atomic(out / PREDICTIONS_DIR / f"{sample_id}.png", data)
        if self.panels:
            overlay_montage(self.panels, out / OVERLAY_FILE)


def write_model(out: Path, state: Mapping[str, Any], card: dict[str, Any]) -> None:
    """The network's weights and its card (with the weights' sha256), the weights first."""
    from safetensors.torch import save

    payload = save({k: v.detach().cpu().contiguous() for k, v in state.items()})
    write_bytes_atomic(out / MODEL_FILE, payload)
    card = {"card_version": CARD_VERSION, **card, "weights_sha256": hashlib.sha256(payload).hexdigest()}
    write_text_atomic(out / CARD_FILE, json.dumps(card, indent=2, sort_keys=True) + "\n")


def _check_card(card: Any, path: Path) -> None:
    """The card's fields that decide how images are read, checked before they are used (the weights are
    checked by digest; the card, a text file, can be edited)."""
    def bad(field: str, why: str) -> HarnessError:
        return HarnessError(f"{path}: {field} {why} (damaged or edited; the run's record states the true value)")

    if not isinstance(card, dict):
        raise HarnessError(f"{path}: not a model card (a JSON object is expected)")
    for field in ("backbone", "task"):
        if not isinstance(card.get(field), str) or not card[field]:
            raise bad(field, f"is {card.get(field)!r}, not a name")
    scale = card.get("working_scale")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
        raise bad("working_scale", f"is {scale!r}, not a factor in (0, 1]")
    for field in ("second_look_px", "budget_median_diameter_px"):  # both optional (older cards lack them)
        size = card.get(field)
        if size is not None and (isinstance(size, bool) or not isinstance(size, (int, float)) or not size > 0):
            raise bad(field, f"is {size!r}, not a positive size in px")
    if not isinstance(card.get("postprocess"), dict):
        raise bad("postprocess", f"is {card.get('postprocess')!r}, not the tuned parameters")
    members = card.get("ensemble", 1)  # stated only for an ensemble (harness.models.ensemble)
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise bad("ensemble", f"is {members!r}, not a number of networks")


def load_model(run_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The fine-tuned network of a run folder and its card; one-line refusals for what is missing
    or damaged."""
    from safetensors.torch import load

    from harness.models import Ensemble
    from harness.task import get_task
    from harness.training.loop import build_segmentation_net

    card_path, weights_path = Path(run_dir) / CARD_FILE, Path(run_dir) / MODEL_FILE
    if not card_path.is_file() or not weights_path.is_file():
        raise HarnessError(f"{run_dir}: no {MODEL_FILE} with its {CARD_FILE} (a reference row has no model, and "
                           "runs made before models were kept have none): run it again to get one")
    try:
        card = json.loads(card_path.read_text())
    except ValueError as err:
        raise HarnessError(f"{card_path}: not readable JSON ({err})") from None
    _check_card(card, card_path)
    payload = weights_path.read_bytes()
    if hashlib.sha256(payload).hexdigest() != card.get("weights_sha256"):
        raise HarnessError(f"{weights_path}: its bytes do not match the sha256 in {CARD_FILE} (damaged or edited)")
    try:
        nets = [build_segmentation_net(card["backbone"], None, get_task(card["task"]))
                for _ in range(card.get("ensemble", 1))]
    except HarnessError as err:
        raise HarnessError(f"{card_path}: {err}") from None
    net = Ensemble(nets) if len(nets) > 1 else nets[0]
    try:
        net.load_state_dict(load(payload), strict=True)
    except RuntimeError:  # the weights are vouched for by their digest: the card's shape fields were edited
        raise HarnessError(f"{card_path}: its backbone, task or ensemble size does not fit {MODEL_FILE}'s "
                           "weights (damaged or edited; the run's record states the true values)") from None
    net.eval()
    return net, card
