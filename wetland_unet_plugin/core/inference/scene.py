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

from .. import raster as rasterlib
from ..areas import M2_PER_HA, row_pixel_areas, write_area_table
from ..feedback import CoreError, Feedback
from ..schema import PREDICT
from .cache import resolve_model
from .outputs import Blender, Outputs, check_outputs, gdal_cache_bytes, open_outputs
from .pipeline import run_pipeline, small_pages
from .predictors import get_predictor
from .reader import StripReader
from .spec import check_bands, model_spec, radiometric_shift, warn_grid
from .tiling import plan_tiles, resolve_tiling


def predict_scene(
    model=None,
    input=None,
    output=None,
    output_probabilities=None,
    output_map=None,
    *,
    feedback=None,
    **params,
) -> dict:
    """Classify a scene with a trained model: tiled, overlapping, blended, streamed to disk.

    Args:
        model, input, output, output_probabilities, output_map, **params: the parameters
            of ``schema.PREDICT`` by keyword (``python -m wetland_unet_plugin.core predict
            --help`` lists them): ``model`` (a model file, loaded once per process, see
            ``get_cached_model``, or a ``LoadedModel``), ``input`` (any GDAL raster; the
            model's bands are read from it), ``output`` (uint8 class ids 1..N, nodata 0),
            ``output_probabilities`` (one band per class), ``output_map`` (RGBA),
            ``tile_size`` (0 or None: the training patch, at least 512; a multiple of
            2**depth), ``overlap`` (-1 or None: twice the model's receptive margin, at
            most tile/4 and 64), ``tta`` (1, 2, 4 or 8 dihedral transforms averaged, all
            on the same cut tile, so TTA work scales with the valid tiles only),
            ``batch_size`` (tiles per model call), ``probability_dtype`` ("uint8": p x
            254, nodata 255; "float32": nodata -1), ``precision``,
            ``output_uncertainty`` (float32 normalised entropy 0..1, nodata -1; with
            TTA > 1 a second band, the share of transforms disagreeing with the class) and
            ``output_areas`` (CSV of pixels and hectares per class, see ``areas``).
        feedback: ``Feedback`` for progress, messages and cancel.

    Returns:
        dict with ``output``, ``output_probabilities``, ``output_map``,
        ``output_uncertainty``, ``output_areas`` (paths or None), ``class_hectares``
        (name -> hectares when ``output_areas`` is given, else None),
        ``valid_pixels``, ``tiles_total``, ``tiles_predicted``, ``tiles_skipped``,
        ``model_megapixels`` (pixels sent to the model, per TTA transform: the tiles
        cut to their valid part), ``model_calls``, ``seconds``, ``megapixels_per_second``
        (valid pixels), ``class_names``, ``class_pixel_counts`` (name -> pixels),
        ``tile_size``, ``overlap``, ``tta``.

    Raises:
        CoreError: for inputs that cannot work (checked before any output is written).
        Canceled: when canceled; no output is left behind.
    """
    return run_scene(
        model, input, output, output_probabilities, output_map, feedback=feedback, **params
    )


def run_scene(
    model=None,
    input=None,
    output=None,
    output_probabilities=None,
    output_map=None,
    *,
    feedback=None,
    crop: bool = True,
    merge: bool = True,
    fold: bool = True,
    portable: bool = False,
    **params,
) -> dict:
    """``predict_scene`` with the engine's switches, which benchmarks and tests turn off.

    Args:
        model, input, output, output_probabilities, output_map, feedback, params: as
            ``predict_scene``.
        crop: cut tiles to their valid part (``tiling.valid_crop``); False sends every
            tile with a valid pixel whole. Ignored (False) for predictors that need
            whole tiles.
        merge: merge neighbouring tiles of a row into wide tiles where that computes
            fewer pixels (``tiling.merge_row``); False sends tiles apart.
        fold: run the folded inference graph (see ``predictors.get_predictor``).
        portable: use the Keras-ops predictor even under TensorFlow.

    Returns:
        As ``predict_scene``.
    """
    feedback = feedback or Feedback()
    start = time.perf_counter()
    p = PREDICT.check(
        dict(
            params,
            model=model,
            input=input,
            output=output,
            output_probabilities=output_probabilities,
            output_map=output_map,
        )
    )
    model, input, output = p["model"], p["input"], p["output"]
    tta, batch_size, precision = p["tta"], p["batch_size"], p["precision"]
    probability_dtype = p["probability_dtype"]
    tile_size = p["tile_size"] or None  # 0: automatic
    overlap = None if p["overlap"] is None or p["overlap"] < 0 else p["overlap"]  # -1: automatic
    paths = {
        "output": output,
        "output_probabilities": p["output_probabilities"] or None,
        "output_map": p["output_map"] or None,
        "output_uncertainty": p["output_uncertainty"] or None,
    }
    areas_path = p["output_areas"] or None
    row_areas, geographic = None, False
    model_path = os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
    loaded = resolve_model(model)
    spec = model_spec(loaded, feedback)
    with rasterlib.open_raster(input, "input scene") as src:
        band_indexes = check_bands(spec, src, input, feedback)
        tile, ov = resolve_tiling(spec, tile_size, overlap, feedback)
        check_outputs(
            paths, [input, model_path], src.height, src.width, spec.n_classes, probability_dtype
        )
        if areas_path:
            rasterlib.check_output_path(areas_path, [input, model_path], what="OUTPUT_AREAS")
            if os.path.realpath(areas_path) in {os.path.realpath(v) for v in paths.values() if v}:
                raise CoreError("OUTPUT_AREAS must not be the path of another output.")
            row_areas = row_pixel_areas(src.crs, src.transform, src.height, "input scene")
            geographic = bool(src.crs.is_geographic)
        warn_grid(spec, src, feedback)
        shift = radiometric_shift(spec, src, band_indexes, feedback)
        grid = plan_tiles(src.height, src.width, tile, ov, spec.depth)
        base = rasterlib.gtiff_profile(src)
        cache_bytes = gdal_cache_bytes(src, grid, spec.n_classes, probability_dtype, paths)
    feedback.info(
        f"Predicting {grid.width} x {grid.height} px with tiles of {tile} px, "
        f"overlap {ov} px ({grid.n_cols} x {grid.n_rows} tiles), TTA {tta}, "
        f"batch {batch_size}, {precision}."
    )
    votes = bool(paths["output_uncertainty"]) and int(tta) > 1  # + TTA disagreement band
    predictor = get_predictor(loaded, tta, precision, fold=fold, portable=portable, votes=votes)
    feedback.check_canceled()
    import rasterio

    with ExitStack() as stack:
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=cache_bytes))
        stack.enter_context(small_pages())
        datasets = open_outputs(stack, paths, base, spec, probability_dtype, votes)
        outputs = Outputs(
            datasets,
            spec,
            probability_dtype,
            grid.width,
            block_rows=int(base["blockysize"]),
            row_areas=row_areas if geographic else None,
            votes=votes,
        )
        blender = Blender(grid, spec.n_classes * (2 if votes else 1), outputs)
        reader = StripReader(input, band_indexes, spec.normalization, grid)
        stack.callback(reader.close)
        counts = run_pipeline(
            reader,
            blender,
            predictor,
            grid,
            batch_size,
            feedback,
            crop=crop and getattr(predictor, "crop_tiles", True),
            merge=merge,
        )
        feedback.check_canceled()
    seconds = time.perf_counter() - start
    valid = blender.valid_pixels
    if valid == 0:
        feedback.warning(
            "The input has no valid pixel (all nodata, NaN or masked): the "
            "outputs hold only nodata."
        )
    feedback.progress(1.0)
    names = [str(n) for n in spec.class_names[: spec.n_classes]]
    class_counts = {name: int(outputs.counts[k + 1]) for k, name in enumerate(names)}
    hectares = None
    if areas_path:
        area_m2 = outputs.area_m2[1:] if geographic else outputs.counts[1:] * row_areas[0]
        hectares = area_m2 / M2_PER_HA
        write_area_table(areas_path, names, outputs.counts[1:], hectares)
    return {
        "output": output,
        "output_probabilities": paths["output_probabilities"],
        "output_map": paths["output_map"],
        "output_uncertainty": paths["output_uncertainty"],
        "output_areas": areas_path,
        "class_hectares": None
        if hectares is None
        else {name: round(float(h), 6) for name, h in zip(names, hectares)},
        "valid_pixels": int(valid),
        "radiometric_shift": shift,
        "tiles_total": grid.tiles_total,
        "tiles_predicted": counts["tiles_predicted"],
        "tiles_skipped": counts["tiles_skipped"],
        "model_megapixels": round(counts["model_pixels"] / 1e6, 4),
        "model_calls": counts["model_calls"],
        "seconds": round(seconds, 3),
        "megapixels_per_second": round(valid / 1e6 / seconds, 4) if seconds > 0 else 0.0,
        "class_names": names,
        "class_pixel_counts": class_counts,
        "tile_size": tile,
        "overlap": ov,
        "tta": int(tta),
    }
