"""The output grid of an aligned pair: which CRS, pixel size, origin and extent.

* When the CRS and pixel size are kept (and the image is north-up), the grid
  is the image's own, so its pixels can be copied bit for bit, no resampling.
* Otherwise it is GDAL's suggested grid for the target CRS, with its origin
  snapped to whole multiples of the pixel size (like ``gdalwarp -tap``); a
  metric image reprojected to another metric CRS keeps its pixel size.
* Either way it is cropped to the intersection of the image's and the mask's
  extents, both in the target CRS (the mask's extent is the bounding box of its
  raster, or of its polygons).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from affine import Affine
from rasterio.crs import CRS

from ..feedback import CoreError
from .crs import corner_bounds, crs_name, format_bounds, reproject_bounds, same_crs, same_units

#: Refuse output grids this many times larger than the image (a unit mix-up).
MAX_GROWTH = 64


class Grid(NamedTuple):
    """The output grid, and where it lies in the image's own grid when ``kept``."""

    transform: Affine
    width: int
    height: int
    px: float
    py: float
    bounds: tuple
    kept: bool  # the image's own grid: its pixels are copied, not resampled
    col0: int  # the grid's first column and row in the image (meaningful when kept)
    row0: int


def round_significant(value: float, digits: int) -> float:
    """``value`` rounded to ``digits`` significant digits (non-positive or non-finite as is)."""
    if value <= 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


def image_grid(image, rpc, dst_crs, pixel_size):
    """Return the grid rule for the image: (origin x, origin y, px, py, bounds in dst, kept).

    ``kept`` is True when the output uses the image's own pixels (same CRS, same
    pixel size, north-up): the image is then copied, not resampled.
    """
    from rasterio.warp import calculate_default_transform

    t = image.transform
    north_up = t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0
    if not rpc and north_up and same_crs(image.crs, dst_crs):
        px, py = t.a, -t.e
        kept = not pixel_size or (
            math.isclose(pixel_size, px, rel_tol=1e-9)
            and math.isclose(pixel_size, py, rel_tol=1e-9)
        )
        if not kept:
            px = py = float(pixel_size)
        return t.c, t.f, px, py, tuple(image.bounds), kept
    try:
        if rpc:
            transform, width, height = calculate_default_transform(
                CRS.from_epsg(4326),
                dst_crs,
                image.width,
                image.height,
                rpcs=image.rpcs,
                resolution=pixel_size or None,
                **(rpc if isinstance(rpc, dict) else {}),
            )
        else:
            transform, width, height = calculate_default_transform(
                image.crs,
                dst_crs,
                image.width,
                image.height,
                *corner_bounds(image),
                resolution=pixel_size or None,
            )
    except Exception as err:
        raise CoreError(
            f"The image cannot be reprojected to {crs_name(dst_crs)} ({err}): "
            "choose a TARGET_CRS that covers the image's area."
        ) from None
    if pixel_size:
        px = py = float(pixel_size)
    elif (
        not rpc
        and north_up
        and math.isclose(t.a, -t.e, rel_tol=1e-9)
        and same_units(image.crs, dst_crs)
    ):
        px = py = t.a  # metres stay metres: a 10 m image gives a 10 m grid
    else:
        px = py = round_significant(abs(transform.a), 4)
    if rpc:
        bounds = (
            transform.c,
            transform.f + transform.e * height,
            transform.c + transform.a * width,
            transform.f,
        )
    else:
        bounds = reproject_bounds(image.crs, dst_crs, corner_bounds(image))
    return 0.0, 0.0, px, py, bounds, False


def snap(ox, oy, px, py, bounds, clip=None):
    """Pixels (col0, row0, col1, row1) of the grid (ox, oy, px, py) covering ``bounds``."""
    left, bottom, right, top = bounds
    eps = 1e-6
    col0 = math.floor((left - ox) / px + eps)
    col1 = math.ceil((right - ox) / px - eps)
    row0 = math.floor((oy - top) / py + eps)
    row1 = math.ceil((oy - bottom) / py - eps)
    if clip is not None:
        col0, row0 = max(col0, 0), max(row0, 0)
        col1, row1 = min(col1, clip[0]), min(row1, clip[1])
    return col0, row0, col1, row1


def target_grid(image, rpc, dst_crs, pixel_size, mask_bounds, feedback) -> Grid:
    """The image's grid rule in ``dst_crs``, cropped to the overlap with ``mask_bounds``.

    Raises:
        CoreError: when image and mask do not overlap (naming both extents), or
            when PIXEL_SIZE would blow the output far beyond the image's size.
    """
    ox, oy, px, py, image_bounds, kept = image_grid(image, rpc, dst_crs, pixel_size)
    mask_bounds = image_bounds if mask_bounds is None else mask_bounds  # no mask: the image
    common = (
        max(image_bounds[0], mask_bounds[0]),
        max(image_bounds[1], mask_bounds[1]),
        min(image_bounds[2], mask_bounds[2]),
        min(image_bounds[3], mask_bounds[3]),
    )
    no_overlap = CoreError(
        f"The image and the mask do not overlap. In {crs_name(dst_crs)} the image covers "
        f"{format_bounds(image_bounds)} and the mask covers {format_bounds(mask_bounds)}. "
        "Check that both have the right CRS and belong to the same area."
    )
    if common[0] >= common[2] or common[1] >= common[3]:
        raise no_overlap
    col0, row0, col1, row1 = snap(
        ox, oy, px, py, common, clip=(image.width, image.height) if kept else None
    )
    width, height = col1 - col0, row1 - row0
    if width <= 0 or height <= 0:
        raise no_overlap
    if width * height > MAX_GROWTH * max(image.width * image.height, 1) and width * height > 1e8:
        raise CoreError(
            f"PIXEL_SIZE {px:g} in {crs_name(dst_crs)} would make a "
            f"{width:,} x {height:,} px output, far larger than the image "
            f"({image.width:,} x {image.height:,} px): give the pixel size in the "
            "units of the target CRS (degrees for EPSG:4326, metres for UTM)."
        )
    if width < 2 or height < 2:
        feedback.warning(
            f"The output is only {width} x {height} px: check PIXEL_SIZE "
            "(it is in units of the target CRS)."
        )
    transform = Affine(px, 0.0, ox + col0 * px, 0.0, -py, oy - row0 * py)
    bounds = (transform.c, transform.f - py * height, transform.c + px * width, transform.f)
    feedback.info(
        f"Output grid: {width} x {height} px of {px:g} x {py:g} in "
        f"{crs_name(dst_crs)}, extent {format_bounds(bounds)}."
    )
    return Grid(transform, width, height, px, py, bounds, kept, col0, row0)
