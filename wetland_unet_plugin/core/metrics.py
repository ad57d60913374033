"""Accuracy metrics from a confusion matrix (rows = reference, columns = prediction)."""

from __future__ import annotations

import numpy as np


def confusion_matrix(
    reference: np.ndarray, prediction: np.ndarray, n_classes: int, matrix: np.ndarray | None = None
) -> np.ndarray:
    """Accumulate a confusion matrix of class ids 1..n_classes; other ids are ignored.

    Args:
        reference: class ids (0 = unlabelled, ignored).
        prediction: class ids (0 = no prediction, ignored).
        n_classes: number of classes N.
        matrix: optional (N, N) int64 array to add to (for streaming over windows).

    Returns:
        (N, N) int64 array; entry [i, j] counts reference class i+1 predicted as j+1.
    """
    ref = np.asarray(reference).ravel().astype(np.int64)
    pred = np.asarray(prediction).ravel().astype(np.int64)
    keep = (ref >= 1) & (ref <= n_classes) & (pred >= 1) & (pred <= n_classes)
    counts = np.bincount(
        (ref[keep] - 1) * n_classes + (pred[keep] - 1), minlength=n_classes * n_classes
    ).reshape(n_classes, n_classes)
    if matrix is None:
        return counts.astype(np.int64)
    matrix += counts
    return matrix


def scores(matrix: np.ndarray) -> dict:
    """Overall accuracy, Cohen's kappa and per-class precision, recall, F1 and IoU.

    Args:
        matrix: (N, N) confusion matrix, rows = reference, columns = prediction.

    Returns:
        dict with ``overall_accuracy``, ``kappa``, ``mean_iou``, ``mean_f1`` and
        per-class lists ``precision``, ``recall``, ``f1``, ``iou``, ``support``.
        Classes absent from both reference and prediction get NaN and are left
        out of the means.
    """
    m = np.asarray(matrix, dtype=np.float64)
    total = m.sum()
    diag = np.diag(m)
    ref_tot = m.sum(axis=1)
    pred_tot = m.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        oa = diag.sum() / total if total else float("nan")
        expected = (ref_tot * pred_tot).sum() / total**2 if total else float("nan")
        kappa = (oa - expected) / (1 - expected) if total and expected != 1 else float("nan")
        precision = np.where(pred_tot > 0, diag / pred_tot, np.nan)
        recall = np.where(ref_tot > 0, diag / ref_tot, np.nan)
        f1 = np.where(ref_tot + pred_tot > 0, 2 * diag / (ref_tot + pred_tot), np.nan)
        union = ref_tot + pred_tot - diag
        iou = np.where(union > 0, diag / union, np.nan)
    present = ref_tot > 0
    return {
        "overall_accuracy": float(oa),
        "kappa": float(kappa),
        "mean_iou": float(np.nanmean(iou[present])) if present.any() else float("nan"),
        "mean_f1": float(np.nanmean(f1[present])) if present.any() else float("nan"),
        "precision": [float(v) for v in precision],
        "recall": [float(v) for v in recall],
        "f1": [float(v) for v in f1],
        "iou": [float(v) for v in iou],
        "support": [int(v) for v in ref_tot],
        "pixels": int(total),
    }
