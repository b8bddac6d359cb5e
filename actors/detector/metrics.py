"""Detection metrics: precision, recall and F1 at an IoU threshold (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Iterable

import numpy as np

IOU_THRESHOLD = 0.5


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N x 4) with every box in ``b`` (M x 4), x1 y1 x2 y2."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match(pred: np.ndarray, scores: np.ndarray, truth: np.ndarray, iou: float = IOU_THRESHOLD) -> tuple[int, int, int]:
    """Greedy matching by descending score: (true positives, false positives, false negatives)."""
    pred = np.asarray(pred).reshape(-1, 4)
    truth = np.asarray(truth).reshape(-1, 4)
    if len(pred) == 0 or len(truth) == 0:
        return 0, len(pred), len(truth)
    ious = iou_matrix(pred[np.argsort(-np.asarray(scores))], truth)
    used = np.zeros(len(truth), bool)
    tp = 0
    for row in ious:
        row = np.where(used, -1.0, row)
        j = int(row.argmax())
        if row[j] >= iou:
            used[j] = True
            tp += 1
    return tp, len(pred) - tp, len(truth) - tp


@dataclass
class DetectionMetrics:
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    images: int
    iou: float = IOU_THRESHOLD

    def to_dict(self) -> dict[str, float]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def score(samples: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], iou: float = IOU_THRESHOLD) -> DetectionMetrics:
    """Metrics over (predicted boxes, their scores, true boxes) per image."""
    tp = fp = fn = n = 0
    for pred, scores, truth in samples:
        a, b, c = match(pred, scores, truth, iou)
        tp, fp, fn, n = tp + a, fp + b, fn + c, n + 1
    precision = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return DetectionMetrics(precision, recall, f1, tp, fp, fn, n, iou)
