"""``train_model``'s parameters: defaults, allowed choices and the checks run before training.

Everything here fails early with a CoreError that names the parameter and the
fix: numbers and choices (``check_parameters``), the patch size against the
depth, the output paths, and a fine-tuning model against this training.
"""

from __future__ import annotations

import math
import os

from ..feedback import CoreError
from ..modelfile import MODEL_EXTENSION, read_metadata
from ..raster import check_output_path
from ..unet import tile_multiple
from .pairs import VAL_SPLITS
from .schedule import DEFAULT_LR_SCHEDULE, LR_SCHEDULES

DEFAULT_EPOCHS = 20
DEFAULT_EARLY_STOPPING_PATIENCE = 8
DEFAULT_REDUCE_LR_PATIENCE = 3
DEFAULT_MIN_LABELLED_FRACTION = 0.02
#: LOSS choices, and the output activation each one trains.
LOSSES = {"categorical": "softmax", "binary": "sigmoid"}


def _check_number(value, name: str, low=None, high=None, integer: bool = True,
                  low_open: bool = False):
    """Return ``value`` as int/float, or raise a CoreError naming the parameter and range."""
    try:
        number = int(value) if integer else float(value)
        if integer and float(value) != number:
            raise ValueError
    except (TypeError, ValueError):
        raise CoreError(f"{name} must be a {'whole ' if integer else ''}number, not "
                        f"{value!r}.") from None
    too_low = low is not None and (number <= low if low_open else number < low)
    if too_low or (high is not None and number > high) or not math.isfinite(number):
        bounds = (f"above {low:g}" if low_open else f"at least {low:g}") if low is not None else ""
        if high is not None:
            bounds += (" and " if bounds else "") + f"at most {high:g}"
        raise CoreError(f"{name} must be {bounds} (got {value}).")
    return number


def check_parameters(p: dict) -> dict:
    """Check the numeric and choice parameters of ``train_model``; return them converted.

    Raises:
        CoreError: naming the parameter and its valid range.
    """
    out = dict(p)
    out["patch_size"] = _check_number(p["patch_size"], "PATCH_SIZE", 8)
    out["batch_size"] = _check_number(p["batch_size"], "BATCH_SIZE", 1)
    out["train_size"] = _check_number(p["train_size"], "TRAIN_SIZE", 1)
    out["val_size"] = _check_number(p["val_size"], "VAL_SIZE", 1)
    out["epochs"] = _check_number(p["epochs"], "EPOCHS", 1)
    out["val_fraction"] = _check_number(p["val_fraction"], "VAL_FRACTION", 0, 0.9,
                                        integer=False, low_open=True)
    out["filters"] = _check_number(p["filters"], "FILTERS", 1)
    out["depth"] = _check_number(p["depth"], "DEPTH", 1, 8)
    out["learning_rate"] = _check_number(p["learning_rate"], "LEARNING_RATE", 0,
                                         integer=False, low_open=True)
    out["early_stopping_patience"] = _check_number(p["early_stopping_patience"],
                                                   "EARLY_STOPPING_PATIENCE", 0)
    out["reduce_lr_patience"] = _check_number(p["reduce_lr_patience"], "REDUCE_LR_PATIENCE", 0)
    out["min_labelled_fraction"] = _check_number(p["min_labelled_fraction"],
                                                 "MIN_LABELLED_FRACTION", 0, 1, integer=False)
    if p["seed"] is not None and p["seed"] != "":
        out["seed"] = _check_number(p["seed"], "SEED", 0)
    else:
        out["seed"] = None
    loss = str(p["loss"] or "categorical").strip().lower()
    if loss not in LOSSES:
        raise CoreError(f"LOSS must be one of {', '.join(LOSSES)} (got {p['loss']!r}).")
    out["loss"] = loss
    schedule = str(p.get("lr_schedule") or DEFAULT_LR_SCHEDULE).strip().lower()
    if schedule not in LR_SCHEDULES:
        raise CoreError(f"LR_SCHEDULE must be one of {', '.join(LR_SCHEDULES)} "
                        f"(got {p.get('lr_schedule')!r}).")
    out["lr_schedule"] = schedule
    val_split = str(p.get("val_split") or "rows").strip().lower()
    if val_split not in VAL_SPLITS:
        raise CoreError(f"VAL_SPLIT must be one of {', '.join(VAL_SPLITS)} "
                        f"(got {p.get('val_split')!r}).")
    out["val_split"] = val_split
    out["jitter"] = _check_number(p.get("jitter") or 0.0, "JITTER", 0, 0.5, integer=False)
    out["time_limit"] = _check_number(p.get("time_limit") or 0.0, "TIME_LIMIT", 0,
                                      integer=False)
    out["dropout"] = _check_number(
        0.1 if p.get("dropout") is None else p["dropout"], "DROPOUT", 0, 0.9, integer=False)
    return out


def check_patch_size(patch_size: int, depth: int) -> None:
    """Raise a CoreError unless PATCH_SIZE is a multiple of 2**DEPTH."""
    multiple = tile_multiple(depth)
    if patch_size % multiple:
        lower = max(multiple, patch_size // multiple * multiple)
        raise CoreError(f"PATCH_SIZE {patch_size} is not a multiple of 2**DEPTH = {multiple} "
                        f"(DEPTH {depth}): the U-Net halves the patch {depth} times. Use "
                        f"{lower} or {lower + multiple}.")


def check_outputs(output_model: str, output_report, csv_log, inputs: list) -> None:
    """Refuse outputs that overwrite an input, each other, or lack the model extension."""
    if not output_model:
        raise CoreError("No OUTPUT_MODEL given: choose a file name ending in .keras.")
    if not str(output_model).lower().endswith(MODEL_EXTENSION):
        raise CoreError(f"OUTPUT_MODEL must end in {MODEL_EXTENSION} ('{output_model}' does "
                        f"not): choose a name like model{MODEL_EXTENSION}.")
    check_output_path(output_model, inputs, "OUTPUT_MODEL")
    for path, what in ((output_report, "OUTPUT_REPORT"), (csv_log, "CSV log")):
        if not path:
            continue
        check_output_path(path, inputs + [output_model], what)
        if os.path.abspath(path) == os.path.abspath(output_model):
            raise CoreError(f"The {what} and OUTPUT_MODEL are the same file: choose another "
                            f"name for the {what}.")


def check_init_model(path: str, n_classes: int, bands, n_input_bands: int) -> dict:
    """Read INIT_MODEL's metadata and check it fits this training.

    Returns:
        The init model's metadata.

    Raises:
        CoreError: when classes or bands differ.
    """
    meta = read_metadata(path)
    if int(meta.get("n_classes", -1)) != n_classes:
        raise CoreError(f"INIT_MODEL '{path}' has {meta.get('n_classes')} classes "
                        f"({', '.join(meta.get('class_names', []))}) but CLASS_NAMES gives "
                        f"{n_classes}: fine-tuning keeps the classes. Use the model's class "
                        "names, or train from scratch without INIT_MODEL.")
    if int(meta.get("n_input_bands", n_input_bands)) != n_input_bands:
        raise CoreError(f"INIT_MODEL '{path}' was trained on images with "
                        f"{meta.get('n_input_bands')} bands, these have {n_input_bands}: "
                        "fine-tune on images from the same sensor, or train from scratch.")
    if bands is not None and list(meta.get("bands", [])) != list(bands):
        raise CoreError(f"INIT_MODEL '{path}' uses bands {meta.get('bands')}, BANDS asks for "
                        f"{list(bands)}: leave BANDS empty to use the model's bands.")
    return meta
