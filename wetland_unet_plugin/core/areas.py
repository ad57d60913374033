"""Pixel areas in square metres and the per-class area table (hectares).

A projected grid has one pixel area: ``|det|`` of its affine transform times
the square of the CRS's linear unit in metres (feet grids convert). In a
geographic CRS (degrees) a pixel's area shrinks towards the poles, so each row
gets its own area: the area on the CRS's ellipsoid (``pyproj.Geod``) of one
pixel of that row. Areas are what a wetland inventory reports: hectares per
class = sum over rows of that row's pixels of the class x the row's pixel area.
"""

from __future__ import annotations

import csv

import numpy as np

from .atomic import atomic_output
from .feedback import CoreError

#: Square metres per hectare.
M2_PER_HA = 10_000.0


def row_pixel_areas(crs, transform, height: int, what: str = "raster") -> np.ndarray:
    """The area in square metres of one pixel of each row of a grid.

    Args:
        crs: a rasterio CRS (or None).
        transform: the grid's affine transform.
        height: number of rows.
        what: the raster's role, for messages.

    Returns:
        float64 array (height,): one value repeated for a projected grid.

    Raises:
        CoreError: for a grid without CRS, or a rotated grid in degrees.
    """
    if crs is None:
        raise CoreError(
            f"The {what} has no coordinate reference system, so its pixel area is unknown: "
            "assign its CRS (Raster > Projections > Assign Projection) first."
        )
    t = transform
    if crs.is_geographic:
        if t.b or t.d:
            raise CoreError(
                f"The {what} is a rotated grid in degrees: its pixel areas are not computed; "
                "warp it to a projected CRS (e.g. its UTM zone) first."
            )
        import pyproj

        geod = pyproj.CRS.from_wkt(crs.to_wkt()).get_geod()
        x0, x1 = t.c, t.c + t.a
        rows = np.arange(height + 1, dtype=np.float64)
        lats = t.f + rows * t.e
        areas = np.empty(height, dtype=np.float64)
        for r in range(height):
            area, _ = geod.polygon_area_perimeter(
                [x0, x1, x1, x0], [lats[r], lats[r], lats[r + 1], lats[r + 1]]
            )
            areas[r] = abs(area)
        return areas
    _, factor = crs.linear_units_factor
    area = abs(t.a * t.e - t.b * t.d) * float(factor) ** 2
    return np.full(height, area, dtype=np.float64)


def pixel_area_m2(crs, transform, what: str = "raster") -> float:
    """The one pixel area (m2) of a projected grid.

    Raises:
        CoreError: for a geographic grid (its pixel area varies by row) or no CRS.
    """
    if crs is not None and crs.is_geographic:
        raise CoreError(
            f"The {what} is in degrees ({crs}): its pixel area changes with latitude, so a "
            "minimum mapping unit in hectares has no single pixel count. Warp it to a "
            "projected CRS in metres (e.g. its UTM zone, 'Align image and mask' TARGET_CRS "
            "or GDAL Warp) first."
        )
    return float(row_pixel_areas(crs, transform, 1, what)[0])


def write_area_table(path: str, names: list, pixels, hectares) -> str:
    """Write the CSV ``class_id, class_name, pixels, hectares`` with a total row.

    Args:
        path: the CSV to write (atomically).
        names: class names of ids 1..N.
        pixels: pixels per class id 1..N.
        hectares: hectares per class id 1..N.

    Returns:
        ``path``.
    """
    with atomic_output(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["class_id", "class_name", "pixels", "hectares"])
            for k, name in enumerate(names):
                writer.writerow([k + 1, name, int(pixels[k]), f"{float(hectares[k]):.6f}"])
            writer.writerow(["", "total", int(np.sum(pixels)), f"{float(np.sum(hectares)):.6f}"])
    return path
