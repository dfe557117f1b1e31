"""``harness run --task classify``: a run of the classification task (:mod:`harness.task.classify`).

The same pretraining (and cache) as segmentation; then, with the encoder frozen, features of the
budget's images, the validation images and the test images; the probe's L2 strength and kNN's k
are chosen on validation; the test split is read once, at the end. The record states task
``classify-v1`` in its settings, so its tables are never those of a segmentation task.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tabulate import tabulate

from harness.data.base import image_classes
from harness.data.splits import Budget
from harness.errors import HarnessError
from harness.methods.base import SSLMethod
from harness.methods.registry import MethodEntry
from harness.metrics.classification import ACCURACY, MACRO_F1, READERS, ClassificationReport, classification_report
from harness.models import create_backbone
from harness.pipeline import (
    Context,
    RunRequest,
    common_record_fields,
    obtain_encoder,
    record_settings,
    resumed_stages,
    write_run,
)
from harness.results.record import RunRecord, Selection
from harness.task.classify import CLASSIFY_TASK, Reader, class_indices, image_features, knn, linear_probe


def run_classify(request: RunRequest, ctx: Context, entry: MethodEntry, method: SSLMethod, budget: Budget,
                 log) -> RunRecord:
    """Run one classification cell and write its run folder; returns the record."""
    classes_of = image_classes(ctx.dataset)
    if classes_of is None:
        raise HarnessError(f"dataset {ctx.dataset.identity.name} has no image classes to classify (a 'category' "
                           "column); use synthetic-nanowire, or --task segment")
    if method.role == "reference":
        raise HarnessError(f"{entry.name} is a segmentation reference row; it has no classification counterpart")
    budget_ids = ctx.budget_ids(budget)
    classes = sorted({classes_of[i] for i in budget_ids})
    if len(classes) < 2:
        raise HarnessError(f"label budget {budget.text} holds images of one class only ({classes[0]}): a "
                           "classifier needs at least two; use a per-class budget like 1/class")
    if method.pretrains:
        ctx.check_leakage(request.allow_leakage, log, request.progress)
    state, pretrain_info, pretrain_s = obtain_encoder(entry, method, ctx, request.seed, request.progress, log,
                                                      request.checkpoint_every)
    start = time.perf_counter()
    torch.manual_seed(request.seed)  # `none`: the random encoder of this seed
    encoder = ctx.runtime.prepare(create_backbone(ctx.settings.backbone, in_chans=1))
    if state is not None:
        encoder.load_state_dict(state, strict=True)
    val_ids, test_ids = ctx.manifest.pools["val"], ctx.manifest.pools["test"]
    if not val_ids or not test_ids:
        raise HarnessError("the validation and test pools must both hold images: the readers are chosen on "
                           "validation and scored on test")

    def features(ids: list[str]) -> np.ndarray:
        return image_features(encoder, ctx.dataset, ids, ctx.runtime)

    train_x, val_x = features(budget_ids), features(val_ids)
    train_y = class_indices([classes_of[i] for i in budget_ids], classes)
    val_y = class_indices([classes_of[i] for i in val_ids], classes)
    readers: dict[str, Reader] = {
        "probe": linear_probe(train_x, train_y, val_x, val_y, len(classes), request.seed),
        "knn": knn(train_x, train_y, val_x, val_y, len(classes)),
    }
    log(f"readers chosen on validation: probe L2 {readers['probe'].param:g} (accuracy "
        f"{readers['probe'].val_accuracy:.3f}), kNN k={readers['knn'].param:g} ({readers['knn'].val_accuracy:.3f})")
    fit_s = time.perf_counter() - start

    start = time.perf_counter()  # the test split, once
    test_x = features(test_ids)
    predicted = {name: reader.predict(test_x) for name, reader in readers.items()}
    index = ctx.dataset.index()  # the pixel sizes, without decoding the test images a second time
    pixel_sizes = {i: None if v is None or v != v else float(v)  # NaN: unknown
                   for i, v in zip(index["id"], index["pixel_size_nm"], strict=True)}
    per_image = []
    for k, sample_id in enumerate(test_ids):
        row = {"id": sample_id, "length_scale": ctx.manifest.length_scales[sample_id],
               "pixel_size_nm": pixel_sizes[sample_id], "truth": classes_of[sample_id],
               **{name: classes[int(predicted[name][k])] for name in READERS}}
        per_image.append({**row, ACCURACY: float(row["truth"] == row[READERS[0]])})
    class_indices([str(r["truth"]) for r in per_image], classes)  # a test class the budget lacks is refused
    metrics, headline = classification_report(per_image, classes, seed=request.split_seed)
    evaluate_s = time.perf_counter() - start

    settings = {**record_settings(ctx.settings, method.pretrains), "task": CLASSIFY_TASK}
    record = RunRecord(
        **common_record_fields(request, ctx, entry, method, budget, budget_ids),
        settings=settings,
        pretrain=pretrain_info,
        postprocess={"task": CLASSIFY_TASK, "params": {"probe_l2": readers["probe"].param,
                                                       "knn_k": int(readers["knn"].param)},
                     "val_accuracy": {name: r.val_accuracy for name, r in readers.items()}},
        selection=Selection(criterion="validation accuracy (the probe's L2 strength, kNN's k)", best_step=None,
                            best_score=readers["probe"].val_accuracy, stopped_early=False, finetune_steps_run=0),
        metrics=metrics,
        test_length_scales=[r["length_scale"] for r in per_image],
        headline=headline,
        timings_s={"pretrain": round(pretrain_s, 3), "fit": round(fit_s, 3), "evaluate": round(evaluate_s, 3)},
        resumed_from=resumed_stages(pretrain_info),
    )
    write_run(request, record, per_image, log)
    return record


def scores_table(metrics: ClassificationReport) -> str:
    """A classification record's test scores as text: readers x groups, accuracy and macro-F1."""
    rows = []
    for name, groups in metrics.readers.items():
        for group, scores in groups.items():
            row: dict[str, object] = {"reader": name, "group": group, "n images": scores.n_images}
            for metric, s in ((ACCURACY, scores.accuracy), (MACRO_F1, scores.macro_f1)):
                ci = "" if s.ci_low is None else f" [{s.ci_low:.3f}, {s.ci_high:.3f}]"
                row[metric.replace("_", "-")] = f"{s.mean:.3f}{ci}"
            rows.append(row)
    return tabulate(rows, headers="keys") + f"\n\nclasses: {', '.join(metrics.classes)}; 95% bootstrap CIs"
