"""What a training run records: the model file's metadata and ``train_model``'s result.

The metadata carries everything needed to use and judge the model besides the
network (classes, bands, normalisation, parameters, history, validation,
data summary, library versions); the result is the short JSON-serialisable
summary the worker and the Processing algorithm report.
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from ..schema import TRAIN
from ..schema.base import PATH_KINDS
from .checks import ACTIVATIONS
from .patches import describe_balance

#: The per-epoch metrics of the history, in the order the log and the report give them.
HISTORY_METRICS = ("loss", "accuracy", "miou", "val_loss", "val_accuracy", "val_miou")
#: What chooses the kept epoch (``TrainingMonitor``), as the metadata and report say it.
KEPT_EPOCH_BY = "highest validation mean IoU (labelled pixels)"


@dataclass
class FitSummary:
    """What the metadata records of ``model.fit``."""

    history: dict  # per completed epoch: metrics, learning_rate, epoch_time_s
    epochs_run: int  # epochs that finished (training and validation)
    best_epoch: int  # 1-based; 0 when none finished
    best_val_loss: float  # the kept epoch's; inf when none finished
    best_val_miou: float  # the kept epoch's validation mean IoU; NaN when none
    canceled: bool
    seconds: float  # wall time of model.fit
    steps: int  # training steps per epoch


def versions() -> dict:
    """Library versions for the metadata."""
    import keras
    import rasterio
    import tensorflow as tf

    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "python": platform.python_version(),
    }


def finite_or_none(value):
    """JSON-safe copy of nested dicts and lists: NaN and infinities None, numpy scalars plain."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def data_summary(pairs, scans, sources, invalid_shares, bands, n_classes) -> dict:
    """Per image and in total: size, split, pixels per class, unlabelled share."""
    images, totals = [], np.zeros(n_classes + 1, np.int64)
    for pair, scan, source, invalid in zip(pairs, scans, sources, invalid_shares):
        totals += scan.counts
        images.append(
            {
                "image": pair.image,
                "mask": pair.mask,
                "width": pair.width,
                "height": pair.height,
                "bands": pair.image_count,
                "mask_kind": pair.mask_kind,
                "split": pair.split,
                "train_region": pair.train.as_list() if pair.train is not None else None,
                "val_region": pair.val.as_list() if pair.val is not None else None,
                "pixels_per_class": [int(v) for v in scan.counts[1:]],
                "train_pixels_per_class": [int(v) for v in scan.train_counts[1:]],
                "val_pixels_per_class": [int(v) for v in scan.val_counts[1:]],
                "unlabelled_fraction": float(scan.counts[0] / max(1, scan.counts.sum())),
                "invalid_fraction_sampled": float(invalid),
                "cached": bool(source.cached),
            }
        )
    return {
        "images": images,
        "n_images": len(pairs),
        "bands": list(bands),
        "pixels_per_class": [int(v) for v in totals[1:]],
        "labelled_pixels": int(totals[1:].sum()),
        "unlabelled_fraction": float(totals[0] / max(1, totals.sum())),
    }


def _training_parameters(p: dict, data, steps: int) -> dict:
    """The metadata's "training" entry: every parameter of ``schema.TRAIN`` as used (by its
    keyword), the inputs, and what the run derived (seed used, steps per epoch)."""
    entry = {
        param.key: p[param.key]
        for param in TRAIN.params
        if param.kind not in PATH_KINDS and not param.is_output
    }
    spec = p["class_weights"]
    entry.update(
        {
            "images": [pr.image for pr in data.pairs],
            "masks": [pr.mask for pr in data.pairs],
            "init_model": p["init_model"],
            "seed_used": data.seed,
            "balance_classes_used": bool(data.balance["balanced"]),
            "steps_per_epoch": steps,
            "optimizer": "adam",
            "class_weights": spec if isinstance(spec, (str, type(None))) else list(spec),
            "jitter": p["jitter"] if p["augment"] else 0.0,
            "time_limit_min": p["time_limit"],
            "batchnorm_momentum": p.get("batchnorm_momentum"),
        }
    )
    return entry


def _validation_entry(p: dict, matrix: np.ndarray, val_scores: dict) -> dict:
    where = (
        "validation patches from the images held back whole for validation"
        if p["val_split"] == "images"
        else "validation patches from the held-out strip of each image"
    )
    return {
        "confusion_matrix": matrix.tolist(),
        "scores": val_scores,
        "patches": p["val_size"],
        "description": where + " (no augmentation), best epoch's weights",
    }


def model_metadata(
    p: dict,
    names: list,
    colors: list,
    data,
    fit: FitSummary,
    n_params: int,
    matrix: np.ndarray,
    val_scores: dict,
    weight_info: dict,
    started: float,
) -> dict:
    """Everything the model file carries besides the network.

    Args:
        p: the parameters as used (``schema.TRAIN.check``; fine-tuning may change filters, depth and
            spectral_skip).
        names, colors: class names and colours.
        data: the ``prepare.TrainingData``.
        fit: what ``model.fit`` gave.
        n_params: the network's parameter count.
        matrix, val_scores: validation confusion matrix and scores.
        weight_info: the class weights and how they were found.
        started: ``time.perf_counter()`` when the job started.
    """
    first = data.pairs[0]
    descriptions = first.band_descriptions
    metadata = {
        "model_type": "unet",
        "class_names": names,
        "class_colors": colors,
        "n_classes": len(names),
        "bands": list(data.bands),
        "n_input_bands": first.image_count,
        "band_names": [
            descriptions[b - 1] if b - 1 < len(descriptions) else None for b in data.bands
        ],
        "radiometry": first.radiometry,
        "input_dtype": first.dtype,
        "nodata": first.nodata,
        "normalization": data.stats,
        "patch_size": p["patch_size"],
        "filters": p["filters"],
        "depth": p["depth"],
        "spectral_skip": p["spectral_skip"],
        "dropout": p["dropout"],
        "activation": ACTIVATIONS[p["loss"]],
        "loss": p["loss"],
        "n_parameters": n_params,
        "model_size": p.get("sizing"),
        "patch_sampling": dict(data.balance, description=describe_balance(data.balance, names)),
        "pixel_size": list(first.pixel_size),
        "crs": first.crs_wkt,
        "training": _training_parameters(p, data, fit.steps),
        "history": fit.history,
        "epochs_run": fit.epochs_run,
        "best_epoch": fit.best_epoch,
        "best_val_loss": fit.best_val_loss if math.isfinite(fit.best_val_loss) else None,
        "best_val_miou": fit.best_val_miou if math.isfinite(fit.best_val_miou) else None,
        "best_epoch_by": KEPT_EPOCH_BY,
        "stopped_early": bool(fit.epochs_run < p["epochs"] and not fit.canceled),
        "canceled": bool(fit.canceled),
        "validation": _validation_entry(p, matrix, val_scores),
        "class_weights": weight_info,
        "data": data_summary(
            data.pairs, data.scans, data.sources, data.invalid_shares, data.bands, len(names)
        ),
        "training_time_s": round(time.perf_counter() - started, 2),
        "fit_time_s": round(fit.seconds, 2),
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return finite_or_none(metadata)


def training_result(metadata: dict, output_model: str, report_path) -> dict:
    """``train_model``'s result: paths, epochs, validation scores, weights, time, seed."""
    score = metadata["validation"]["scores"]
    return finite_or_none(
        {
            "output_model": output_model,
            "output_report": report_path,
            "epochs_run": metadata["epochs_run"],
            "best_epoch": metadata["best_epoch"],
            "best_val_loss": metadata["best_val_loss"],
            "best_val_miou": metadata["best_val_miou"],
            "stopped_early": metadata["stopped_early"],
            "canceled": False,
            "validation": {
                k: score[k]
                for k in ("overall_accuracy", "kappa", "mean_iou", "mean_f1", "iou", "f1")
            },
            "class_names": metadata["class_names"],
            "class_weights": metadata["class_weights"]["values"],
            "training_time_s": metadata["training_time_s"],
            "n_parameters": metadata["n_parameters"],
            "seed": metadata["training"]["seed_used"],
        }
    )
