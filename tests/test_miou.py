"""mIoU from a confusion matrix, checked against a hand-computed example, and the segmentation task's
per-image loss and confidence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from albench.tasks import ConfusionMeter, SegmentationTask, confusion_matrix, iou_from_confusion, make_task

# 2 x 3 maps of 3 classes; 255 is ignored.
TARGET = torch.tensor([[[0, 0, 1], [1, 2, 255]]])
PRED = torch.tensor([[[0, 1, 1], [2, 2, 0]]])
# by hand, rows = true class, columns = predicted (the ignored pixel, predicted 0, is not counted):
#   true 0: predicted 0 once, 1 once        -> [1, 1, 0]
#   true 1: predicted 1 once, 2 once        -> [0, 1, 1]
#   true 2: predicted 2 once                -> [0, 0, 1]
HAND_CM = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]])
# IoU_c = TP / (row + column - TP): class 0: 1 / (2 + 1 - 1), class 1: 1 / (2 + 2 - 1), class 2: 1 / (1 + 2 - 1)
HAND_IOU = [1 / 2, 1 / 3, 1 / 2]
HAND_MIOU = (1 / 2 + 1 / 3 + 1 / 2) / 3  # 4/9


def _logits(pred: torch.Tensor, classes: int) -> torch.Tensor:
    """(B, C, H, W) scores whose argmax is ``pred``."""
    return F.one_hot(pred, classes).permute(0, 3, 1, 2).float() * 5.0


def test_confusion_matrix_matches_the_hand_count():
    cm = confusion_matrix(PRED, TARGET, 3, ignore_index=255)
    assert cm.dtype == torch.int64
    assert cm.numpy().tolist() == HAND_CM.tolist()


def test_iou_and_miou_match_the_hand_computation():
    miou, per_class = iou_from_confusion(HAND_CM)
    assert per_class == pytest.approx(HAND_IOU)
    assert miou == pytest.approx(4 / 9) and miou == pytest.approx(HAND_MIOU)


def test_meter_accumulates_batches_and_reports_per_class_iou():
    meter = SegmentationTask(3, 255).meter()
    # the same two images fed in two batches: the matrix doubles, the IoUs stay
    meter.update(_logits(PRED, 3), TARGET)
    meter.update(_logits(PRED, 3), TARGET.to(torch.uint8))  # uint8 maps, as the datasets store them
    assert meter.confusion().tolist() == (2 * HAND_CM).tolist()
    out = meter.compute()
    assert out["miou"] == pytest.approx(4 / 9)
    assert out["class_iou"] == pytest.approx(HAND_IOU)
    assert out["pixel_accuracy"] == pytest.approx(3 / 5)


def test_absent_class_is_left_out_of_the_mean_and_a_false_positive_class_counts_zero():
    # class 3 never occurs: no IoU, not in the mean
    cm4 = np.zeros((4, 4), dtype=np.int64)
    cm4[:3, :3] = HAND_CM
    miou, per_class = iou_from_confusion(cm4)
    assert math.isnan(per_class[3]) and miou == pytest.approx(4 / 9)
    # class 3 predicted once where the truth is 0: IoU 0, and it drags the mean down
    cm4[0, 3] = 1
    miou, per_class = iou_from_confusion(cm4)
    assert per_class[3] == 0.0
    assert per_class[0] == pytest.approx(1 / 3)  # TP 1 / (row 3 + column 1 - 1)
    assert miou == pytest.approx((1 / 3 + 1 / 3 + 1 / 2 + 0) / 4)
    # nothing at all: NaN, never a made-up number
    miou, per_class = iou_from_confusion(np.zeros((2, 2)))
    assert math.isnan(miou) and all(math.isnan(v) for v in per_class)


def test_per_class_iou_agrees_with_scikit_learn_on_random_maps():
    from sklearn.metrics import jaccard_score

    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (4, 9, 7), generator=g)
    target[:, 0, :] = 255  # an ignored band
    pred = torch.randint(0, 5, (4, 9, 7), generator=g)
    meter = ConfusionMeter(5, 255)
    meter.update(_logits(pred, 5), target)
    keep = target.flatten() != 255
    ref = jaccard_score(target.flatten()[keep].numpy(), pred.flatten()[keep].numpy(), labels=list(range(5)),
                        average=None)
    assert meter.compute()["class_iou"] == pytest.approx(ref.tolist())
    assert meter.compute()["miou"] == pytest.approx(float(ref.mean()))


def test_loss_is_the_mean_pixel_cross_entropy_over_labeled_pixels_per_image():
    task = make_task("segmentation", 3, 255)
    assert task.metric == "miou" and task.ignore_index == 255
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 2, 3, generator=g)
    target = torch.cat([TARGET, torch.full_like(TARGET, 255)])  # image 1 has no labeled pixel
    loss = task.loss(logits, target)
    assert loss.shape == (2,)
    expect0 = F.cross_entropy(logits[:1], TARGET, ignore_index=255)  # mean over its 5 labeled pixels
    assert loss[0].item() == pytest.approx(expect0.item(), rel=1e-6)
    assert loss[1].item() == 0.0


def test_confidence_is_the_mean_top1_posterior_over_all_pixels():
    task = SegmentationTask(2)
    assert task.ignore_index == 255  # the default when a dataset names none
    probs = torch.tensor([[[[0.9, 0.6]], [[0.1, 0.4]]],  # image 0: top-1 0.9 and 0.6
                          [[[0.5, 0.2]], [[0.5, 0.8]]]])  # image 1: top-1 0.5 and 0.8
    assert task.confidence(probs).tolist() == pytest.approx([0.75, 0.65])
