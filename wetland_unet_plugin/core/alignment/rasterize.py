"""Burn class polygons into the aligned mask raster with GDAL (by pixel centre)."""

from __future__ import annotations

import numpy as np
import rasterio

from ..feedback import Canceled, CoreError, SubFeedback
from ..raster import GDAL_CREATION_OPTIONS, chunk_windows
from .gdal_feedback import GdalErrors, gdal_callback


def rasterize_polygons(shapes, info, path, transform, width, height, feedback):
    """Burn class ids of polygons (by pixel centre) into a new mask GeoTIFF.

    The mask is uint8 (uint16 for ids above 255) with nodata 0 = unlabelled;
    polygons of id 0 are not burnt, so they never erase the labels of others.

    Args:
        shapes: [(ogr geometry in the grid's CRS, class id)] from
            :func:`.polygons.read_polygons`.
        info: its info dict (``max_id``, ``srs``).
        path: the GeoTIFF to create.
        transform, width, height: the output grid.
        feedback: progress and cancel.

    Returns:
        {class id as text: labelled pixels}.
    """
    from osgeo import gdal, ogr

    dtype = np.dtype(np.uint8) if info["max_id"] <= 255 else np.dtype(np.uint16)
    gdal_type = gdal.GDT_Byte if dtype == np.uint8 else gdal.GDT_UInt16
    px, py = transform.a, -transform.e
    left, top = transform.c, transform.f
    right, bottom = left + px * width, top - py * height
    memory = ogr.GetDriverByName("Memory").CreateDataSource("")
    layer = memory.CreateLayer("mask", srs=info["srs"], geom_type=ogr.wkbMultiPolygon)
    layer.CreateField(ogr.FieldDefn("_id", ogr.OFTInteger))
    layer_defn = layer.GetLayerDefn()
    for geom, class_id in shapes:
        if not class_id:
            continue  # unlabelled polygons do not erase labels of others
        x0, x1, y0, y1 = geom.GetEnvelope()
        if x1 < left or x0 > right or y1 < bottom or y0 > top:
            continue
        feature = ogr.Feature(layer_defn)
        feature.SetGeometry(geom)
        feature.SetField("_id", int(class_id))
        layer.CreateFeature(feature)
    with GdalErrors() as errors:
        dataset = gdal.GetDriverByName("GTiff").Create(
            path, width, height, 1, gdal_type, options=GDAL_CREATION_OPTIONS
        )
        if dataset is None:
            raise CoreError(
                f"Could not create the mask '{path}' ({errors.text()}): check the "
                "folder is writable and has free space."
            )
        dataset.SetGeoTransform(transform.to_gdal())
        dataset.SetProjection(info["srs"].ExportToWkt())
        band = dataset.GetRasterBand(1)
        band.SetNoDataValue(0)
        band.Fill(0)
        sub = SubFeedback(feedback, 0.0, 0.8)
        result = gdal.RasterizeLayer(
            dataset, [1], layer, options=["ATTRIBUTE=_id"], callback=gdal_callback(sub)
        )
        dataset.FlushCache()
        dataset = None
        if feedback.is_canceled():
            raise Canceled()
        if result != 0:
            raise CoreError(f"Burning the polygons into the mask failed ({errors.text()}).")
    counts = np.zeros(65536 if dtype == np.uint16 else 256, dtype=np.int64)
    with rasterio.open(path) as written:
        windows = list(chunk_windows(width, height, dtype.itemsize))
        for n, window in enumerate(windows, start=1):
            feedback.check_canceled()
            counts += np.bincount(written.read(1, window=window).ravel(), minlength=counts.size)[
                : counts.size
            ]
            feedback.progress(0.8 + 0.2 * n / len(windows))
    return {str(i): int(c) for i, c in enumerate(counts) if i and c}
