"""Coordinate reference systems for alignment: parse, name, compare, move bounds between them.

Every CRS the user gives (TARGET_CRS, the image's, the mask's) goes through
here, so messages name CRSs one way ("EPSG:32633") and "same CRS" means one
thing: equal definitions, or the same EPSG code.
"""

from __future__ import annotations

from rasterio.crs import CRS
from rasterio.errors import CRSError

from ..feedback import CoreError


def parse_crs(value, what="TARGET_CRS"):
    """A rasterio CRS from any form GDAL accepts; None for an empty value.

    Raises:
        CoreError: naming the forms that work.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, CRS):
        return value
    try:
        crs = CRS.from_user_input(str(value).strip())
    except (CRSError, ValueError, TypeError) as err:
        raise CoreError(
            f"{what} '{value}' is not a coordinate reference system GDAL knows "
            f"({err}): give it as 'EPSG:32633', a PROJ string or WKT."
        ) from None
    return crs


def crs_name(crs) -> str:
    """'EPSG:xxxx' when the CRS has a code, else its WKT name, for messages."""
    if crs is None:
        return "no CRS"
    try:
        epsg = crs.to_epsg()
    except Exception:
        epsg = None
    if epsg:
        return f"EPSG:{epsg}"
    try:
        return crs.to_wkt().split('"')[1]
    except Exception:
        return str(crs)


def same_crs(a, b) -> bool:
    """True when two CRSs are equal or share an EPSG code (False when either is None)."""
    if a is None or b is None:
        return False
    try:
        if a == b:
            return True
        code = a.to_epsg()
        return code is not None and code == b.to_epsg()
    except Exception:
        return False


def same_units(a, b) -> bool:
    """True when both CRSs are projected with the same linear unit (e.g. both metres)."""
    try:
        return (
            a.is_projected
            and b.is_projected
            and a.linear_units_factor[1] == b.linear_units_factor[1]
        )
    except Exception:
        return False


def utm_for(lon, lat) -> CRS:
    """The WGS 84 UTM zone (north or south) holding a longitude/latitude."""
    zone = int(min(max((lon + 180.0) // 6.0 + 1, 1), 60))
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def format_bounds(bounds) -> str:
    """(left, bottom, right, top) as 'x .. , y ..' for messages."""
    return "x {0:.6g} .. {2:.6g}, y {1:.6g} .. {3:.6g}".format(*bounds)


def no_crs_error(what, path):
    """The CoreError for an input without a CRS, saying how to assign one."""
    return CoreError(
        f"The {what} '{path}' has no coordinate reference system (CRS), so it cannot "
        'be placed on the map: assign one with QGIS\'s "Assign projection" '
        "(Raster > Projections) or `gdal_edit -a_srs EPSG:xxxx`, then run again."
    )


def corner_bounds(dataset):
    """Bounding box of the four corners of a dataset (also for rotated transforms)."""
    t = dataset.transform
    xs, ys = zip(*[t * (c, r) for c in (0, dataset.width) for r in (0, dataset.height)])
    return min(xs), min(ys), max(xs), max(ys)


def reproject_bounds(src_crs, dst_crs, bounds):
    """``bounds`` in ``src_crs`` as a bounding box in ``dst_crs`` (edges densified).

    Raises:
        CoreError: when the extent cannot be expressed in ``dst_crs``.
    """
    from rasterio.warp import transform_bounds

    if same_crs(src_crs, dst_crs):
        return tuple(bounds)
    try:
        return tuple(transform_bounds(src_crs, dst_crs, *bounds, densify_pts=21))
    except Exception as err:
        raise CoreError(
            f"The extent {format_bounds(bounds)} in {crs_name(src_crs)} cannot be "
            f"expressed in {crs_name(dst_crs)} ({err}): choose a TARGET_CRS that "
            "covers the area."
        ) from None
