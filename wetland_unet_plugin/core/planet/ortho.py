"""Put a prepared scene on the ground: RPC orthorectification (basic / 1B scenes) or reprojection.

The usable-data mask of a 1B scene is on the scene's raw grid, so masking comes
first, on that grid, and the masked scene (which keeps its RPCs) is then warped
by ``alignment.align_pair`` with its DEM (or the RPCs' height offset), nearest
neighbour, so nodata edges stay crisp and values are not blended.
"""

from __future__ import annotations

import numpy as np

from ..alignment import align_pair
from ..alignment.rpc import rpc_options
from ..feedback import CoreError, Feedback
from ..raster import chunk_windows, open_raster, valid_pixels


def needs_warp(src, p: dict) -> bool:
    """True when the prepared scene must be warped: an unrectified RPC scene, a DEM, a
    TARGET_CRS or a PIXEL_SIZE.

    Raises:
        CoreError: a DEM for a scene without RPCs (checked before any work).
    """
    if p["dem"] and src.rpcs is None:
        raise CoreError(
            "DEM is used to orthorectify scenes with RPC coefficients (basic / 1B scenes), "
            "and this scene has none: leave DEM empty."
        )
    unrectified = src.crs is None and src.rpcs is not None
    return bool(unrectified or p["dem"] or p["target_crs"] or p["pixel_size"])


def uses_rpc(src, p: dict) -> bool:
    """Orthorectify with the RPCs (rather than reproject the scene's CRS)."""
    return src.rpcs is not None and (src.crs is None or bool(p["dem"]))


def check(src, scene: str, p: dict) -> None:
    """Checks of the warp before any work: the DEM covers the scene.

    Raises:
        CoreError: naming the DEM's and the scene's extents.
    """
    if uses_rpc(src, p):
        rpc_options(scene, src, p["dem"], Feedback())


def warp(masked: str, output: str, rpc: bool, p: dict, feedback: Feedback) -> int:
    """Warp the masked scene to ``output``; return the valid pixels of ``output``."""
    align_pair(
        masked,
        output,
        rpc=rpc,
        dem=p["dem"],
        target_crs=p["target_crs"],
        pixel_size=p["pixel_size"] or 0.0,
        resampling="nearest",
        feedback=feedback,
    )
    valid = 0
    with open_raster(output, "prepared scene") as dst:
        for window in chunk_windows(dst.width, dst.height, dst.count * 8):
            valid += int(np.count_nonzero(valid_pixels(dst.read(window=window), dst.nodata)))
    return valid
