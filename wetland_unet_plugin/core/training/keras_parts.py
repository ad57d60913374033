"""The Keras objects training uses: loss, labelled accuracy, callbacks, compile.

This module imports Keras (and so TensorFlow) when it is imported: the
training functions import it only when they need it, so importing
``wetland_unet_plugin.core.training`` stays free of TensorFlow.
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np
from keras import ops

from .metadata import HISTORY_METRICS
from .schedule import cosine_rate, schedule_progress


class LabelledAccuracy(keras.metrics.Metric):
    """Pixel accuracy over labelled pixels only (targets all zero = unlabelled)."""

    def __init__(self, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labelled = ops.cast(ops.sum(y_true, axis=-1) > 0, "float32")
        hit = ops.cast(
            ops.equal(ops.argmax(y_true, axis=-1), ops.argmax(y_pred, axis=-1)), "float32"
        )
        self.correct.assign_add(ops.sum(hit * labelled))
        self.total.assign_add(ops.sum(labelled))

    def result(self):
        return ops.divide_no_nan(self.correct, self.total)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)


class LabelledMeanIoU(keras.metrics.MeanIoU):
    """Mean IoU over labelled pixels only: Keras's ``MeanIoU`` of the argmax of targets
    and predictions, with unlabelled pixels (targets all zero) weighted 0."""

    def __init__(self, num_classes: int, name="miou", **kwargs):
        super().__init__(
            num_classes=num_classes, name=name, sparse_y_true=False, sparse_y_pred=False, **kwargs
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        labelled = ops.cast(ops.sum(y_true, axis=-1) > 0, self.dtype)
        return super().update_state(y_true, y_pred, labelled)


def _better(logs: dict, best_miou: float, best_loss: float) -> bool:
    """Whether an epoch's validation scores beat the best so far: a higher mean IoU,
    or a lower loss for a model compiled without the mean IoU metric."""
    miou = float(logs.get("val_miou", math.nan))
    if math.isfinite(miou):
        return miou > best_miou
    loss = float(logs.get("val_loss", math.nan))
    return math.isfinite(loss) and loss < best_loss


class TrainingMonitor(keras.callbacks.Callback):
    """Progress per batch, a log line per epoch, cancel within one batch, best weights.

    The kept (best) epoch is the one with the highest validation mean IoU, the score
    the report grades a map by; the validation loss weighs pixels by the class weights
    and swings with the labels' ambiguities. Only epochs that finished (training and
    validation) count.
    """

    def __init__(
        self,
        feedback,
        epochs: int,
        steps: int,
        val_steps: int,
        time_limit_s=None,
        early_stopping: bool = False,
    ):
        super().__init__()
        self.feedback = feedback
        self.early_stopping = early_stopping
        self.epochs, self.steps, self.val_steps = epochs, steps, val_steps
        self.time_limit_s = time_limit_s
        self._fit_start = time.perf_counter()
        self.canceled = False
        self.nan_at = None
        self.best_loss, self.best_epoch, self.best_weights = math.inf, 0, None
        self.best_miou = -math.inf
        self.completed = 0
        self.learning_rates, self.epoch_times = [], []
        self._epoch, self._start = 0, 0.0

    def _progress(self, done: int) -> None:
        """Share of the planned steps, or of the time limit when that is larger (the bar
        then follows the budget a slow machine spends)."""
        total = self.epochs * (self.steps + self.val_steps)
        share = (self._epoch * (self.steps + self.val_steps) + done) / total
        if self.time_limit_s:
            share = max(share, (time.perf_counter() - self._fit_start) / self.time_limit_s)
        self.feedback.progress(min(1.0, share))

    def on_train_begin(self, logs=None):
        self._fit_start = time.perf_counter()

    def _log_expected_end(self, epoch_s: float) -> None:
        """After the first epoch: its time, the epochs that fit and the expected end."""
        planned = self.epochs
        text = f"Epoch 1 took {epoch_s:.1f} s (with compilation): EPOCHS {planned} need about "
        text += f"{planned * epoch_s / 60:.1f} min"
        if self.time_limit_s:
            fit = max(1, int(self.time_limit_s // epoch_s))
            text += f"; TIME_LIMIT {self.time_limit_s / 60:g} min fits about {fit}"
            planned = min(planned, fit)
        left = (planned - 1) * epoch_s
        end = time.strftime("%H:%M:%S", time.localtime(time.time() + left))
        self.feedback.info(
            f"{text}. Expected: {planned} epoch(s), ending at about {end} (in {left / 60:.1f} "
            + ("min; early stopping may end it sooner)." if self.early_stopping else "min).")
        )

    def _check_cancel(self, evaluating: bool) -> None:
        if self.canceled or self.feedback.is_canceled():
            self.canceled = True
            self.model.stop_training = True
            if evaluating:
                self.model.stop_evaluating = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._start = epoch, time.perf_counter()
        self._check_cancel(False)

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss) and self.nan_at is None:
            self.nan_at = (self._epoch + 1, batch + 1)
            self.model.stop_training = True
        self._progress(batch + 1)
        self._check_cancel(False)

    def on_test_batch_end(self, batch, logs=None):
        self._progress(self.steps + batch + 1)
        self._check_cancel(True)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = time.perf_counter() - self._start
        if self.canceled or self.nan_at:
            return
        self.completed = epoch + 1
        self.epoch_times.append(seconds)
        self.learning_rates.append(float(ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        mark = ""
        if _better(logs, self.best_miou, self.best_loss):
            self.best_epoch = epoch + 1
            self.best_loss = float(logs.get("val_loss", math.nan))
            self.best_miou = float(logs.get("val_miou", math.nan))
            self.best_weights = [np.array(w) for w in self.model.get_weights()]
            mark = " (best so far)"
        parts = ", ".join(f"{k} {float(logs[k]):.4f}" for k in HISTORY_METRICS if k in logs)
        self.feedback.info(
            f"Epoch {epoch + 1}/{self.epochs}: {parts}, learning rate "
            f"{self.learning_rates[-1]:.2g}, {seconds:.1f} s{mark}"
        )
        if epoch == 0:
            self._log_expected_end(seconds)


class CosineSchedule(keras.callbacks.Callback):
    """Sets Adam's learning rate before every step: ``cosine_rate`` of
    ``schedule_progress`` (planned steps, or the time limit when that comes first).

    With ``wait`` (TIME_LIMIT's automatic value) the time limit counts only once an
    epoch's end shows that the planned epochs would not fit in it: a run the automatic
    limit does not cut follows its steps alone, so a seed still gives the same weights
    however long the first step's compilation took. A TIME_LIMIT typed by hand counts
    from the first step."""

    def __init__(
        self, learning_rate: float, total_steps: int, time_limit_s=None, epochs=1, wait=False
    ):
        super().__init__()
        self.learning_rate, self.total_steps = learning_rate, total_steps
        self.time_limit_s, self.epochs, self.wait = time_limit_s, epochs, wait
        self.step, self.start, self.epoch_start, self.binding = 0, 0.0, 0.0, not wait

    def on_train_begin(self, logs=None):
        self.step, self.start, self.binding = 0, time.perf_counter(), not self.wait

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self.time_limit_s and not self.binding:
            now = time.perf_counter()
            left = (self.epochs - epoch - 1) * (now - self.epoch_start)
            self.binding = now - self.start + left > self.time_limit_s

    def on_train_batch_begin(self, batch, logs=None):
        progress = schedule_progress(
            self.step,
            self.total_steps,
            time.perf_counter() - self.start,
            self.time_limit_s if self.binding else None,
        )
        self.model.optimizer.learning_rate = cosine_rate(progress, self.learning_rate)
        self.step += 1


class TimeLimit(keras.callbacks.Callback):
    """Stops training after the epoch that ends within ``seconds`` of the start of
    fit when the next epoch (as long as the last one) would end past it."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.stopped_after = None
        self.start = self.epoch_start = 0.0

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        if now - self.start + (now - self.epoch_start) > self.seconds:
            self.stopped_after = epoch + 1
            self.model.stop_training = True


def make_loss(kind: str):
    """The Keras loss: weighted mean over labelled pixels (weight 0 = ignored).

    Args:
        kind: "categorical" (softmax cross-entropy) or "binary" (sigmoid,
            binary cross-entropy averaged over the class channels, as in the seed).
    """
    if kind == "binary":
        return keras.losses.BinaryCrossentropy(reduction="mean_with_sample_weight")
    return keras.losses.CategoricalCrossentropy(reduction="mean_with_sample_weight")


def compile_model(model, loss: str, learning_rate: float, xla: bool = False):
    """Compile a U-Net for training with Adam, the weighted loss, and labelled accuracy
    and mean IoU.

    Args:
        model: the Keras model.
        loss: a key of ``checks.ACTIVATIONS``.
        learning_rate: Adam's learning rate.
        xla: compile the training and validation steps with XLA (``jit_compile``)
            on every device, CPU included; False keeps Keras's choice ("auto": XLA
            on GPUs only).
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=make_loss(loss),
        metrics=[LabelledAccuracy(), LabelledMeanIoU(int(model.output_shape[-1]))],
        jit_compile=True if xla else "auto",
    )
    return model


#: Batch normalisation's moving statistics average about 1 / (1 - momentum) steps. Keras's
#: 0.99 (100 steps) suits long runs; in a run of 72 steps they keep half their initial
#: values (0.99**72 = 0.48), and the model predicts far worse in inference mode than in
#: training. Short runs therefore average over the last 5 % of their planned steps.
BN_MOMENTUM_MAX, BN_MOMENTUM_MIN, BN_HORIZON_SHARE = 0.99, 0.9, 0.05


def batchnorm_momentum(planned_steps: int) -> float:
    """The batch-normalisation momentum for a run of ``planned_steps`` training steps.

    Args:
        planned_steps: EPOCHS x steps per epoch.

    Returns:
        ``1 - 1 / (5 % of the steps)``, within 0.9 (10 steps) and 0.99 (100 steps, Keras's
        default, reached from 2,000 steps on).
    """
    horizon = max(1.0, BN_HORIZON_SHARE * planned_steps)
    return float(min(BN_MOMENTUM_MAX, max(BN_MOMENTUM_MIN, 1.0 - 1.0 / horizon)))


def set_batchnorm_momentum(model, momentum: float) -> None:
    """Set every BatchNormalization layer's momentum (before compiling)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)


def clean_copy(model):
    """An uncompiled copy of a model with the same weights (nothing but Keras layers saved)."""
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def training_callbacks(
    p: dict, steps: int, monitor: TrainingMonitor, tensorboard_dir=None, csv_path=None
) -> tuple[list, TimeLimit | None]:
    """The callbacks of ``model.fit``, in the order Keras calls them.

    Args:
        p: checked parameters (``schema.TRAIN.check``).
        steps: training steps per epoch.
        monitor: the run's ``TrainingMonitor`` (first, so cancel and NaN stop at once).
        tensorboard_dir: optional TensorBoard log folder.
        csv_path: optional file for Keras's per-epoch CSV log.

    Returns:
        (callbacks, time_limit): the list, and its ``TimeLimit`` (None without TIME_LIMIT).
    """
    callbacks = [monitor, keras.callbacks.TerminateOnNaN()]
    time_limit_s = p["time_limit"] * 60 if p["time_limit"] > 0 else None
    if p["lr_schedule"] == "cosine":
        callbacks.append(
            CosineSchedule(
                p["learning_rate"],
                p["epochs"] * steps,
                time_limit_s,
                p["epochs"],
                wait=(p.get("sizing") or {}).get("time_limit_asked", 0) < 0,
            )
        )
    time_limit = TimeLimit(time_limit_s) if time_limit_s else None
    if time_limit:
        callbacks.append(time_limit)
    if p["early_stopping_patience"] > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_miou", mode="max", patience=p["early_stopping_patience"]
            )
        )
    if p["reduce_lr_patience"] > 0 and p["lr_schedule"] == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_miou",
                mode="max",
                factor=0.5,
                patience=p["reduce_lr_patience"],
                min_lr=p["learning_rate"] / 100,
            )
        )
    if tensorboard_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=tensorboard_dir))
    if csv_path:
        callbacks.append(keras.callbacks.CSVLogger(csv_path))
    return callbacks, time_limit
