"""Polygons of a cleaned class map (GDAL Polygonize) with per-polygon means.

``write_polygons`` polygonizes the patch labels of ``cleanmap`` (a GeoTIFF with
one label per patch, so one polygon per patch, with the same connectivity; GDAL
reads it row by row), then fills in class_id, class_name, area_ha (the
polygon's own area in hectares) and, when given, the mean probability of the
polygon's class and the mean uncertainty: zonal means over the patch labels,
labels and rasters read in the same row windows.
"""

from __future__ import annotations

import numpy as np

from .areas import M2_PER_HA
from .feedback import Canceled, CoreError
from .raster import gdal_exceptions, grid_description, open_raster, same_grid

#: Rows of the probability/uncertainty rasters read at a time.
WINDOW_ROWS = 512
#: Name of the polygon layer in the GeoPackage.
LAYER_NAME = "polygons"


def check_zonal_inputs(src, probabilities, uncertainty, n_classes: int) -> None:
    """Refuse probability/uncertainty rasters that are not on the class map's grid.

    Raises:
        CoreError: naming the raster and what to give instead.
    """
    for path, what, bands in (
        (probabilities, "PROBABILITIES", (n_classes,)),
        (uncertainty, "UNCERTAINTY", (1, 2)),  # entropy (+ TTA disagreement); band 1 is used
    ):
        if not path:
            continue
        with open_raster(path, what) as ds:
            if not same_grid(src, ds):
                raise CoreError(
                    f"{what} is not on the class map's grid ({grid_description(ds)}; the map: "
                    f"{grid_description(src)}): give the outputs of the same predict run."
                )
            if ds.count not in bands:
                raise CoreError(
                    f"{what} has {ds.count} band(s) but {bands[0]} are expected (one per class "
                    "for PROBABILITIES, predict's OUTPUT_UNCERTAINTY for UNCERTAINTY): give "
                    "predict's outputs of this map."
                )


def zonal_means(path, labels_path: str, patch_class: np.ndarray, per_class: bool):
    """Mean value per patch label of a raster (NaN where the patch has no valid value).

    Args:
        path: predict's probabilities (``per_class``: the band of each pixel's class is
            used) or uncertainty raster (band 1, the entropy), on the labels' grid; band
            scales are applied.
        labels_path: GeoTIFF of patch labels (0 = nodata).
        patch_class: class id per label.
        per_class: pick the band of the patch's class.
    """
    from rasterio.windows import Window

    n = len(patch_class)
    sums = np.zeros(n)
    counts = np.zeros(n)
    with open_raster(path) as ds, open_raster(labels_path) as label_ds:
        scales = np.asarray([s or 1.0 for s in ds.scales], dtype=np.float64)
        offsets = np.asarray([o or 0.0 for o in ds.offsets], dtype=np.float64)
        nodata = ds.nodata
        for r0 in range(0, ds.height, WINDOW_ROWS):
            rows = min(WINDOW_ROWS, ds.height - r0)
            window = Window(0, r0, ds.width, rows)
            lab = label_ds.read(1, window=window)
            if per_class:
                band = np.clip(patch_class[lab] - 1, 0, None)
                data = ds.read(window=window)
                values = np.take_along_axis(data, band[None], axis=0)[0]
            else:
                band = np.zeros(lab.shape, dtype=np.int64)
                values = ds.read(1, window=window)
            ok = lab > 0
            if nodata is not None:
                ok &= values != nodata
            values = values.astype(np.float64) * scales[band] + offsets[band]
            ok &= np.isfinite(values)
            sums += np.bincount(lab[ok], weights=values[ok], minlength=n)
            counts += np.bincount(lab[ok], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.where(counts > 0, counts, 1), np.nan)


def write_polygons(*args, **kwargs) -> int:
    """``_write_polygons`` with GDAL raising exceptions inside, and only inside, the call."""
    with gdal_exceptions():
        return _write_polygons(*args, **kwargs)


def _write_polygons(
    path: str,
    labels_path: str,
    patch_class: np.ndarray,
    names: list,
    connectivity: int,
    probabilities=None,
    uncertainty=None,
    feedback=None,
) -> int:
    """Polygonize a patch-label GeoTIFF into a GeoPackage layer; return the polygon count.

    Fields: patch_id, class_id, class_name, area_ha, mean_probability and
    mean_uncertainty (NULL when the raster is not given).

    Raises:
        Canceled: when canceled during polygonizing.
    """
    from osgeo import gdal, ogr, osr

    with open_raster(labels_path) as ds:
        crs = ds.crs
    _, factor = crs.linear_units_factor
    to_ha = float(factor) ** 2 / M2_PER_HA
    mem = gdal.Open(labels_path)
    band = mem.GetRasterBand(1)
    srs = osr.SpatialReference()
    srs.ImportFromWkt(crs.to_wkt())
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    source = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    try:
        layer = source.CreateLayer(LAYER_NAME, srs, ogr.wkbPolygon)
        for name, kind in (
            ("patch_id", ogr.OFTInteger64),
            ("class_id", ogr.OFTInteger),
            ("class_name", ogr.OFTString),
            ("area_ha", ogr.OFTReal),
            ("mean_probability", ogr.OFTReal),
            ("mean_uncertainty", ogr.OFTReal),
        ):
            layer.CreateField(ogr.FieldDefn(name, kind))

        def progress(fraction, message, data):
            return 0 if feedback is not None and feedback.is_canceled() else 1

        options = ["8CONNECTED=8"] if connectivity == 8 else []
        try:
            gdal.Polygonize(band, band.GetMaskBand(), layer, 0, options, callback=progress)
        except RuntimeError:
            if feedback is not None and feedback.is_canceled():
                raise Canceled() from None
            raise
        prob = zonal_means(probabilities, labels_path, patch_class, True) if probabilities else None
        unc = zonal_means(uncertainty, labels_path, patch_class, False) if uncertainty else None
        layer.StartTransaction()
        count = 0
        for feature in layer:
            patch = feature.GetField("patch_id")
            k = int(patch_class[patch])
            feature.SetField("class_id", k)
            feature.SetField("class_name", str(names[k - 1]))
            feature.SetField("area_ha", feature.GetGeometryRef().GetArea() * to_ha)
            for field, means in (("mean_probability", prob), ("mean_uncertainty", unc)):
                if means is not None and np.isfinite(means[patch]):
                    feature.SetField(field, float(means[patch]))
            layer.SetFeature(feature)
            count += 1
        layer.CommitTransaction()
    finally:
        source = None  # closes the GeoPackage
        band = mem = None
    return count
