"""Raster helpers shared by every step: opening with clear errors, validity, output profiles,
block windows for streaming, and metadata copied from input to output."""

from __future__ import annotations

import contextlib
import os
import shutil

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError

from .feedback import CoreError

#: Creation options for every GeoTIFF we write: tiled, compressed, big when needed.
#: Deflate (every GIS reads it) at level 1: a trained model's class map of an 8000 x 4000
#: scene took 1.29 s of CPU at GDAL's default level 6 and 0.21 s at 1, 36 % larger
#: (3.3 MB); a Sentinel-2 stack 0.46 s against 0.06 s, 19 % larger (docs/decisions.md).
GTIFF_OPTIONS = dict(
    driver="GTiff",
    tiled=True,
    blockxsize=256,
    blockysize=256,
    compress="deflate",
    zlevel=1,
    bigtiff="IF_SAFER",
)


#: Largest block (bytes of one read) streamed at once.
MAX_CHUNK_BYTES = 64 * 1024 * 1024


def open_raster(path: str, what: str = "raster"):
    """Open a raster for reading, mapping GDAL errors to a CoreError that names the fix.

    Args:
        path: file path (or GDAL dataset name).
        what: the role of the raster in the job, used in messages ("image", "mask").
    """
    if not path:
        raise CoreError(f"No {what} given: choose a raster file.")
    try:
        dataset = rasterio.open(path)
    except RasterioIOError as err:
        if not os.path.exists(path):
            raise CoreError(f"The {what} '{path}' does not exist: check the path.") from None
        raise CoreError(
            f"The {what} '{path}' is not a raster GDAL can read ({err}). "
            "Choose a GeoTIFF or another raster format."
        ) from None
    if dataset.count < 1:
        dataset.close()
        raise CoreError(f"The {what} '{path}' has no bands: choose a raster with data.")
    return dataset


def nodata_of(dataset):
    """Return the dataset's nodata value (None when unset)."""
    return dataset.nodata


def has_mask_band(dataset) -> bool:
    """True when the dataset has a GDAL per-dataset mask (e.g. a .msk file or an internal
    mask band), which marks invalid pixels that its nodata value does not."""
    from rasterio.enums import MaskFlags

    return any(MaskFlags.per_dataset in flags for flags in dataset.mask_flag_enums)


def masked_invalid(dataset, valid: np.ndarray, window=None) -> np.ndarray:
    """``valid`` with the pixels of a GDAL per-dataset mask taken out (read only when the
    dataset has one: a nodata-derived mask would only read the band again)."""
    if has_mask_band(dataset):
        valid &= dataset.dataset_mask(window=window) > 0
    return valid


def valid_pixels(block: np.ndarray, nodata=None) -> np.ndarray:
    """The one validity test: True where every band is finite and not its nodata value.

    Args:
        block: array of shape (bands, rows, cols).
        nodata: the raster's nodata value, one value (or None) per band, or None.
            NaN nodata is covered by the finiteness test.

    Returns:
        (rows, cols) boolean array.
    """
    valid = np.ones(block.shape[1:], dtype=bool)
    if np.issubdtype(block.dtype, np.floating):
        valid &= np.isfinite(block).all(axis=0)
    per_band = nodata if isinstance(nodata, (list, tuple)) else [nodata] * len(block)
    if len(set(map(repr, per_band))) == 1:  # one nodata for all bands: one comparison
        value = per_band[0] if per_band else None
        if _is_value(value):
            valid &= ~(block == np.asarray(value).astype(block.dtype)).any(axis=0)
        return valid
    for band, value in zip(block, per_band):
        if _is_value(value):
            valid &= band != np.asarray(value).astype(block.dtype)
    return valid


def _is_value(nodata) -> bool:
    """True for a nodata value to compare with (not None, not NaN)."""
    return nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata))


def gtiff_profile(like=None, **overrides) -> dict:
    """The profile of every GeoTIFF we write: ``GTIFF_OPTIONS``, the grid of ``like``
    (a rasterio dataset: width, height, CRS, transform) and ``overrides``."""
    profile = dict(GTIFF_OPTIONS)
    if like is not None:
        profile.update(width=like.width, height=like.height, crs=like.crs, transform=like.transform)
    profile.update(overrides)
    return profile


#: ``GTIFF_OPTIONS`` as GDAL creation options, for gdal.Warp and gdal.Rasterize.
GDAL_CREATION_OPTIONS = [
    f"{k.upper()}={'YES' if v is True else str(v).upper()}"
    for k, v in GTIFF_OPTIONS.items()
    if k != "driver"
]


def chunk_windows(
    width: int, height: int, bytes_per_pixel: int, rows: int = 256, max_bytes: int = MAX_CHUNK_BYTES
):
    """Yield rasterio windows covering a raster in strips of ``rows`` rows.

    Strips are split into column chunks (multiples of 256) when one strip of
    all bands would exceed ``max_bytes``, so memory stays bounded for any width.
    """
    from rasterio.windows import Window

    rows = max(1, int(rows))
    cols = width
    if width * rows * max(bytes_per_pixel, 1) > max_bytes:
        cols = max(256, (max_bytes // (rows * max(bytes_per_pixel, 1))) // 256 * 256)
        cols = min(cols, width)
    for row in range(0, height, rows):
        h = min(rows, height - row)
        for col in range(0, width, cols):
            w = min(cols, width - col)
            yield Window(col, row, w, h)


def copy_metadata(src, dst, descriptions: bool = True) -> None:
    """Copy band descriptions, colour interpretation, scales/offsets, units, tags and
    the palette of band 1 from one open rasterio dataset to another (best effort)."""
    if descriptions:
        for index, text in enumerate(src.descriptions, start=1):
            if text and index <= dst.count:
                dst.set_band_description(index, text)
    for action in (
        lambda: dst.update_tags(**src.tags()),
        lambda: [
            dst.update_tags(i, **src.tags(i)) for i in range(1, min(src.count, dst.count) + 1)
        ],
        lambda: setattr(dst, "colorinterp", src.colorinterp) if src.count == dst.count else None,
        lambda: setattr(dst, "scales", src.scales) if src.count == dst.count else None,
        lambda: setattr(dst, "offsets", src.offsets) if src.count == dst.count else None,
        lambda: setattr(dst, "units", src.units) if src.count == dst.count else None,
        lambda: dst.write_colormap(1, src.colormap(1)),
    ):
        try:
            action()
        except Exception:
            pass


def same_grid(a, b) -> bool:
    """True when two datasets share CRS, transform (to 1e-9 of a pixel) and size."""
    if (a.width, a.height) != (b.width, b.height):
        return False
    if a.crs != b.crs:
        return False
    return a.transform.almost_equals(b.transform, precision=1e-9 * abs(a.transform.a or 1))


def grid_description(dataset) -> str:
    """Return 'W x H px, CRS, pixel size, origin' for messages."""
    t = dataset.transform
    return (
        f"{dataset.width} x {dataset.height} px, {dataset.crs or 'no CRS'}, "
        f"pixel {abs(t.a):g} x {abs(t.e):g}, origin ({t.c:g}, {t.f:g})"
    )


def check_output_path(path: str, inputs=(), what: str = "output") -> None:
    """Refuse an output that would overwrite an input or cannot be written.

    Raises:
        CoreError: saying which path to change.
    """
    if not path:
        raise CoreError(f"No {what} path given.")
    target = os.path.realpath(path)
    for item in inputs:
        if item and os.path.exists(item) and os.path.realpath(item) == target:
            raise CoreError(
                f"The {what} '{path}' is also an input: choose another output "
                "path so the input is not overwritten."
            )
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(folder):
        raise CoreError(
            f"The folder of the {what} '{path}' does not exist: create it or choose another path."
        )
    if not os.access(folder, os.W_OK):
        raise CoreError(
            f"The folder of the {what} '{path}' is not writable: choose a folder you can write to."
        )


def check_disk_space(path: str, needed_bytes: float, what: str = "output") -> None:
    """Refuse to start when the output's folder has less free space than estimated.

    Raises:
        CoreError: with the estimate and the free space.
    """
    folder = os.path.dirname(os.path.abspath(path)) or "."
    free = shutil.disk_usage(folder).free
    if needed_bytes > free:
        raise CoreError(
            f"Not enough disk space for the {what}: about "
            f"{needed_bytes / 1e6:,.0f} MB needed, {free / 1e6:,.0f} MB free in "
            f"{folder}. Free space or choose another folder."
        )


def band_descriptions(dataset) -> list:
    """Return the band descriptions of a dataset (None where unset)."""
    return list(dataset.descriptions)


@contextlib.contextmanager
def gdal_exceptions():
    """GDAL's Python bindings raise RuntimeError inside the block, as before outside it.

    ``gdal.UseExceptions()`` is process-wide: left on, it changes how every other
    caller in the process (QGIS's Processing, the other jobs) sees GDAL errors.
    """
    from osgeo import gdal

    previous = gdal.GetUseExceptions()
    gdal.UseExceptions()
    try:
        yield gdal
    finally:
        if not previous:
            gdal.DontUseExceptions()
