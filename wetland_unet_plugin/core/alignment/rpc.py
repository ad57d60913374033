"""Terrain heights for RPC orthorectification (Planet Basic / 1B scenes).

GDAL's RPC transformer needs the height of the ground under every pixel. With a
DEM it takes them from it (``RPC_DEM``); without one the RPCs' height offset
(the mean height of the scene, e.g. about 2,600 m over the Sabana de Bogota) is
used (``RPC_HEIGHT``) rather than GDAL's default 0 m, which would shift pixels by
tens of metres on high ground. The log says how far each 100 m of terrain that
differs from that height moves the pixels.
"""

from __future__ import annotations

import math

from ..feedback import CoreError, Feedback
from ..raster import open_raster

#: Heights (m) a pixel is projected at to estimate the shift per 100 m of terrain.
SHIFT_STEP_M = 100.0


def _ground(image_path: str, options: list, col: float, row: float):
    """(lon, lat) of image pixel (col, row) with GDAL's RPC transformer and ``options``."""
    from osgeo import gdal

    dataset = gdal.Open(str(image_path))
    transformer = gdal.Transformer(dataset, None, ["METHOD=RPC", *options])
    ok, point = transformer.TransformPoint(0, col, row, 0.0)
    if not ok:
        raise CoreError(
            f"The RPCs of '{image_path}' cannot place pixel ({col:g}, {row:g}) on the "
            "ground: check the scene's RPC file."
        )
    return point[0], point[1]


def _metres(lon0, lat0, lon1, lat1) -> float:
    """Distance in metres between two nearby lon/lat points (local equirectangular)."""
    k = 111_320.0
    return math.hypot((lon1 - lon0) * k * math.cos(math.radians(lat0)), (lat1 - lat0) * k)


def footprint(image_path: str, src, options: list) -> tuple:
    """(west, south, east, north) in degrees of the scene's corners on the ground."""
    corners = [_ground(image_path, options, c, r) for c in (0, src.width) for r in (0, src.height)]
    lons, lats = [c[0] for c in corners], [c[1] for c in corners]
    return min(lons), min(lats), max(lons), max(lats)


def _check_dem(dem: str, image_path: str, src, height: float) -> None:
    """Refuse a DEM that does not cover the scene's footprint."""
    from rasterio.warp import transform_bounds

    with open_raster(dem, "DEM") as d:
        if d.crs is None:
            raise CoreError(f"The DEM '{dem}' has no CRS: assign one, or give another DEM.")
        covered = transform_bounds(d.crs, "EPSG:4326", *d.bounds)
    need = footprint(image_path, src, [f"RPC_HEIGHT={height}"])
    if not (
        covered[0] <= need[0]
        and covered[1] <= need[1]
        and covered[2] >= need[2]
        and covered[3] >= need[3]
    ):
        raise CoreError(
            f"The DEM '{dem}' covers lon {covered[0]:.4f}..{covered[2]:.4f}, lat "
            f"{covered[1]:.4f}..{covered[3]:.4f} but the scene needs lon {need[0]:.4f}.."
            f"{need[2]:.4f}, lat {need[1]:.4f}..{need[3]:.4f}: give a DEM that covers the "
            "whole scene (e.g. a larger SRTM or Copernicus DEM tile)."
        )


def rpc_options(image_path: str, src, dem, feedback: Feedback) -> dict:
    """GDAL RPC transformer options: ``RPC_DEM`` (checked to cover the scene) or
    ``RPC_HEIGHT`` (the RPCs' height offset), with the expected shift logged.

    Args:
        image_path: the scene.
        src: the open scene (with RPCs).
        dem: a DEM path, or None.
        feedback: where the choice and the expected shift are logged.

    Raises:
        CoreError: a DEM that cannot be read, has no CRS or does not cover the scene.
    """
    height = float(src.rpcs.height_off or 0.0)
    if dem:
        _check_dem(dem, image_path, src, height)
        feedback.info(f"Orthorectifying with the RPCs and the DEM {dem}.")
        return {"RPC_DEM": str(dem)}
    col, row = src.width / 2, src.height / 2
    a = _ground(image_path, [f"RPC_HEIGHT={height}"], col, row)
    b = _ground(image_path, [f"RPC_HEIGHT={height + SHIFT_STEP_M}"], col, row)
    shift = _metres(a[0], a[1], b[0], b[1])
    feedback.warning(
        f"No DEM: the ground is taken at the RPCs' height offset, {height:g} m, everywhere. "
        f"Terrain {SHIFT_STEP_M:g} m above or below it moves pixels by about {shift:.1f} m "
        "in this scene; give DEM for hilly terrain."
    )
    return {"RPC_HEIGHT": height}
