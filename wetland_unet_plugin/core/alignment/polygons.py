"""Mask polygons: open the vector layer, read its class polygons, reproject them densified.

A polygon mask is any layer OGR reads (GeoPackage, Shapefile, GeoJSON, also as
QGIS's 'file.gpkg|layername=x'). Its polygons are reprojected with OGR into
the target CRS; their long edges get extra vertices first, so an edge that is
straight in the layer's CRS follows its true curve in the target CRS. The
class field's values become ids in :mod:`.classmap`; burning into the grid is
:mod:`.rasterize`'s.
"""

from __future__ import annotations

import math
import os

from ..feedback import CoreError
from .classmap import map_field_values, optional_class_names
from .crs import crs_name, no_crs_error
from .gdal_feedback import GdalErrors

#: Longest polygon edge reprojected as a straight line, in metres (or the same ground
#: distance in degrees, 1e-3 per 111 m): longer edges get vertices this far apart first,
#: so a straight edge in the layer's CRS follows its true curve in the target CRS
#: (a 100 km parallel bows some 300 m from its chord in UTM; a 100 m piece, 3 mm).
DENSIFY_METRES = 100.0


def split_vector_uri(path, layer):
    """Accept QGIS-style 'file.gpkg|layername=x' (or |layerid=n) sources."""
    if path and "|" in str(path):
        base, *parts = str(path).split("|")
        for part in parts:
            key, _, value = part.partition("=")
            if key.strip().lower() == "layername" and not layer:
                layer = value
            elif key.strip().lower() == "layerid" and not layer:
                layer = int(value)
        return base, layer
    return path, layer


def polygonal(geom):
    """Return the polygonal part of an OGR geometry (linearised), or None."""
    from osgeo import ogr

    if geom is None or geom.IsEmpty():
        return None
    flat = ogr.GT_Flatten(geom.GetGeometryType())
    if flat in (ogr.wkbCurvePolygon, ogr.wkbMultiSurface):
        geom = geom.GetLinearGeometry()
        flat = ogr.GT_Flatten(geom.GetGeometryType())
    if flat in (ogr.wkbPolygon, ogr.wkbMultiPolygon):
        return geom.Clone()
    if flat == ogr.wkbGeometryCollection:
        multi = ogr.Geometry(ogr.wkbMultiPolygon)
        for i in range(geom.GetGeometryCount()):
            part = polygonal(geom.GetGeometryRef(i))
            if part is None:
                continue
            if ogr.GT_Flatten(part.GetGeometryType()) == ogr.wkbPolygon:
                multi.AddGeometry(part)
            else:
                for j in range(part.GetGeometryCount()):
                    multi.AddGeometry(part.GetGeometryRef(j))
        return multi if multi.GetGeometryCount() else None
    return None


def open_vector(path, layer_name):
    """Open a vector file and pick its layer: the one named (or numbered), else the
    first polygon layer.

    Returns:
        (dataset, layer, path): keep ``dataset`` referenced while using ``layer``.
    """
    from osgeo import gdal

    path, layer_name = split_vector_uri(path, layer_name)
    if not path:
        raise CoreError("No mask polygons given: choose a polygon layer.")
    with GdalErrors():
        dataset = gdal.OpenEx(str(path), gdal.OF_VECTOR)
    if dataset is None:
        if not os.path.exists(str(path)):
            raise CoreError(f"The mask polygons '{path}' do not exist: check the path.")
        raise CoreError(
            f"The mask polygons '{path}' are not a vector file OGR can read: "
            "choose a GeoPackage, Shapefile, GeoJSON or another polygon layer."
        )
    names = [dataset.GetLayerByIndex(i).GetName() for i in range(dataset.GetLayerCount())]
    if not names:
        raise CoreError(f"'{path}' holds no vector layer: choose a file with polygons.")
    if layer_name not in (None, ""):
        by_index = isinstance(layer_name, int) or (
            str(layer_name).isdigit() and str(layer_name) not in names
        )
        if by_index:
            index = int(layer_name)
            layer = dataset.GetLayerByIndex(index) if 0 <= index < len(names) else None
        else:
            layer = dataset.GetLayerByName(str(layer_name))
        if layer is None:
            raise CoreError(
                f"'{path}' has no layer '{layer_name}': its layers are "
                f"{', '.join(names)}. Choose one of them."
            )
    else:
        layer = dataset.GetLayerByIndex(0)
        if len(names) > 1:
            from osgeo import ogr

            for i in range(len(names)):
                candidate = dataset.GetLayerByIndex(i)
                if ogr.GT_Flatten(candidate.GetGeomType()) in (
                    ogr.wkbPolygon,
                    ogr.wkbMultiPolygon,
                    ogr.wkbCurvePolygon,
                    ogr.wkbMultiSurface,
                ):
                    layer = candidate
                    break
    return dataset, layer, path


def densify_step(srs) -> float:
    """``DENSIFY_METRES`` in the units of a layer's CRS (degrees or linear units)."""
    if srs.IsGeographic():
        radians_per_unit = srs.GetAngularUnits() or math.pi / 180.0
        return math.radians(DENSIFY_METRES / 111_000.0) / radians_per_unit
    return DENSIFY_METRES / (srs.GetLinearUnits() or 1.0)


def _class_field(layer, class_field):
    """(index, name, kind) of the layer's class field; kind is integer, real or text.

    Raises:
        CoreError: listing the layer's fields when the field is missing or unusable.
    """
    from osgeo import ogr

    defn = layer.GetLayerDefn()
    fields = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    if not class_field:
        raise CoreError(
            f"No CLASS_FIELD given for the mask polygons: choose the field that "
            f"holds the class of each polygon; layer '{layer.GetName()}' has "
            f"fields: {', '.join(fields) or 'none'}."
        )
    index = defn.GetFieldIndex(str(class_field))
    if index < 0:
        lowered = [f.lower() for f in fields]
        if str(class_field).lower() in lowered:
            index = lowered.index(str(class_field).lower())
    if index < 0:
        raise CoreError(
            f"The mask polygons (layer '{layer.GetName()}') have no field "
            f"'{class_field}': choose one of its fields: "
            f"{', '.join(fields) or 'none (add a class field in QGIS first)'}."
        )
    field_name = fields[index]
    field_type = defn.GetFieldDefn(index).GetType()
    if field_type in (ogr.OFTInteger, ogr.OFTInteger64):
        return index, field_name, "integer"
    if field_type == ogr.OFTReal:
        return index, field_name, "real"
    if field_type == ogr.OFTString:
        return index, field_name, "text"
    raise CoreError(
        f"CLASS_FIELD '{field_name}' is of type "
        f"{defn.GetFieldDefn(index).GetTypeName()}: choose a field holding "
        "integer class ids or class names."
    )


def _read_records(layer, index, path, feedback):
    """[(polygonal geometry in the layer's CRS, class-field value)] of the layer's features."""
    records = []
    skipped_kinds = 0
    total = max(layer.GetFeatureCount(), 1)
    layer.ResetReading()
    for n, feature in enumerate(layer, start=1):
        if n % 1000 == 0:
            feedback.check_canceled()
            feedback.progress(0.5 * n / total)
        geom = polygonal(feature.GetGeometryRef())
        if geom is None:
            skipped_kinds += 1
            continue
        records.append((geom, feature.GetField(index)))
    if not records:
        raise CoreError(
            f"The mask layer '{layer.GetName()}' of '{path}' has no polygons"
            + (
                f" (its {skipped_kinds} feature(s) are points, lines or empty)"
                if skipped_kinds
                else " (it is empty)"
            )
            + ": choose a polygon layer with class polygons."
        )
    if skipped_kinds:
        feedback.warning(
            f"{skipped_kinds} feature(s) of the mask layer are not polygons and are ignored."
        )
    return records


def _reproject(records, ids, transform, densify, feedback):
    """Densify and transform the geometries in place.

    Returns:
        (shapes, bounds, failed): [(geometry, class id)] of those placed, their
        bounding box, and how many could not be transformed.
    """
    shapes = []
    failed = 0
    minx = miny = math.inf
    maxx = maxy = -math.inf
    with GdalErrors():
        for n, ((geom, _), class_id) in enumerate(zip(records, ids), start=1):
            if n % 1000 == 0:
                feedback.check_canceled()
                feedback.progress(0.5 + 0.5 * n / len(records))
            if densify:
                geom.Segmentize(densify)
            if transform is not None and geom.Transform(transform) != 0:
                failed += 1
                continue
            if geom.IsEmpty():
                continue
            x0, x1, y0, y1 = geom.GetEnvelope()
            if not all(math.isfinite(v) for v in (x0, x1, y0, y1)):
                failed += 1
                continue
            minx, maxx = min(minx, x0), max(maxx, x1)
            miny, maxy = min(miny, y0), max(maxy, y1)
            shapes.append((geom, class_id))
    return shapes, (minx, miny, maxx, maxy), failed


def read_polygons(path, layer_name, class_field, class_names, dst_crs, feedback):
    """Read, map and reproject the polygons of a mask layer.

    Returns:
        (shapes, info): shapes is a list of (ogr geometry in dst_crs, class id);
        info has ``bounds`` (of all polygons in dst_crs, or None), ``mapping``
        ({name: id} or None), ``json`` (the document for the sidecar or None),
        ``max_id``, ``srs`` (osr.SpatialReference of dst_crs).
    """
    from osgeo import osr

    dataset, layer, path = open_vector(path, layer_name)
    index, field_name, kind = _class_field(layer, class_field)

    src_srs = layer.GetSpatialRef()
    if src_srs is None:
        raise no_crs_error("mask polygon layer", path)
    src_srs = src_srs.Clone()
    dst_srs = osr.SpatialReference()
    dst_srs.ImportFromWkt(dst_crs.to_wkt())
    for srs in (src_srs, dst_srs):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = None if src_srs.IsSame(dst_srs) else osr.CoordinateTransformation(src_srs, dst_srs)
    densify = densify_step(src_srs) if transform is not None else 0.0

    records = _read_records(layer, index, path, feedback)
    ids, mapping, document = map_field_values(
        [value for _, value in records],
        kind,
        field_name,
        optional_class_names(class_names),
        os.path.abspath(str(path)),
        layer.GetName(),
        feedback,
    )

    shapes, bounds, failed = _reproject(records, ids, transform, densify, feedback)
    if failed:
        feedback.warning(
            f"{failed} polygon(s) could not be transformed to {crs_name(dst_crs)} and are ignored."
        )
    if not shapes:
        raise CoreError(
            f"None of the polygons of '{path}' can be placed in "
            f"{crs_name(dst_crs)}: check the layer's CRS and TARGET_CRS."
        )
    info = {
        "bounds": bounds,
        "mapping": mapping,
        "json": document,
        "max_id": max(ids) if ids else 0,
        "srs": dst_srs,
    }
    dataset = None  # noqa: F841 - close the source
    return shapes, info
