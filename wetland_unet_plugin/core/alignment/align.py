"""The align job: an image and its label mask onto one pixel grid, cropped to their overlap.

:func:`align_pair` checks the request, picks the target CRS, reads the mask's
extent (raster or polygons, see :mod:`.polygons`), derives the output grid
(:mod:`.grid`), then writes the image and the mask onto it (:mod:`.warp`,
:mod:`.rasterize`) and the class mapping beside the mask (:mod:`.classmap`).

Both outputs are tiled, compressed GeoTIFFs written through
:func:`atomic_output`: on error or cancel nothing is left at the destinations.
"""

from __future__ import annotations

import contextlib
import os

import rasterio

from ..atomic import atomic_output, remove_quietly
from ..feedback import CoreError, Feedback, SubFeedback
from ..raster import check_output_path, open_raster
from ..schema import ALIGN
from .classmap import (
    CLASSES_SUFFIX,
    name_raster_ids,
    names_in_id_order,
    optional_class_names,
    write_classes_json,
)
from .crs import (
    corner_bounds,
    crs_name,
    no_crs_error,
    parse_crs,
    reproject_bounds,
    same_crs,
    utm_for,
)
from .grid import target_grid
from .polygons import read_polygons, split_vector_uri
from .rasterize import rasterize_polygons
from .rpc import rpc_options
from .validity import clear_invalid_labels
from .warp import copy_image_window, warp_image, warp_mask_raster


def _check_image_georeferencing(src, image, rpc):
    """The image must have RPCs to orthorectify with, or a CRS to be placed by."""
    if rpc:
        if not src.rpcs:
            raise CoreError(
                f"The image '{image}' has no RPC coefficients (RPC metadata "
                "in the file or an _rpc.txt / .RPB file beside it): switch the "
                "RPC option off, or put the scene's RPC file beside it."
            )
    elif src.crs is None:
        if src.rpcs:
            raise CoreError(
                f"The image '{image}' has no CRS but carries RPC coefficients: "
                "switch the RPC option on to orthorectify it, or assign a CRS."
            )
        raise no_crs_error("image", image)


def _target_crs(src, target_crs, rpc, feedback):
    """TARGET_CRS, defaulting to the image's (for RPC scenes without one: their UTM zone)."""
    dst_crs = parse_crs(target_crs)
    if dst_crs is None:
        if rpc and src.crs is None:
            dst_crs = utm_for(src.rpcs.long_off, src.rpcs.lat_off)
            feedback.info(f"Target CRS: {crs_name(dst_crs)} (the UTM zone of the scene).")
        else:
            dst_crs = src.crs
    elif src.crs is not None and same_crs(src.crs, dst_crs):
        dst_crs = src.crs  # keep the image's own definition, so the grid stays identical
    if not dst_crs.is_valid:
        raise CoreError(f"TARGET_CRS '{target_crs}' is not valid: choose another CRS.")
    return dst_crs


def align_pair(image=None, output_image=None, output_mask=None, *, feedback=None, **params) -> dict:
    """Reproject and pixel-align an image and its mask onto one grid, cropped to their overlap.

    Args:
        feedback: :class:`Feedback` for progress, log and cancel.
        **params: the parameters of ``schema.ALIGN`` by keyword: ``image``,
            ``output_image``, ``output_mask`` (uint8/uint16, nodata 0); ``mask`` (a label
            raster in any CRS, resolution, extent), or ``mask_vector`` (polygons, or
            'file.gpkg|layername=x') with ``vector_layer`` and ``class_field`` (integer
            ids, or text names); ``class_names`` ("water,wetland" or a list: text classes
            map to ids 1..N in this order, values not listed stay 0; for integer ids,
            names for them); ``target_crs`` (any form GDAL accepts; default the image's,
            or for ``rpc`` without an image CRS the UTM zone of the scene);
            ``pixel_size`` (0 = the image's, or GDAL's suggestion when reprojecting);
            ``resampling`` (the image's; the mask always uses nearest neighbour);
            ``rpc`` (orthorectify the image with its RPC coefficients); ``dem`` (terrain
            heights for ``rpc``; without it the RPCs' height offset, not 0 m). Without
            ``mask`` and ``mask_vector`` the image alone is aligned (orthorectified), over
            its whole extent, and ``output_mask`` is None.

    Returns:
        ``{"output_image", "output_mask", "classes_json", "width", "height", "crs"
        (WKT), "transform" (a, b, c, d, e, f), "pixel_size" [x, y], "bounds",
        "image_resampled" (False when the image pixels were copied),
        "class_mapping" ({name: id} or None), "class_names" (in id order or None),
        "labelled_pixels" ({"id": count}), "labels_dropped" (labels cleared because the
        aligned image is invalid under them: nodata, NaN, a GDAL mask, off the image)}``.
        The aligned mask holds no label where the aligned image is invalid.

    Raises:
        CoreError: with what is wrong and what to do; Canceled on cancel. No
        output is left behind in either case.
    """
    feedback = feedback or Feedback()
    p = ALIGN.check(dict(params, image=image, output_image=output_image, output_mask=output_mask))
    image, output_image, output_mask = p["image"], p["output_image"], p["output_mask"]
    mask, mask_vector, vector_layer = p["mask"], p["mask_vector"], p["vector_layer"]
    class_field, target_crs, rpc, dem = p["class_field"], p["target_crs"], p["rpc"], p["dem"]
    if dem and not rpc:
        raise CoreError(
            "DEM is used to orthorectify with the image's RPCs: switch RPC on, or leave "
            "DEM empty for an image that is already georeferenced."
        )
    resampling, pixel_size = p["resampling"], p["pixel_size"]
    names = optional_class_names(p["class_names"])
    has_mask = mask not in (None, "")
    has_vector = mask_vector not in (None, "")
    if has_mask and has_vector:
        raise CoreError(
            "Both MASK and MASK_VECTOR are given: choose one, the label raster or "
            "the class polygons."
        )
    has_labels = has_mask or has_vector  # without: the image alone (e.g. orthorectified)
    vector_path = split_vector_uri(mask_vector, vector_layer)[0] if has_vector else None
    inputs = [image, mask if has_mask else None, vector_path, dem]
    check_output_path(output_image, inputs, "output image")
    if has_labels:
        check_output_path(output_mask, inputs, "output mask")
    if has_labels and os.path.abspath(output_image) == os.path.abspath(output_mask):
        raise CoreError(
            "OUTPUT_IMAGE and OUTPUT_MASK are the same file: give them different paths."
        )
    classes_json = output_mask + CLASSES_SUFFIX if has_labels else None

    with contextlib.ExitStack() as stack:
        src = stack.enter_context(open_raster(image, "image"))
        _check_image_georeferencing(src, image, rpc)
        dst_crs = _target_crs(src, target_crs, rpc, feedback)
        if rpc:  # the terrain heights (DEM, or the RPCs' height offset), checked here
            rpc = rpc_options(image, src, dem, feedback)

        # The mask's extent in the target CRS.
        msk = shapes = vector_info = None
        if has_mask:
            msk = stack.enter_context(open_raster(mask, "mask"))
            if msk.crs is None:
                raise no_crs_error("mask", mask)
            mask_bounds = reproject_bounds(msk.crs, dst_crs, corner_bounds(msk))
        elif has_vector:
            shapes, vector_info = read_polygons(
                mask_vector,
                vector_layer,
                class_field,
                p["class_names"],
                dst_crs,
                SubFeedback(feedback, 0.0, 0.05),
            )
            mask_bounds = vector_info["bounds"]
        else:
            mask_bounds = None  # no labels: the image's whole extent

        grid = target_grid(src, rpc, dst_crs, pixel_size, mask_bounds, feedback)
        transform, width, height = grid.transform, grid.width, grid.height

        # Write both outputs; neither appears unless both succeed.
        tmp_image = stack.enter_context(atomic_output(output_image))
        tmp_mask = stack.enter_context(atomic_output(output_mask)) if has_labels else None
        image_step = SubFeedback(feedback, 0.05, 0.75)
        if grid.kept:
            feedback.info("The image keeps its own grid: its pixels are copied unchanged.")
            copy_image_window(
                src, tmp_image, grid.col0, grid.row0, width, height, transform, image_step
            )
        else:
            feedback.info(
                f"Resampling the image ({resampling}{', RPC orthorectification' if rpc else ''})."
            )
            warp_image(
                image,
                src,
                tmp_image,
                dst_crs,
                transform,
                width,
                height,
                resampling,
                rpc,
                image_step,
            )
        mask_step = SubFeedback(feedback, 0.75, 0.95)
        if has_mask:
            labelled = warp_mask_raster(
                mask, msk, tmp_mask, dst_crs, transform, width, height, mask_step
            )
            mapping, document = name_raster_ids(mask, names, feedback)
        elif has_vector:
            labelled = rasterize_polygons(
                shapes, vector_info, tmp_mask, transform, width, height, mask_step
            )
            mapping, document = vector_info["mapping"], vector_info["json"]
        else:
            labelled, mapping, document = {}, None, None
        dropped = {}
        if has_labels:  # no label under an invalid image pixel (nodata, mask, off the image)
            labelled, dropped = clear_invalid_labels(
                tmp_image, tmp_mask, labelled, SubFeedback(feedback, 0.95, 1.0)
            )
        feedback.check_canceled()

        # Both outputs must share one grid exactly.
        with rasterio.open(tmp_image) as a, rasterio.open(tmp_mask or tmp_image) as b:
            if (
                (a.width, a.height) != (b.width, b.height)
                or a.transform != b.transform
                or a.crs != b.crs
            ):
                raise RuntimeError(
                    f"align_pair: outputs on different grids ({a.transform}, "
                    f"{b.transform}, {a.crs}, {b.crs})"
                )
            crs_wkt = a.crs.to_wkt()
            out_transform = a.transform

        if document is not None:
            write_classes_json(stack.enter_context(atomic_output(classes_json)), document, labelled)
    if document is None and classes_json and os.path.exists(classes_json):
        remove_quietly(classes_json)  # a stale mapping of an earlier run of this output
    feedback.progress(1.0)

    total = width * height
    if has_labels:
        feedback.info(
            "Labelled pixels: "
            + (", ".join(f"{k}: {v:,}" for k, v in labelled.items()) or "none")
            + f" (of {total:,} px)."
        )
        feedback.info(
            f"Labels dropped under invalid image pixels (nodata, masked, outside the "
            f"image): {sum(dropped.values()):,}"
            + (
                " (" + ", ".join(f"{k}: {v:,}" for k, v in dropped.items()) + ")."
                if dropped
                else "."
            )
        )
    if has_labels and not any(labelled.values()):
        feedback.warning(
            "The aligned mask has no labelled pixel in the common extent: check "
            "the mask's classes and that it covers the image"
            + (", and that the image has valid pixels under the labels." if dropped else ".")
        )
    return {
        "output_image": output_image,
        "output_mask": output_mask if has_labels else None,
        "classes_json": classes_json if document is not None else None,
        "width": int(width),
        "height": int(height),
        "crs": crs_wkt,
        "transform": [float(v) for v in tuple(out_transform)[:6]],
        "pixel_size": [float(grid.px), float(grid.py)],
        "bounds": [float(v) for v in grid.bounds],
        "image_resampled": not grid.kept,
        "class_mapping": mapping,
        "class_names": names_in_id_order(mapping),
        "labelled_pixels": labelled,
        "labels_dropped": sum(dropped.values()),
    }
