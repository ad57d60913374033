"""``prepare_scene``: a delivered scene made analysis-ready (the job ``wetlandunet:preparescene``).

Pixels flagged by the usable-data mask (the chosen UDM2 classes, blackfill and
unusable data; every flagged pixel of a legacy UDM), grown by ``mask_buffer``
pixels, become nodata, as do the scene's own nodata and GDAL mask. Bands get
canonical names, so a model picks its bands by name in any band layout. With
``radiometry="reflectance"`` values become 0..1 reflectance: surface reflectance
divided by 10000, TOA radiance times the metadata XML's coefficients. The scene
is streamed in strips (with a halo of ``mask_buffer`` rows for the dilation) and
the output appears only when complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np
import rasterio
from rasterio.windows import Window

from ..atomic import atomic_output
from ..feedback import CoreError, Feedback, SubFeedback
from ..raster import (
    check_output_path,
    chunk_windows,
    copy_metadata,
    grid_description,
    gtiff_profile,
    open_raster,
    same_grid,
    valid_pixels,
)
from ..schema.planet import PREPARE_SCENE
from . import metadata, naming, ortho, udm

#: Surface reflectance products store reflectance x 10000.
SR_SCALE = 10000.0
#: Nodata of reflectance outputs (float32).
REFLECTANCE_NODATA = -9999.0


def prepare_scene(input=None, output=None, *, feedback=None, **params) -> dict:
    """Mask, name and optionally calibrate a delivered scene.

    Args:
        input: the scene (a Planet asset or any multiband GeoTIFF).
        output: the prepared GeoTIFF.
        feedback: progress, log and cancel.
        **params: ``udm``, ``mask_classes``, ``mask_buffer``, ``radiometry``, ``dem``,
            ``target_crs``, ``pixel_size`` (see ``schema.planet.PREPARE_SCENE``). A scene
            with RPCs and no georeferencing (or with a DEM) is masked on its raw grid,
            then orthorectified (``ortho``).

    Returns:
        ``output``, ``masked_pixels`` (valid scene pixels the UDM masked, buffer
        included), ``valid_pixels`` (pixels holding data in the output), ``item_id``,
        ``acquired``, ``udm`` (the mask used), ``product_kind``, ``radiometry``,
        ``band_names``.

    Raises:
        CoreError: a UDM on another grid or with a wrong band count, reflectance asked
            for without the metadata it needs, a DEM that does not cover the scene; all
            before anything is written.
    """
    feedback = feedback or Feedback()
    p = PREPARE_SCENE.check(dict(params, input=input, output=output))
    scene, output = p["input"], p["output"]
    classes = list(p["mask_classes"] or [])
    udm_path = p["udm"] or naming.find_udm(scene)
    check_output_path(output, [scene, udm_path], "prepared scene")
    item = naming.item_id(scene) or ""
    kind = naming.product_kind(scene)
    xml_path = naming.find_metadata_xml(scene)
    acquired = metadata.acquired(naming.find_metadata_json(scene), xml_path)
    with open_raster(scene, "scene") as src, contextlib.ExitStack() as stack:
        mask_src = stack.enter_context(open_raster(udm_path, "UDM")) if udm_path else None
        plan = _plan(src, mask_src, udm_path, classes, p, kind, xml_path, scene, feedback)
        to_warp = ortho.needs_warp(src, p)
        if to_warp:
            ortho.check(src, scene, p)
            rpc = ortho.uses_rpc(src, p)
            folder = stack.enter_context(
                tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(output)))
            )
            masked = os.path.join(folder, "masked.tif")
            counts = _write(
                src, mask_src, plan, p["mask_buffer"], masked, SubFeedback(feedback, 0.0, 0.5)
            )
            counts["valid"] = ortho.warp(masked, output, rpc, p, SubFeedback(feedback, 0.5, 1.0))
        else:
            counts = _write(src, mask_src, plan, p["mask_buffer"], output, feedback)
    feedback.info(
        f"{counts['masked']} pixel(s) masked by the usable-data mask, "
        f"{counts['valid']} valid pixel(s) written to {output}."
    )
    feedback.progress(1.0)
    return {
        "output": output,
        "masked_pixels": counts["masked"],
        "valid_pixels": counts["valid"],
        "item_id": item,
        "acquired": acquired,
        "udm": udm_path or "",
        "product_kind": kind,
        "radiometry": p["radiometry"],
        "band_names": plan["names"],
    }


def _plan(src, mask_src, udm_path, classes, p, kind, xml_path, scene, feedback) -> dict:
    """Everything checked before writing: the UDM, the radiometry factors, the band names."""
    plan = {"udm_kind": None, "udm_bands": []}
    if mask_src is not None:
        if not same_grid(src, mask_src):
            raise CoreError(
                f"The UDM '{udm_path}' ({grid_description(mask_src)}) is not on the scene's "
                f"grid ({grid_description(src)}): give the UDM delivered with this scene "
                "(same clip, same size)."
            )
        plan["udm_kind"] = udm.udm_kind(mask_src, udm_path)
        plan["udm_bands"] = udm.udm_bands(plan["udm_kind"], classes)
        which = "given" if p["udm"] else "found beside the scene"
        extra = (
            f"masking {', '.join(classes) or 'no class'}, blackfill and unusable data"
            if plan["udm_kind"] == "udm2"
            else "a legacy UDM: every flagged pixel (blackfill, unusable data) is masked"
        )
        feedback.info(f"Usable-data mask {which}: {udm_path} ({extra}).")
    else:
        feedback.warning(
            f"No usable-data mask given or found beside '{scene}': only the scene's nodata "
            "is masked, clouds and shadows stay. Give UDM (the scene's udm2 file)."
        )
    plan["factors"] = _factors(p["radiometry"], kind, xml_path, src.count, scene, feedback)
    names = naming.CANONICAL_BANDS.get(src.count)
    if names:
        feedback.info(f"Band names: {', '.join(names)}.")
    plan["names"] = list(names) if names else [d or "" for d in src.descriptions]
    return plan


def _factors(radiometry, kind, xml_path, count, scene, feedback):
    """Per-band multipliers to reflectance (None: values kept as they are)."""
    if radiometry != "reflectance":
        return None
    if kind == "surface_reflectance":
        feedback.info(f"Surface reflectance divided by {SR_SCALE:g}.")
        return np.full(count, 1.0 / SR_SCALE)
    if kind == "toa_radiance":
        if not xml_path:
            raise CoreError(
                f"RADIOMETRY reflectance: '{scene}' is a TOA radiance product and its "
                "metadata XML (<item id>_..._metadata.xml, with the reflectance "
                "coefficients) is not beside it. Put the delivery's XML beside the scene, "
                "or use RADIOMETRY as_is."
            )
        coefficients = metadata.reflectance_coefficients(xml_path)
        missing = [b for b in range(1, count + 1) if b not in coefficients]
        if missing:
            raise CoreError(
                f"The metadata XML '{xml_path}' has no reflectance coefficient for band(s) "
                f"{missing} of '{scene}': give the XML of this scene's asset."
            )
        feedback.info(f"TOA radiance converted with the coefficients of {xml_path}.")
        return np.array([coefficients[b] for b in range(1, count + 1)])
    raise CoreError(
        f"RADIOMETRY reflectance: '{scene}' is not named as a Planet surface reflectance "
        "(_SR) or analytic radiance asset, so its scaling is unknown. Use RADIOMETRY as_is."
    )


def _halo(window: Window, halo: int, width: int, height: int) -> tuple[Window, tuple]:
    """``window`` grown by ``halo`` pixels (within the raster), and where ``window`` lies in it."""
    row0, col0 = max(0, window.row_off - halo), max(0, window.col_off - halo)
    row1 = min(height, window.row_off + window.height + halo)
    col1 = min(width, window.col_off + window.width + halo)
    inner = (
        slice(window.row_off - row0, window.row_off - row0 + window.height),
        slice(window.col_off - col0, window.col_off - col0 + window.width),
    )
    return Window(col0, row0, col1 - col0, row1 - row0), inner


def _udm_mask(mask_src, plan, window, buffer, width, height, classes) -> np.ndarray:
    """True where the UDM masks a pixel of ``window``, grown by ``buffer`` pixels."""
    if mask_src is None:
        return np.zeros((int(window.height), int(window.width)), bool)
    big, inner = _halo(window, buffer, width, height)
    block = mask_src.read(plan["udm_bands"], window=big)
    masked = udm.decode(block, plan["udm_kind"], classes)
    if buffer > 0 and masked.any():
        from skimage.morphology import binary_dilation, disk

        masked = binary_dilation(masked, footprint=disk(buffer))
    return masked[inner]


def _write(src, mask_src, plan, buffer, output, feedback) -> dict:
    """Stream the scene to ``output`` with masked pixels set to nodata; count them."""
    factors = plan["factors"]
    if factors is None:
        dtype, nodata = src.dtypes[0], src.nodata if src.nodata is not None else 0
    else:
        dtype, nodata = "float32", REFLECTANCE_NODATA
    profile = gtiff_profile(src, count=src.count, dtype=dtype, nodata=nodata)
    counts = {"masked": 0, "valid": 0}
    classes = [c for c in udm.UDM2_CLASSES if udm.UDM2_CLASSES[c] in plan["udm_bands"]]
    windows = list(chunk_windows(src.width, src.height, src.count * 8))
    with atomic_output(output) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            copy_metadata(src, dst, descriptions=False)
            if src.rpcs is not None:
                dst.rpcs = src.rpcs  # kept for orthorectification (ortho.warp)
            for index, window in enumerate(windows):
                feedback.check_canceled()
                block = src.read(window=window)
                valid = valid_pixels(block, src.nodata)
                valid &= src.dataset_mask(window=window) > 0
                masked = _udm_mask(mask_src, plan, window, buffer, src.width, src.height, classes)
                counts["masked"] += int((masked & valid).sum())
                keep = valid & ~masked
                counts["valid"] += int(keep.sum())
                data = block if factors is None else block * factors[:, None, None]
                data = data.astype(dtype)
                data[:, ~keep] = nodata
                dst.write(data, window=window)
                feedback.progress(0.95 * (index + 1) / len(windows))
            for band, name in enumerate(plan["names"], start=1):
                if name:
                    dst.set_band_description(band, name)
            dst.update_tags(
                RADIOMETRY="reflectance" if factors is not None else "as_is",
                PRODUCT_KIND=naming.product_kind(src.name),
            )
    return counts
