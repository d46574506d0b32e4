"""Tasks say how to score a model: the per-item loss, the per-item confidence and the metric."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class AccuracyMeter:
    def __init__(self) -> None:
        self.correct = 0
        self.total = 0

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        self.correct += int((logits.argmax(dim=1) == targets).sum())
        self.total += int(targets.numel())

    def compute(self) -> dict[str, float]:
        """{'accuracy': fraction correct in [0, 1]}."""
        return {"accuracy": self.correct / max(1, self.total)}


class ClassificationTask:
    name = "classification"
    metric = "accuracy"

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B,) cross-entropy per item, in nats."""
        return F.cross_entropy(logits.float(), targets, reduction="none")

    def confidence(self, probs: torch.Tensor) -> torch.Tensor:
        """(B,) top-1 posterior per item."""
        return probs.max(dim=1).values

    def meter(self) -> AccuracyMeter:
        return AccuracyMeter()


# ------------------------------------------------------------------------------------------------
# segmentation


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int | None = None) -> torch.Tensor:
    """(C, C) int64 pixel counts, rows = true class, columns = predicted class, on ``pred``'s device.

    Pixels whose target is ``ignore_index`` or outside 0..C-1 are not counted.
    """
    t = target.reshape(-1).long()
    p = pred.reshape(-1).long()
    valid = (t >= 0) & (t < num_classes)
    if ignore_index is not None:
        valid &= t != ignore_index
    flat = t[valid] * num_classes + p[valid]
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_from_confusion(cm) -> tuple[float, list[float]]:
    """(mIoU, per-class IoU) from a (C, C) confusion matrix (rows true, columns predicted).

    IoU_c = TP_c / (TP_c + FP_c + FN_c), a fraction in [0, 1]. A class with no pixel in the ground
    truth nor in the predictions has no IoU (NaN) and is left out of the mean, as the Cityscapes
    evaluation and mmsegmentation do; a class predicted but absent from the ground truth counts 0.
    mIoU is NaN only when every class is absent.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / np.where(union > 0, union, 1.0), np.nan)
    present = ~np.isnan(iou)
    miou = float(iou[present].mean()) if present.any() else float("nan")
    return miou, [float(v) for v in iou]


class ConfusionMeter:
    """Accumulates a pixel confusion matrix over batches of (B, C, H, W) logits and (B, H, W) maps."""

    def __init__(self, num_classes: int, ignore_index: int | None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.cm: torch.Tensor | None = None

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        cm = confusion_matrix(logits.argmax(dim=1), targets.to(logits.device), self.num_classes, self.ignore_index)
        self.cm = cm if self.cm is None else self.cm + cm

    def confusion(self) -> np.ndarray:
        """The accumulated (C, C) int64 matrix (zeros before any update)."""
        if self.cm is None:
            return np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        return self.cm.cpu().numpy()

    def compute(self) -> dict:
        """{'miou': mean IoU, 'pixel_accuracy': fraction of labeled pixels right, 'class_iou': [C]}.

        Fractions in [0, 1]; ``class_iou`` holds NaN for a class absent from truth and predictions.
        """
        cm = self.confusion()
        miou, per_class = iou_from_confusion(cm)
        total = cm.sum()
        return {"miou": miou, "pixel_accuracy": float(np.trace(cm) / total) if total else float("nan"),
                "class_iou": per_class}


class SegmentationTask:
    """Per-pixel classification scored by mIoU.

    Targets are (B, H, W) class maps (uint8 or int64); pixels equal to ``ignore_index`` (255 when
    the dataset names none) carry no label: they add nothing to the loss, nor to the confusion
    matrix, and are the fill value of masks shifted by augmentation.
    """

    name = "segmentation"
    metric = "miou"

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        self.num_classes = num_classes
        self.ignore_index = 255 if ignore_index is None else int(ignore_index)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B,) per image: the mean pixel cross-entropy (nats) over its labeled pixels; 0 for an
        image with none. A batch loss is the mean of these, so each image weighs the same."""
        t = targets.long()
        per_pixel = F.cross_entropy(logits.float(), t, ignore_index=self.ignore_index, reduction="none")
        valid = (t != self.ignore_index).flatten(1).sum(dim=1)
        return per_pixel.flatten(1).sum(dim=1) / valid.clamp_min(1)

    def confidence(self, probs: torch.Tensor) -> torch.Tensor:
        """(B,) per image: the mean over all its pixels of the top-1 posterior, in [1/C, 1].

        Every pixel counts (which pixels are unlabeled is unknown at query time), so a low value
        means the model is unsure over a large area of the image.
        """
        return probs.max(dim=1).values.flatten(1).mean(dim=1)

    def meter(self) -> ConfusionMeter:
        return ConfusionMeter(self.num_classes, self.ignore_index)


_TASKS = {"classification": ClassificationTask, "segmentation": SegmentationTask}


def register_task(name: str, cls) -> None:
    _TASKS[name] = cls


def make_task(name: str, num_classes: int, ignore_index: int | None = None):
    """The task object for a dataset's ``task`` name."""
    return _TASKS[name](num_classes, ignore_index)
