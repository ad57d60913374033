"""Write the aligned rasters onto the output grid: copy or warp the image, resample the mask.

* On the image's own grid the image window is copied bit for bit; otherwise
  gdal.Warp resamples it (streamed by GDAL; optionally orthorectified with its
  RPC coefficients and the terrain heights of ``rpc.rpc_options``: a DEM, or the
  RPCs' height offset).
* A GDAL per-dataset mask of the image (an internal mask or .msk) comes along as the
  aligned image's internal mask (warped as gdal.Warp's alpha band when resampling), so
  the pixels it masks stay invalid for every later step.
* The mask is always resampled with nearest neighbour, written as uint8 (or
  uint16 for ids above 255) with nodata 0 = unlabelled: its own nodata, NaN,
  negative values and everything outside its coverage become 0.
"""

from __future__ import annotations

import math
import os

import numpy as np
import rasterio

from ..feedback import Canceled, CoreError
from ..raster import (
    GDAL_CREATION_OPTIONS,
    chunk_windows,
    copy_metadata,
    gtiff_profile,
    has_mask_band,
    valid_pixels,
)
from ..schema.prepare import RESAMPLING_METHODS  # noqa: F401 (re-exported)
from .gdal_feedback import GdalErrors, gdal_callback


def copy_image_window(image, path, col0, row0, width, height, transform, feedback):
    """Copy a window of the image bit for bit into a new GeoTIFF."""
    from rasterio.windows import Window

    dtypes = {np.dtype(d) for d in image.dtypes}
    dtype = np.result_type(*dtypes) if len(dtypes) > 1 else next(iter(dtypes))
    profile = gtiff_profile(
        width=width,
        height=height,
        count=image.count,
        dtype=dtype.name,
        crs=image.crs,
        transform=transform,
        nodata=image.nodata,
    )
    windows = list(chunk_windows(width, height, image.count * dtype.itemsize))
    masked = has_mask_band(image)
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
        rasterio.open(path, "w", **profile) as dst,
    ):
        copy_metadata(image, dst)
        for n, window in enumerate(windows, start=1):
            feedback.check_canceled()
            source = Window(
                col0 + window.col_off, row0 + window.row_off, window.width, window.height
            )
            dst.write(image.read(window=source), window=window)
            if masked:
                dst.write_mask(image.dataset_mask(window=source), window=window)
            feedback.progress(n / len(windows))


def warp_image(
    image_path, image, path, dst_crs, transform, width, height, resampling, rpc, feedback
):
    """Warp the image onto the target grid with gdal.Warp (streamed by GDAL)."""
    from osgeo import gdal

    px, py = transform.a, -transform.e
    bounds = (transform.c, transform.f - py * height, transform.c + px * width, transform.f)
    options = dict(
        format="GTiff",
        outputBounds=bounds,
        xRes=px,
        yRes=py,
        dstSRS=dst_crs.to_wkt(),
        resampleAlg="near" if resampling == "nearest" else resampling,
        creationOptions=GDAL_CREATION_OPTIONS,
        multithread=True,
        warpMemoryLimit=256,
        callback=gdal_callback(feedback),
    )
    if rpc:
        options.update(rpc=True, srcSRS="EPSG:4326")
        if isinstance(rpc, dict):  # terrain heights: RPC_DEM or RPC_HEIGHT
            options["transformerOptions"] = [f"{k}={v}" for k, v in rpc.items()]
    with GdalErrors() as errors:
        result = gdal.Warp(path, str(image_path), **options)
        if feedback.is_canceled():
            result = None
            raise Canceled()
        if result is None:
            raise CoreError(
                f"Reprojecting the image failed ({errors.text()}): check that the "
                "image is readable and TARGET_CRS/PIXEL_SIZE suit it."
            )
        if (result.RasterXSize, result.RasterYSize) != (width, height):
            result = None
            raise RuntimeError("gdal.Warp made a grid of another size than asked")
        result.SetGeoTransform(transform.to_gdal())
        for index, text in enumerate(image.descriptions, start=1):
            if text:
                result.GetRasterBand(index).SetDescription(text)
        result.FlushCache()
        result = None
        if has_mask_band(image):
            _warp_dataset_mask(image_path, path, options, feedback)
    nodata = image.nodata
    if nodata is None and not has_mask_band(image):
        feedback.warning(
            "The image has no nodata value: pixels of the output grid outside the "
            "image are 0. To mark them, set the image's nodata (e.g. "
            "`gdal_edit -a_nodata 0`) before aligning, or list 0 in the "
            "cleaninvalid step's INVALID_VALUES."
        )


def _warp_dataset_mask(image_path, path, options, feedback):
    """Write the image's per-dataset mask, warped like the image (gdal.Warp's alpha band
    of a virtual warp, read in windows), as the internal mask of the warped image."""
    from osgeo import gdal

    options = dict(options, format="VRT", dstAlpha=True, callback=None, creationOptions=None)
    vrt_path = f"/vsimem/{os.path.basename(path)}.alpha.vrt"
    alpha = gdal.Warp(vrt_path, str(image_path), **options)
    try:
        band = alpha.GetRasterBand(alpha.RasterCount)
        with (
            rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
            rasterio.open(path, "r+") as dst,
        ):
            for window in chunk_windows(dst.width, dst.height, 2):
                feedback.check_canceled()
                col, row, w, h = (int(v) for v in window.flatten())
                valid = band.ReadAsArray(col, row, w, h) > 0
                dst.write_mask(np.where(valid, 255, 0).astype(np.uint8), window=window)
    finally:
        alpha = band = None
        gdal.Unlink(vrt_path)


def mask_dtype_for_raster(mask_path, mask):
    """uint8 when the mask's class ids fit, else uint16; error above 65535."""
    from osgeo import gdal

    if all(
        np.dtype(d) in (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(bool)) for d in mask.dtypes
    ):
        return np.dtype(np.uint8)
    highest = -math.inf
    with GdalErrors():
        dataset = gdal.Open(str(mask_path))
        for index in range(1, dataset.RasterCount + 1):
            try:
                low_high = dataset.GetRasterBand(index).ComputeRasterMinMax(False)
            except Exception:
                low_high = None
            if low_high and math.isfinite(low_high[1]):
                highest = max(highest, low_high[1])
        dataset = None
    if highest > 65535:
        raise CoreError(
            f"The mask holds the value {highest:g}, above 65535: a mask holds class "
            "ids 1..N (0 = unlabelled); renumber the classes or choose the right "
            "mask raster."
        )
    return np.dtype(np.uint8) if highest <= 255 else np.dtype(np.uint16)


def warp_mask_raster(mask_path, mask, path, dst_crs, transform, width, height, feedback):
    """Resample the mask with nearest neighbour onto the grid; 0 = unlabelled.

    Returns:
        counts: {class id (or band for multi-band masks): pixels}.
    """
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    dtype = mask_dtype_for_raster(mask_path, mask)
    src_dtype = np.dtype(mask.dtypes[0])
    floating = np.issubdtype(src_dtype, np.floating)
    nodata = mask.nodata
    vrt_args = dict(
        crs=dst_crs, transform=transform, width=width, height=height, resampling=Resampling.nearest
    )
    if nodata is None:
        vrt_args["nodata"] = 0
    counts = np.zeros(65536 if dtype == np.uint16 else 256, dtype=np.int64)
    band_counts = np.zeros(mask.count, dtype=np.int64)
    negatives = 0
    profile = gtiff_profile(
        width=width,
        height=height,
        count=mask.count,
        dtype=dtype.name,
        crs=dst_crs,
        transform=transform,
        nodata=0,
    )
    with WarpedVRT(mask, **vrt_args) as vrt, rasterio.open(path, "w", **profile) as dst:
        copy_metadata(mask, dst)
        windows = list(chunk_windows(width, height, mask.count * max(src_dtype.itemsize, 1)))
        for n, window in enumerate(windows, start=1):
            feedback.check_canceled()
            data = vrt.read(window=window)
            # Each band's value is judged on its own (the bands of a one-hot mask are
            # independent), so the bands go to valid_pixels as one stack of shape
            # (1, bands, rows, cols) rather than as bands of one pixel.
            bad = ~valid_pixels(data[np.newaxis], nodata)
            negative = (data < 0) & ~bad
            negatives += int(negative.sum())
            bad |= negative
            if floating:
                fraction = (data != np.floor(data)) & ~bad
                if fraction.any():
                    raise CoreError(
                        f"The mask '{mask_path}' holds decimal values (e.g. "
                        f"{data[fraction][0]:g}): a mask holds whole class ids 1..N "
                        "(0 = unlabelled). Choose the class raster, or round it "
                        "first."
                    )
            out = np.where(bad, 0, data).astype(dtype)
            if mask.count == 1:
                counts += np.bincount(out.ravel(), minlength=counts.size)[: counts.size]
            else:
                band_counts += (out != 0).sum(axis=(1, 2))
            dst.write(out, window=window)
            feedback.progress(n / len(windows))
    if negatives:
        feedback.warning(
            f"{negatives:,} mask pixels hold negative values; they are left unlabelled (0)."
        )
    if mask.count == 1:
        return {str(i): int(c) for i, c in enumerate(counts) if i and c}
    feedback.info(
        f"The mask has {mask.count} bands (one per class, as a one-hot mask); "
        "labelled pixels are counted per band."
    )
    return {str(i): int(c) for i, c in enumerate(band_counts, start=1)}
