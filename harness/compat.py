"""Make torchvision importable next to a CPU-only build of torch.

PyPI's torchvision 0.28.0 wheel is built against CUDA torch. Next to the CPU build of torch its
compiled extension does not load, and ``import torchvision`` (hence ``import timm`` and
``import lightly``) dies with "operator torchvision::nms does not exist" (pytorch/vision#9085),
because torchvision registers Python fake kernels for operators whose schemas came from ``_C.so``.

:func:`ensure_torchvision` must run before torchvision is first imported. It first tries to load
torchvision's own ``_C.so``; only when that fails does it define the two operator schemas that
torchvision's import needs (``nms`` and ``qnms``) with a plain CPU kernel for ``nms``. Where
torchvision loads normally (a matching build, a GPU machine), it does nothing.
Afterwards ``torchvision.io`` and ``deform_conv2d`` stay unavailable; harness reads images with
tifffile and Pillow and never needs them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_done = False
_library = None  # keeps the torch.library.Library alive: dropping it unregisters the schemas


def _nms_cpu(boxes, scores, iou_threshold: float):
    import torch

    order = scores.argsort(descending=True)
    boxes = boxes[order]
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    keep = torch.ones(len(boxes), dtype=torch.bool)
    for i in range(len(boxes)):
        if not keep[i]:
            continue
        xx1 = torch.maximum(x1[i], x1[i + 1 :])
        yy1 = torch.maximum(y1[i], y1[i + 1 :])
        xx2 = torch.minimum(x2[i], x2[i + 1 :])
        yy2 = torch.minimum(y2[i], y2[i + 1 :])
        inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
        iou = inter / (areas[i] + areas[i + 1 :] - inter)
        keep[i + 1 :] &= iou <= iou_threshold
    return order[keep]


def ensure_torchvision() -> None:
    """Prepare torch so that ``import torchvision`` succeeds; idempotent, a no-op where not needed."""
    global _done, _library
    if _done or "torchvision" in sys.modules:
        _done = True
        return
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:  # torchvision absent: nothing to prepare
        _done = True
        return
    if _has_op("nms"):
        _done = True
        return
    for so in sorted(Path(spec.origin).parent.glob("_C*.so")):
        try:
            torch.ops.load_library(str(so))
        except (OSError, RuntimeError):
            continue
        if _has_op("nms"):
            _done = True
            return
    _library = torch.library.Library("torchvision", "DEF")
    _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.define(
        "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
    )
    _library.impl("nms", _nms_cpu, "CPU")
    _done = True


def _has_op(name: str) -> bool:
    import torch

    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True
