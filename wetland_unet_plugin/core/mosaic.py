"""One class map of many scenes on one grid: the most confident prediction wins.

Every scene's class map and probabilities are warped (nearest neighbour,
rasterio ``WarpedVRT``) onto the mosaic's grid window by window, so memory
depends on the window, never on the mosaic or the number of scenes. The grid:
TARGET_CRS (default the first scene's CRS), the first scene's pixel size (its
default warped size in another CRS), snapped to the first scene's pixel
corners when the CRS is the same, covering every scene.

The rule for overlaps: a pixel takes the class of the scene whose probability
for its own class (its confidence) is highest there; a tie keeps the scene
listed first; a pixel that is nodata (or masked) in a scene never wins, so a
scene's cloud hole is filled by any other scene that saw the ground.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import raster as rasterlib
from .atomic import atomic_output
from .feedback import CoreError, Feedback

#: Bytes per mosaic pixel a window may use (classes, confidences, one scene's reads).
_WINDOW_BYTES = 16 * 1024 * 1024


@dataclass
class Grid:
    """The mosaic's grid."""

    crs: object
    transform: object
    width: int
    height: int


def mosaic_grid(class_maps: list, target_crs=None) -> Grid:
    """The grid covering every class map (see the module's description).

    Raises:
        CoreError: for a map without a CRS, or one that cannot be reprojected.
    """
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import from_origin
    from rasterio.warp import calculate_default_transform, transform_bounds

    with rasterio.open(class_maps[0]) as first:
        if first.crs is None:
            raise CoreError(f"{class_maps[0]} has no CRS: a mosaic needs georeferenced maps.")
        crs = CRS.from_user_input(target_crs) if target_crs else first.crs
        if crs == first.crs:
            rx, ry = abs(first.transform.a), abs(first.transform.e)
            ox, oy = first.transform.c, first.transform.f
        else:
            t, _, _ = calculate_default_transform(
                first.crs, crs, first.width, first.height, *first.bounds
            )
            rx = ry = max(abs(t.a), abs(t.e))
            ox = oy = 0.0
    boxes = []
    for path in class_maps:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise CoreError(f"{path} has no CRS: a mosaic needs georeferenced maps.")
            try:
                boxes.append(transform_bounds(src.crs, crs, *src.bounds, densify_pts=21))
            except Exception as err:
                raise CoreError(
                    f"{path} cannot be reprojected to the mosaic's CRS ({err}): choose a "
                    "TARGET_CRS that covers every scene."
                ) from None
    west = min(b[0] for b in boxes)
    south = min(b[1] for b in boxes)
    east = max(b[2] for b in boxes)
    north = max(b[3] for b in boxes)
    x0 = ox + math.floor((west - ox) / rx + 1e-6) * rx
    y0 = oy + math.ceil((north - oy) / ry - 1e-6) * ry
    width = max(1, math.ceil((east - x0) / rx - 1e-6))
    height = max(1, math.ceil((y0 - south) / ry - 1e-6))
    return Grid(crs, from_origin(x0, y0, rx, ry), width, height)


def _confidence(probabilities: np.ndarray, classes: np.ndarray, scale: float) -> np.ndarray:
    """Each pixel's probability of its own class (float32; -1 where there is no class)."""
    index = np.clip(classes.astype(np.int64) - 1, 0, probabilities.shape[0] - 1)
    conf = np.take_along_axis(probabilities, index[None], axis=0)[0].astype(np.float32) * scale
    conf[classes == 0] = -1.0
    return conf


def build_mosaic(scenes: list, output: str, target_crs=None, feedback=None) -> dict:
    """Mosaic class maps by the most-confident rule, streamed window by window.

    Args:
        scenes: ``[(class_map, probabilities), ...]`` in priority order for ties;
            class ids 1..N (0 = nodata), probabilities one band per class (uint8
            ``p x 254`` as predict writes them, or float 0..1).
        output: the mosaic GeoTIFF (uint8, nodata 0, the first map's colours and tags).
        target_crs: the mosaic's CRS (default: the first map's).
        feedback: progress and cancel.

    Returns:
        dict with ``output_mosaic``, ``width``, ``height``, ``crs`` (WKT), ``scenes``.

    Raises:
        CoreError: for maps that cannot be mosaicked; nothing is written then.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import transform_bounds
    from rasterio.windows import from_bounds, intersect

    feedback = feedback or Feedback()
    if not scenes:
        raise CoreError("No scene was classified, so there is nothing to mosaic.")
    rasterlib.check_output_path(output, [p for s in scenes for p in s], what="OUTPUT_MOSAIC")
    grid = mosaic_grid([s[0] for s in scenes], target_crs)
    footprints = []
    for class_map, _ in scenes:
        with rasterio.open(class_map) as src:
            box = transform_bounds(src.crs, grid.crs, *src.bounds)
        window = from_bounds(*box, transform=grid.transform).round_offsets().round_lengths()
        footprints.append(window)
    with rasterio.open(scenes[0][0]) as first:
        tags = first.tags()
        try:
            colormap = first.colormap(1)
        except ValueError:
            colormap = None
    profile = rasterlib.gtiff_profile(
        width=grid.width,
        height=grid.height,
        crs=grid.crs,
        transform=grid.transform,
        count=1,
        dtype="uint8",
        nodata=0,
    )
    windows = list(rasterlib.chunk_windows(grid.width, grid.height, 64, max_bytes=_WINDOW_BYTES))
    with atomic_output(output) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.update_tags(**tags)
        dst.set_band_description(1, "class")
        if colormap:
            dst.write_colormap(1, colormap)
        for n, window in enumerate(windows):
            feedback.check_canceled()
            best = np.zeros((int(window.height), int(window.width)), dtype=np.uint8)
            best_conf = np.full(best.shape, -1.0, dtype=np.float32)
            for (class_map, probabilities), foot in zip(scenes, footprints):
                if not intersect(foot, window):
                    continue
                vrt = dict(
                    crs=grid.crs,
                    transform=grid.transform,
                    width=grid.width,
                    height=grid.height,
                    resampling=Resampling.nearest,
                )
                with rasterio.open(class_map) as src, WarpedVRT(src, nodata=0, **vrt) as v:
                    classes = v.read(1, window=window)
                with rasterio.open(probabilities) as src, WarpedVRT(src, **vrt) as v:
                    probs = v.read(window=window)
                    scale = 1.0 / 254 if v.dtypes[0] == "uint8" else 1.0
                conf = _confidence(probs, classes, scale)
                take = conf > best_conf
                best[take] = classes[take]
                best_conf[take] = conf[take]
            dst.write(best[None], window=window)
            feedback.progress((n + 1) / len(windows))
    return {
        "output_mosaic": output,
        "width": grid.width,
        "height": grid.height,
        "crs": grid.crs.to_wkt(),
        "scenes": len(scenes),
    }
