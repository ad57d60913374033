"""Small raster and vector writers for tests (rasterio/OGR only; no code under test)."""

import numpy as np
import rasterio
from rasterio.transform import from_origin


def write_raster(
    path, data, crs="EPSG:32618", transform=None, nodata=None, descriptions=None, tiled=False
):
    """Write a (bands, rows, cols) or (rows, cols) array as a GeoTIFF and return the path."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    if transform is None:
        transform = from_origin(500000.0, 4000000.0, 10.0, 10.0)
    profile = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        transform=transform,
        nodata=nodata,
    )
    if crs is not None:
        profile["crs"] = crs
    if tiled:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, text in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, text)
    return str(path)


def write_polygons(path, polygons, field, crs_epsg, field_type="int", layer="classes"):
    """Write polygons [(wkt, value), ...] to a GeoPackage with one attribute field."""
    from osgeo import ogr, osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(crs_epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    driver = ogr.GetDriverByName("GPKG")
    ds = driver.CreateDataSource(str(path))
    lyr = ds.CreateLayer(layer, srs, ogr.wkbPolygon)
    lyr.CreateField(ogr.FieldDefn(field, ogr.OFTInteger if field_type == "int" else ogr.OFTString))
    for wkt, value in polygons:
        feature = ogr.Feature(lyr.GetLayerDefn())
        feature.SetField(field, value)
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        lyr.CreateFeature(feature)
    ds = None
    return str(path)
