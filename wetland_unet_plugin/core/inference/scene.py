"""``predict_scene``: classify a scene with a trained model, the job the worker and CLI run.

The scene is read one strip (one row of overlapping tiles) at a time; tiles
without a valid pixel in their weighted part are skipped, the others are cut to
their valid part, run through the model (folded inference graph, every TTA
transform on the same cut tile) and blended into a strip buffer whose finished
rows are written. Memory does not grow with the scene's height and only
linearly with its width; GDAL's block cache is bounded to what one strip needs
(``outputs.gdal_cache_bytes``). Every check that can fail runs before the first
output is opened. See ``tiling`` (layout, blending), ``reader`` (validity),
``pipeline`` (threads), ``predictors`` and ``folding`` (the model), ``outputs``
(files).

Precision: ``"mixed_float16"`` / ``"mixed_bfloat16"`` rebuild the model from its
configuration under that Keras dtype policy (the output layer stays float32)
and copy the weights; the original model is left untouched.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack

from .. import dihedral
from .. import raster as rasterlib
from ..feedback import CoreError, Feedback
from .cache import resolve_model
from .folding import PRECISIONS
from .outputs import (
    PROBABILITY_DTYPES,
    Blender,
    Outputs,
    check_outputs,
    gdal_cache_bytes,
    open_outputs,
)
from .pipeline import run_pipeline
from .predictors import get_predictor
from .reader import StripReader
from .spec import check_bands, model_spec, warn_grid
from .tiling import plan_tiles, resolve_tiling


def _check_options(tta, batch_size, probability_dtype, precision) -> None:
    dihedral.tta_transforms(tta)
    try:
        if int(batch_size) < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise CoreError(f"BATCH_SIZE must be a whole number of at least 1; got "
                        f"{batch_size!r}.") from None
    if probability_dtype not in PROBABILITY_DTYPES:
        raise CoreError(f"Probability data type must be one of {', '.join(PROBABILITY_DTYPES)}; "
                        f"got {probability_dtype!r}.")
    if precision not in PRECISIONS:
        raise CoreError(f"PRECISION must be one of {', '.join(PRECISIONS)}; got {precision!r}.")


def predict_scene(model, input, output, output_probabilities=None, output_map=None,
                  tile_size=None, overlap=None, tta=1, batch_size=4, probability_dtype="uint8",
                  precision="float32", feedback=None) -> dict:
    """Classify a scene with a trained model: tiled, overlapping, blended, streamed to disk.

    Args:
        model: a model file path (loaded once per process, see ``get_cached_model``)
            or a ``LoadedModel``.
        input: the scene (any GDAL raster); the model's BANDS are read from it.
        output: class raster to write (uint8, class ids 1..N, nodata 0).
        output_probabilities: optional per-class probability raster.
        output_map: optional RGBA picture in the class colours.
        tile_size: tile size in pixels, a multiple of 2**depth (default: the training
            patch, at least 512).
        overlap: pixels shared by neighbouring tiles (default: twice the model's
            receptive margin, at most tile/4 and at most 64); rounded to a multiple
            of 2**depth.
        tta: 1, 2, 4 or 8 dihedral transforms averaged (every transform of a tile
            runs on the same cut tile, so TTA work scales with the valid tiles only).
        batch_size: tiles per model call.
        probability_dtype: "uint8" (p * 254, nodata 255) or "float32" (nodata -1).
        precision: "float32", "mixed_float16" or "mixed_bfloat16".
        feedback: ``Feedback`` for progress, messages and cancel.

    Returns:
        dict with ``output``, ``output_probabilities``, ``output_map`` (paths or None),
        ``valid_pixels``, ``tiles_total``, ``tiles_predicted``, ``tiles_skipped``,
        ``model_megapixels`` (pixels sent to the model, per TTA transform: the tiles
        cut to their valid part), ``model_calls``, ``seconds``, ``megapixels_per_second``
        (valid pixels), ``class_names``, ``class_pixel_counts`` (name -> pixels),
        ``tile_size``, ``overlap``, ``tta``.

    Raises:
        CoreError: for inputs that cannot work (checked before any output is written).
        Canceled: when canceled; no output is left behind.
    """
    return run_scene(model, input, output, output_probabilities=output_probabilities,
                     output_map=output_map, tile_size=tile_size, overlap=overlap, tta=tta,
                     batch_size=batch_size, probability_dtype=probability_dtype,
                     precision=precision, feedback=feedback)


def run_scene(model, input, output, output_probabilities=None, output_map=None,
              tile_size=None, overlap=None, tta=1, batch_size=4, probability_dtype="uint8",
              precision="float32", feedback=None, *, crop: bool = True, fold: bool = True,
              portable: bool = False) -> dict:
    """``predict_scene`` with the engine's switches, which benchmarks and tests turn off.

    Args:
        model, input, output, output_probabilities, output_map, tile_size, overlap, tta,
            batch_size, probability_dtype, precision, feedback: as ``predict_scene``.
        crop: cut tiles to their valid part (``tiling.valid_crop``); False sends every
            tile with a valid pixel whole. Ignored (False) for predictors that need
            whole tiles.
        fold: run the folded inference graph (see ``predictors.get_predictor``).
        portable: use the Keras-ops predictor even under TensorFlow.

    Returns:
        As ``predict_scene``.
    """
    feedback = feedback or Feedback()
    start = time.perf_counter()
    _check_options(tta, batch_size, probability_dtype, precision)
    batch_size = int(batch_size)
    if not output:
        raise CoreError("No OUTPUT given: choose a path for the class raster.")
    paths = {"output": output, "output_probabilities": output_probabilities or None,
             "output_map": output_map or None}
    model_path = os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
    loaded = resolve_model(model)
    spec = model_spec(loaded, feedback)
    with rasterlib.open_raster(input, "input scene") as src:
        band_indexes = check_bands(spec, src, input)
        tile, ov = resolve_tiling(spec, tile_size, overlap, feedback)
        check_outputs(paths, [input, model_path], src.height, src.width, spec.n_classes,
                      probability_dtype)
        warn_grid(spec, src, feedback)
        grid = plan_tiles(src.height, src.width, tile, ov, spec.depth)
        base = rasterlib.gtiff_profile(src)
        cache_bytes = gdal_cache_bytes(src, grid, spec.n_classes, probability_dtype)
    feedback.info(f"Predicting {grid.width} x {grid.height} px with tiles of {tile} px, "
                  f"overlap {ov} px ({grid.n_cols} x {grid.n_rows} tiles), TTA {tta}, "
                  f"batch {batch_size}, {precision}.")
    predictor = get_predictor(loaded, tta, precision, fold=fold, portable=portable)
    feedback.check_canceled()
    import rasterio

    with ExitStack() as stack:
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=cache_bytes))
        datasets = open_outputs(stack, paths, base, spec, probability_dtype)
        outputs = Outputs(datasets, spec, probability_dtype, grid.width,
                          block_rows=int(base["blockysize"]))
        blender = Blender(grid, spec.n_classes, outputs)
        reader = StripReader(input, band_indexes, spec.normalization, grid)
        stack.callback(reader.close)
        counts = run_pipeline(reader, blender, predictor, grid, batch_size, feedback,
                              crop=crop and getattr(predictor, "crop_tiles", True))
        feedback.check_canceled()
    seconds = time.perf_counter() - start
    valid = blender.valid_pixels
    if valid == 0:
        feedback.warning("The input has no valid pixel (all nodata, NaN or masked): the "
                         "outputs hold only nodata.")
    feedback.progress(1.0)
    class_counts = {str(name): int(outputs.counts[k + 1])
                    for k, name in enumerate(spec.class_names[:spec.n_classes])}
    return {
        "output": output,
        "output_probabilities": paths["output_probabilities"],
        "output_map": paths["output_map"],
        "valid_pixels": int(valid),
        "tiles_total": grid.tiles_total,
        "tiles_predicted": counts["tiles_predicted"],
        "tiles_skipped": counts["tiles_skipped"],
        "model_megapixels": round(counts["model_pixels"] / 1e6, 4),
        "model_calls": counts["model_calls"],
        "seconds": round(seconds, 3),
        "megapixels_per_second": round(valid / 1e6 / seconds, 4) if seconds > 0 else 0.0,
        "class_names": [str(n) for n in spec.class_names[:spec.n_classes]],
        "class_pixel_counts": class_counts,
        "tile_size": tile,
        "overlap": ov,
        "tta": int(tta),
    }
