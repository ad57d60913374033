"""``train_model``'s parameters: defaults, allowed choices and the checks run before training.

Everything here fails early with a CoreError that names the parameter and the
fix: numbers and choices (``check_parameters``), the patch size against the
depth, the output paths, and a fine-tuning model against this training.
"""

from __future__ import annotations

import os

from ..feedback import CoreError
from ..modelfile import MODEL_EXTENSION, read_metadata
from ..raster import check_output_path
from ..unet import tile_multiple

#: LOSS (``schema.model.LOSSES``) -> the output activation it trains.
ACTIVATIONS = {"categorical": "softmax", "binary": "sigmoid"}


def check_patch_size(patch_size: int, depth: int) -> None:
    """Raise a CoreError unless PATCH_SIZE is a multiple of 2**DEPTH."""
    multiple = tile_multiple(depth)
    if patch_size % multiple:
        lower = max(multiple, patch_size // multiple * multiple)
        raise CoreError(
            f"PATCH_SIZE {patch_size} is not a multiple of 2**DEPTH = {multiple} "
            f"(DEPTH {depth}): the U-Net halves the patch {depth} times. Use "
            f"{lower} or {lower + multiple}."
        )


def check_outputs(output_model: str, output_report, csv_log, inputs: list) -> None:
    """Refuse outputs that overwrite an input, each other, or lack the model extension."""
    if not output_model:
        raise CoreError("No OUTPUT_MODEL given: choose a file name ending in .keras.")
    if not str(output_model).lower().endswith(MODEL_EXTENSION):
        raise CoreError(
            f"OUTPUT_MODEL must end in {MODEL_EXTENSION} ('{output_model}' does "
            f"not): choose a name like model{MODEL_EXTENSION}."
        )
    check_output_path(output_model, inputs, "OUTPUT_MODEL")
    for path, what in ((output_report, "OUTPUT_REPORT"), (csv_log, "CSV log")):
        if not path:
            continue
        check_output_path(path, inputs + [output_model], what)
        if os.path.abspath(path) == os.path.abspath(output_model):
            raise CoreError(
                f"The {what} and OUTPUT_MODEL are the same file: choose another "
                f"name for the {what}."
            )


def check_init_model(path: str, n_classes: int, bands, n_input_bands: int) -> dict:
    """Read INIT_MODEL's metadata and check it fits this training.

    Returns:
        The init model's metadata.

    Raises:
        CoreError: when classes or bands differ.
    """
    meta = read_metadata(path)
    if int(meta.get("n_classes", -1)) != n_classes:
        raise CoreError(
            f"INIT_MODEL '{path}' has {meta.get('n_classes')} classes "
            f"({', '.join(meta.get('class_names', []))}) but CLASS_NAMES gives "
            f"{n_classes}: fine-tuning keeps the classes. Use the model's class "
            "names, or train from scratch without INIT_MODEL."
        )
    if int(meta.get("n_input_bands", n_input_bands)) != n_input_bands:
        raise CoreError(
            f"INIT_MODEL '{path}' was trained on images with "
            f"{meta.get('n_input_bands')} bands, these have {n_input_bands}: "
            "fine-tune on images from the same sensor, or train from scratch."
        )
    if bands is not None and list(meta.get("bands", [])) != list(bands):
        raise CoreError(
            f"INIT_MODEL '{path}' uses bands {meta.get('bands')}, BANDS asks for "
            f"{list(bands)}: leave BANDS empty to use the model's bands."
        )
    return meta
