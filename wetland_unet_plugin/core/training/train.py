"""Train a U-Net from aligned image/mask pairs: the ``wetlandunet:train`` job.

``train_model`` checks every input before any training (``checks``, ``pairs``),
prepares the data (``prepare``: mask scans, statistics, patch sampler), picks
the class weights (``weights``), trains with a weighted loss that ignores
unlabelled pixels (``keras_parts``), keeps the weights of the epoch with the
highest validation mean IoU, and writes one model file (``modelfile.save_model``)
with its metadata (``metadata``) plus an optional HTML report.

TensorFlow and Keras are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass

import numpy as np

from ..atomic import atomic_output
from ..classes import default_colors, parse_class_names, parse_colors
from ..feedback import Canceled, CoreError, Feedback, SubFeedback
from ..metrics import confusion_matrix, scores
from ..modelfile import save_model
from ..raster import check_disk_space
from ..schema import TRAIN
from .baseline import start_baseline
from .checks import ACTIVATIONS, check_init_model, check_outputs, check_patch_size
from .dataset import make_dataset
from .devices import device_strategy, seeded
from .metadata import FitSummary, finite_or_none, model_metadata, training_result
from .pairs import check_pairs, select_bands, split_pairs, warn_mixed_grids
from .patches import TRAIN_STREAM, VAL_STREAM, describe_balance
from .prepare import TrainingData, prepare_data
from .sizing import resolve_early_stopping, resolve_sizing
from .weights import choose_class_weights, parse_class_weights

# Progress: share of the job before each stage.
_P_FIT, _P_VAL, _P_SAVE = 0.10, 0.95, 0.98


@dataclass
class Outputs:
    """The files a training run writes."""

    model: str
    report: str | None = None
    csv_log: str | None = None
    tensorboard_dir: str | None = None


def train_model(
    images=None,
    masks=None,
    class_names=None,
    output_model=None,
    output_report=None,
    *,
    feedback: Feedback | None = None,
    **params,
) -> dict:
    """Train a U-Net on image/mask pairs and write the model file (and a report).

    Every input is checked before training starts; a failed or canceled run
    leaves no model file (except the best model so far on cancel, see below).

    Args:
        images, masks, class_names, output_model, output_report, **params: the
            parameters of ``schema.TRAIN`` by their keyword (``python -m
            wetland_unet_plugin.core train --help`` lists them with their defaults; each
            is checked there, and None means the default). ``images`` and ``masks`` are
            lists of paths (or one string with ';' between paths), masks in the same
            order, each on its image's grid: one band of class ids 1..N (0 / nodata =
            unlabelled, ignored), or N one-hot bands. ``init_model`` fine-tunes a model:
            its classes and bands must match, and its architecture and normalisation are
            kept. With a seed the weights are identical run to run on CPU (XLA replaces
            op determinism, which Keras does not combine with it).
        feedback: progress, messages and cancel.

    Returns:
        JSON-serialisable dict: ``output_model``, ``output_report``, ``epochs_run``,
        ``best_epoch``, ``best_val_loss``, ``best_val_miou``, ``stopped_early``,
        ``canceled`` (False),
        ``validation`` (overall_accuracy, kappa, mean_iou, mean_f1, per-class iou/f1),
        ``class_weights``, ``training_time_s``, ``n_parameters``, ``seed``.

    Raises:
        CoreError: for bad inputs (before training) or a diverging loss.
        Canceled: when the user cancels. If ``keep_best_on_cancel`` and an epoch had
            finished, the best model so far is saved first; the exception's ``result``
            attribute then holds the dict above with ``canceled`` True.
    """
    feedback = feedback or Feedback()
    started = time.perf_counter()
    p = TRAIN.check(
        dict(
            params,
            images=images,
            masks=masks,
            class_names=class_names,
            output_model=output_model,
            output_report=output_report,
        )
    )
    names, colors, explicit_weights = _classes(
        p["class_names"], p["class_colors"], p["class_weights"]
    )
    image_list, mask_list = p["images"], p["masks"]
    init_model, bands = p["init_model"], p["bands"]
    outputs = Outputs(p["output_model"], p["output_report"], p["csv_log"], p["tensorboard_dir"])
    check_outputs(
        outputs.model,
        outputs.report,
        outputs.csv_log,
        image_list + mask_list + ([init_model] if init_model else []),
    )

    pairs, chosen = check_pairs(
        image_list, mask_list, len(names), bands if not init_model else None
    )
    init_meta = None
    if init_model:
        init_meta, chosen = _adopt_init_model(p, bands, pairs, len(names), feedback)
    p["sizing"] = resolve_sizing(p, init_meta, feedback)
    p["sizing"]["early_stopping_asked"] = resolve_early_stopping(p, feedback)
    check_patch_size(p["patch_size"], p["depth"])
    split_pairs(pairs, p["val_split"], p["patch_size"], p["val_fraction"], feedback)
    warn_mixed_grids(pairs, feedback)
    feedback.info(
        f"{len(pairs)} image/mask pair(s), bands {chosen}, classes "
        f"{', '.join(f'{i + 1} {n}' for i, n in enumerate(names))}."
    )

    data = prepare_data(pairs, chosen, len(names), p, init_meta, SubFeedback(feedback, 0.0, _P_FIT))
    try:
        return _train(p, names, colors, explicit_weights, data, outputs, started, feedback)
    finally:
        data.sampler.close()


def _classes(class_names, class_colors, class_weights) -> tuple[list, list, list | None]:
    """(names, colours, explicit class weights or None for auto), checked."""
    names = parse_class_names(class_names)
    if len(names) < 2:
        raise CoreError(
            f"Only one class name given ({names[0]}): a U-Net needs at least two "
            'classes, e.g. CLASS_NAMES="water,other".'
        )
    colors = parse_colors(class_colors, len(names)) or default_colors(names)
    return names, colors, parse_class_weights(class_weights, len(names))


def _adopt_init_model(
    p: dict, bands, pairs: list, n_classes: int, feedback: Feedback
) -> tuple[dict, list]:
    """Fine-tuning: check INIT_MODEL against this run and take its architecture and bands.

    Sets ``p``'s filters, depth and spectral_skip to the init model's.

    Returns:
        (the init model's metadata, its 1-based bands).
    """
    init_model = p["init_model"]
    first = pairs[0]
    asked = None
    if bands is not None and str(bands).strip():
        asked = select_bands(bands, first.image_count, first.image, first.band_descriptions)
    init_meta = check_init_model(init_model, n_classes, asked, first.image_count)
    chosen = select_bands(init_meta.get("bands"), pairs[0].image_count, pairs[0].image)
    if init_meta.get("loss", p["loss"]) != p["loss"]:
        raise CoreError(
            f"INIT_MODEL was trained with LOSS '{init_meta.get('loss')}': "
            "fine-tune it with the same LOSS."
        )
    p["filters"], p["depth"] = int(init_meta["filters"]), int(init_meta["depth"])
    # Models written before the spectral skip existed have no key and no skip.
    p["spectral_skip"] = bool(init_meta.get("spectral_skip", False))
    feedback.info(
        f"Fine-tuning {init_model}: FILTERS {p['filters']}, DEPTH {p['depth']}, "
        f"spectral skip {'on' if p['spectral_skip'] else 'off'}, bands {chosen} "
        "and its normalisation are kept."
    )
    return init_meta, chosen


def _steps(p: dict) -> tuple[int, int]:
    """(training steps per epoch, validation steps)."""
    batch = p["batch_size"]
    return max(1, math.ceil(p["train_size"] / batch)), max(1, math.ceil(p["val_size"] / batch))


def _train(
    p: dict,
    names: list,
    colors: list,
    explicit_weights,
    data: TrainingData,
    outputs: Outputs,
    started: float,
    feedback: Feedback,
) -> dict:
    """Class weights, network, fit, validation scores, model file and report."""
    n_classes = len(names)
    feedback.info(f"Training patches: {describe_balance(data.balance, names)}.")
    weights, weight_info = choose_class_weights(
        data.sampler, explicit_weights, p["train_size"], names, feedback, data.balance["asked"]
    )
    # XLA is forced on one device only: with replicas Keras decides (XLA on GPUs; on logical
    # CPUs XLA cannot reach the other replicas' variables). Keras turns XLA off under op
    # determinism; XLA's CPU code gives identical weights for a seed without it.
    with (
        device_strategy(feedback) as replicas,
        seeded(data.seed, deterministic=p["seed"] is not None and not (p["xla"] and replicas == 1)),
    ):
        model, momentum = _network(p, data, n_classes, replicas)
        # As compiled, for the metadata.
        p = dict(p, xla=bool(model.jit_compile), batchnorm_momentum=momentum)
        n_params = int(model.count_params())
        check_disk_space(outputs.model, n_params * 4 * 1.1 + 1e6, "OUTPUT_MODEL")
        _describe_network(p, n_params, feedback)
        with contextlib.ExitStack() as stack:
            csv_path = (
                stack.enter_context(atomic_output(outputs.csv_log)) if outputs.csv_log else None
            )
            fit = _fit(model, p, data, n_classes, weights, outputs, csv_path, feedback)
            scorer, rf_pixels, rf_seconds = (
                start_baseline(p, data, n_classes, feedback) if not fit.canceled else (None, 0, 0)
            )
            matrix, val_scores = _validation_scores(
                model,
                data.sampler,
                p["batch_size"],
                p["val_size"],
                n_classes,
                SubFeedback(feedback, _P_VAL, _P_SAVE) if not fit.canceled else Feedback(),
                scorer,
            )
            metadata = model_metadata(
                p, names, colors, data, fit, n_params, matrix, val_scores, weight_info, started
            )
            if scorer is not None:
                metadata["baseline"] = finite_or_none(scorer.result(rf_pixels, rf_seconds))
                feedback.info(
                    f"Baseline ({metadata['baseline']['time_s']:g} s): "
                    + metadata["baseline"]["summary"]
                )
            feedback.progress(_P_SAVE)
            report_path = _save(model, metadata, outputs)
    result = training_result(metadata, outputs.model, report_path)
    feedback.progress(1.0)
    if fit.canceled:
        result["canceled"] = True
        error = Canceled(
            f"Training canceled after epoch {fit.epochs_run}; the best model so "
            f"far (epoch {fit.best_epoch}, validation mean IoU "
            f"{fit.best_val_miou:.4f}) was saved to {outputs.model}."
        )
        error.result = result
        feedback.warning(str(error))
        raise error
    feedback.info(
        f"Model written to {outputs.model}: best epoch {fit.best_epoch}, "
        f"validation accuracy {val_scores['overall_accuracy']:.3f}, mean IoU "
        f"{val_scores['mean_iou']:.3f}."
    )
    return result


def _network(p: dict, data: TrainingData, n_classes: int, replicas: int) -> tuple:
    """The compiled network: INIT_MODEL's when fine-tuning, else a new U-Net.

    Returns:
        (the compiled model, its batch-normalisation momentum, set for this run's length).
    """
    from ..modelfile import load_model
    from ..unet import build_unet
    from .keras_parts import batchnorm_momentum, compile_model, set_batchnorm_momentum

    if p["init_model"]:
        model = load_model(p["init_model"]).keras_model
        shape_in, shape_out = model.input_shape[-1], model.output_shape[-1]
        if shape_in != len(data.bands) or shape_out != n_classes:
            raise CoreError(
                f"INIT_MODEL's network takes {shape_in} bands and gives "
                f"{shape_out} classes, but its metadata says otherwise: the "
                "file is inconsistent; train from scratch."
            )
    else:
        model = build_unet(
            len(data.bands),
            n_classes,
            p["filters"],
            p["depth"],
            p["dropout"],
            ACTIVATIONS[p["loss"]],
            p["spectral_skip"],
        )
    momentum = batchnorm_momentum(p["epochs"] * _steps(p)[0])
    set_batchnorm_momentum(model, momentum)
    return compile_model(model, p["loss"], p["learning_rate"], p["xla"] and replicas == 1), momentum


def _describe_network(p: dict, n_params: int, feedback: Feedback) -> None:
    steps, _ = _steps(p)
    feedback.info(
        f"U-Net: {n_params:,} parameters"
        + (", spectral skip" if p["spectral_skip"] else "")
        + f", patches {p['patch_size']} px, "
        f"{steps} steps of {p['batch_size']} per epoch, {p['val_size']} validation "
        "patches"
        + (
            f", batch-norm momentum {p['batchnorm_momentum']:.3g} (statistics of the last "
            f"{1 / (1 - p['batchnorm_momentum']):.0f} steps: a short run)"
            if p["batchnorm_momentum"] < 0.99
            else ""
        )
        + (", XLA-compiled." if p["xla"] else ".")
    )


def _fit(
    model,
    p: dict,
    data: TrainingData,
    n_classes: int,
    weights: list,
    outputs: Outputs,
    csv_path,
    feedback: Feedback,
) -> FitSummary:
    """Run ``model.fit``, check how it ended and restore the best epoch's weights.

    Raises:
        CoreError: when the loss diverged.
        Canceled: when canceled with no model to keep.
    """
    from .keras_parts import TrainingMonitor, training_callbacks

    steps, val_steps = _steps(p)
    batch = p["batch_size"]
    train_ds = make_dataset(
        data.sampler, "train", batch, n_classes, weights, None, TRAIN_STREAM, p["augment"]
    )
    val_ds = make_dataset(
        data.sampler, "val", batch, n_classes, weights, p["val_size"], VAL_STREAM, False
    )
    monitor = TrainingMonitor(
        SubFeedback(feedback, _P_FIT, _P_VAL),
        p["epochs"],
        steps,
        val_steps,
        p["time_limit"] * 60 if p["time_limit"] > 0 else None,
        early_stopping=p["early_stopping_patience"] > 0,
    )
    callbacks, time_limit = training_callbacks(p, steps, monitor, outputs.tensorboard_dir, csv_path)
    fit_start = time.perf_counter()
    history = model.fit(
        train_ds,
        epochs=p["epochs"],
        steps_per_epoch=steps,
        validation_data=val_ds,
        callbacks=callbacks,
        verbose=0,
        shuffle=False,
    )
    seconds = time.perf_counter() - fit_start
    if time_limit and time_limit.stopped_after and not monitor.canceled:
        feedback.info(
            f"Stopped after epoch {time_limit.stopped_after}: the time limit "
            f"of {p['time_limit']:g} min would be passed by another epoch."
        )
    _check_fit_ended_well(monitor, p)
    if monitor.best_weights is not None:
        model.set_weights(monitor.best_weights)
    completed = monitor.completed
    hist = {
        k: [float(x) for x in vals[:completed]]
        for k, vals in history.history.items()
        if k != "learning_rate"
    }
    hist["learning_rate"] = monitor.learning_rates[:completed]
    hist["epoch_time_s"] = [round(t, 3) for t in monitor.epoch_times[:completed]]
    return FitSummary(
        hist,
        completed,
        monitor.best_epoch,
        monitor.best_loss,
        monitor.best_miou,
        bool(monitor.canceled),
        seconds,
        steps,
    )


def _check_fit_ended_well(monitor, p: dict) -> None:
    """Raise for a diverged loss, or a cancel that leaves no model to keep."""
    if monitor.nan_at:
        raise CoreError(
            f"Training diverged: the loss became NaN or infinite at epoch "
            f"{monitor.nan_at[0]}, batch {monitor.nan_at[1]}. Lower LEARNING_RATE "
            f"(e.g. {p['learning_rate'] / 10:g}) and check the images for invalid "
            "pixels (NaN, Inf, -1 or other fill values) with wetlandunet:cleaninvalid."
        )
    if monitor.canceled and not (p["keep_best_on_cancel"] and monitor.best_weights):
        raise Canceled(
            "Training canceled before any epoch finished; no model was written."
            if not monitor.best_weights
            else "Training canceled; no model was written (keep the best model "
            "so far with KEEP_BEST_ON_CANCEL)."
        )


def _validation_scores(
    model, sampler, batch_size, val_size, n_classes, feedback, scorer=None
) -> tuple:
    """Confusion matrix and scores of the model on the validation patches (a
    ``baseline.BaselineScorer`` also gets every batch)."""
    matrix = np.zeros((n_classes, n_classes), np.int64)
    steps = max(1, math.ceil(val_size / batch_size))
    for i, (x, labels) in enumerate(sampler.batches("val", batch_size, val_size, VAL_STREAM)):
        feedback.check_canceled()
        # A direct call: predict_on_batch under MirroredStrategy returns every replica's copy.
        prediction = np.argmax(np.asarray(model(x, training=False)), axis=-1) + 1
        confusion_matrix(labels, prediction, n_classes, matrix)
        if scorer is not None:
            scorer.add(x, labels, prediction)
        feedback.progress((i + 1) / steps)
    return matrix, scores(matrix)


def _save(model, metadata: dict, outputs: Outputs) -> str | None:
    """Write the model file, then the report (removing the model if the report fails).

    Returns:
        The report's path, or None without OUTPUT_REPORT.
    """
    from .keras_parts import clean_copy

    save_model(clean_copy(model), metadata, outputs.model)
    if not outputs.report:
        return None
    from ..report import write_training_report

    try:
        return write_training_report(outputs.report, metadata)
    except Exception:
        with contextlib.suppress(OSError):
            os.remove(outputs.model)
        raise
