"""Which epoch's weights training keeps: the highest validation mean IoU over labelled
pixels, checked against hand-counted confusion matrices and a scripted run of epochs."""

import math

import numpy as np
import pytest

from tests.recorder import Recorder

keras = pytest.importorskip("keras")


def _hand_mean_iou(labels, predicted, n_classes):
    """Mean IoU from counts: labels 0 are unlabelled; classes never seen (neither in
    the labels nor in the predictions of labelled pixels) are left out."""
    keep = labels > 0
    truth, guess = labels[keep] - 1, predicted[keep]
    ious = []
    for c in range(n_classes):
        inter = np.sum((truth == c) & (guess == c))
        union = np.sum((truth == c) | (guess == c))
        if union:
            ious.append(inter / union)
    return float(np.mean(ious))


def test_labelled_mean_iou_counts_labelled_pixels_only():
    from wetland_unet_plugin.core.training.keras_parts import LabelledMeanIoU

    rng = np.random.default_rng(4)
    labels = rng.integers(0, 4, (3, 16, 16))  # 0 = unlabelled
    y_true = np.eye(4, dtype=np.float32)[labels][..., 1:]
    y_pred = rng.dirichlet(np.ones(3), (3, 16, 16)).astype(np.float32)
    metric = LabelledMeanIoU(3)
    metric.update_state(y_true[:2], y_pred[:2])
    metric.update_state(y_true[2:], y_pred[2:])  # accumulates over batches
    expected = _hand_mean_iou(labels, np.argmax(y_pred, axis=-1), 3)
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    # Predictions on unlabelled pixels change nothing.
    changed = y_pred.copy()
    changed[labels == 0] = np.array([1.0, 0.0, 0.0], np.float32)
    again = LabelledMeanIoU(3)
    again.update_state(y_true, changed)
    assert float(again.result()) == pytest.approx(expected, abs=1e-6)
    # A perfect prediction of the labelled pixels scores 1.
    perfect = LabelledMeanIoU(3)
    perfect.update_state(y_true, np.where(labels[..., None] > 0, y_true, changed))
    assert float(perfect.result()) == pytest.approx(1.0)


def _scripted_monitor(epoch_logs):
    """A TrainingMonitor fed the given per-epoch logs; before each epoch's end the
    model's weights are set to the epoch number, so the kept weights name their epoch."""
    from wetland_unet_plugin.core.training.keras_parts import TrainingMonitor, compile_model

    model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Dense(3, use_bias=False)])
    compile_model(model, "categorical", 1e-3)
    feedback = Recorder()
    monitor = TrainingMonitor(feedback, len(epoch_logs), steps=1, val_steps=1)
    monitor.set_model(model)
    for epoch, logs in enumerate(epoch_logs):
        monitor.on_epoch_begin(epoch)
        model.set_weights([np.full((1, 3), float(epoch + 1), np.float32)])
        monitor.on_epoch_end(epoch, logs)
    return monitor, feedback


def test_the_kept_epoch_has_the_highest_validation_mean_iou_not_the_lowest_loss():
    # The seed-7 demo run of 2026-12-01 in miniature: the loss is lowest early while
    # the mean IoU peaks later.
    logs = [
        {"loss": 0.9, "val_loss": 0.50, "val_miou": 0.30, "val_accuracy": 0.66},
        {"loss": 0.7, "val_loss": 0.58, "val_miou": 0.36, "val_accuracy": 0.68},
        {"loss": 0.5, "val_loss": 0.62, "val_miou": 0.41, "val_accuracy": 0.70},
        {"loss": 0.4, "val_loss": 0.66, "val_miou": 0.39, "val_accuracy": 0.71},
    ]
    monitor, feedback = _scripted_monitor(logs)
    assert monitor.best_epoch == 3
    assert monitor.best_miou == pytest.approx(0.41) and monitor.best_loss == pytest.approx(0.62)
    assert float(monitor.best_weights[0][0, 0]) == 3.0  # epoch 3's weights
    marked = [line.split(":")[0] for line in feedback.lines if "(best so far)" in line]
    assert marked == ["Epoch 1/4", "Epoch 2/4", "Epoch 3/4"]
    third = next(line for line in feedback.lines if line.startswith("Epoch 3/4"))
    assert "val_loss 0.6200" in third and "val_miou 0.4100" in third


def test_without_a_mean_iou_the_lowest_validation_loss_is_kept():
    logs = [{"val_loss": 0.5}, {"val_loss": 0.4}, {"val_loss": 0.45}, {"val_loss": math.nan}]
    monitor, _ = _scripted_monitor(logs)
    assert monitor.best_epoch == 2 and float(monitor.best_weights[0][0, 0]) == 2.0
