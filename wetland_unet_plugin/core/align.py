"""Align an image and its label mask onto one pixel grid, cropped to their common extent.

The seed pipeline aligned Planet scenes and masks by hand in R, and a
half-pixel shift or a mask in another CRS silently spoiled training. Here:

* the output grid is the image's own grid whenever the CRS and pixel size are
  kept (the image is then copied window by window, bit for bit, no
  resampling); otherwise it is GDAL's suggested grid for the target CRS, with
  its origin snapped to whole multiples of the pixel size (like ``gdalwarp
  -tap``);
* the grid is cropped to the intersection of the image's and the mask's
  extents, both expressed in the target CRS (the mask's extent is the
  bounding box of its raster, or of its polygons);
* the mask is resampled with nearest neighbour only, written as uint8 (or
  uint16 for ids above 255) with nodata 0 = unlabelled; the mask's own nodata,
  NaN, negative values and everything outside its coverage become 0;
* polygons are reprojected with OGR and burnt by pixel centre; a text class
  field is mapped to ids 1..N (order of ``class_names``, else sorted), the
  mapping is logged, returned and written beside the mask as
  ``<output_mask>.classes.json``;
* with ``rpc=True`` the image is orthorectified with GDAL's RPC transformer
  (no DEM: heights are taken as 0 m above the ellipsoid).

Both outputs are tiled, compressed GeoTIFFs written through
:func:`atomic_output`: on error or cancel nothing is left at the destinations.
"""

from __future__ import annotations

import contextlib
import json
import math
import os

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError

from .atomic import atomic_output, remove_quietly
from .classes import parse_class_names
from .feedback import Canceled, CoreError, Feedback, SubFeedback
from .raster import GTIFF_OPTIONS, check_output_path, chunk_windows, copy_metadata, open_raster

#: Image resampling methods, in the order the Processing dialog lists them.
RESAMPLING_METHODS = ["nearest", "bilinear", "cubic", "cubicspline", "lanczos", "average",
                      "mode", "max", "min", "med", "q1", "q3", "sum", "rms"]

#: Refuse output grids this many times larger than the image (a unit mix-up).
MAX_GROWTH = 64

#: Suffix of the class mapping written beside the mask.
CLASSES_SUFFIX = ".classes.json"

_GDAL_CREATION = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "COMPRESS=DEFLATE",
                  "BIGTIFF=IF_SAFER"]


# --------------------------------------------------------------------------- helpers

class _GdalErrors:
    """Collect GDAL error messages (without switching GDAL to exceptions globally)."""

    def __enter__(self):
        from osgeo import gdal

        self.messages = []
        gdal.PushErrorHandler(self._handler)
        return self

    def _handler(self, err_class, _err_no, message):
        from osgeo import gdal

        if err_class >= gdal.CE_Failure:
            self.messages.append(str(message).strip())

    def __exit__(self, *exc):
        from osgeo import gdal

        gdal.PopErrorHandler()
        return False

    def text(self) -> str:
        return "; ".join(self.messages[-3:]) or "no details from GDAL"


def _gdal_callback(feedback):
    """A GDAL progress callback that reports to ``feedback`` and stops on cancel."""

    def callback(complete, _message, _data):
        try:
            feedback.progress(float(complete))
        except Exception:  # noqa: BLE001 - progress must never break a warp
            pass
        return 0 if feedback.is_canceled() else 1

    return callback


def _parse_resampling(resampling) -> str:
    if isinstance(resampling, (int, np.integer)) and not isinstance(resampling, bool):
        if 0 <= int(resampling) < len(RESAMPLING_METHODS):
            return RESAMPLING_METHODS[int(resampling)]
    text = str(resampling or "bilinear").strip().lower()
    text = {"near": "nearest", "nearest neighbour": "nearest",
            "nearest neighbor": "nearest", "median": "med"}.get(text, text)
    if text not in RESAMPLING_METHODS:
        raise CoreError(f"RESAMPLING '{resampling}' is not known: choose one of "
                        f"{', '.join(RESAMPLING_METHODS)}.")
    return text


def _parse_crs(value, what="TARGET_CRS"):
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, CRS):
        return value
    try:
        crs = CRS.from_user_input(str(value).strip())
    except (CRSError, ValueError, TypeError) as err:
        raise CoreError(f"{what} '{value}' is not a coordinate reference system GDAL knows "
                        f"({err}): give it as 'EPSG:32633', a PROJ string or WKT.") from None
    return crs


def _crs_name(crs) -> str:
    if crs is None:
        return "no CRS"
    try:
        epsg = crs.to_epsg()
    except Exception:  # noqa: BLE001
        epsg = None
    if epsg:
        return f"EPSG:{epsg}"
    try:
        return crs.to_wkt().split('"')[1]
    except Exception:  # noqa: BLE001
        return str(crs)


def _same_crs(a, b) -> bool:
    if a is None or b is None:
        return False
    try:
        if a == b:
            return True
        code = a.to_epsg()
        return code is not None and code == b.to_epsg()
    except Exception:  # noqa: BLE001
        return False


def _fmt_bounds(bounds) -> str:
    return "x {0:.6g} .. {2:.6g}, y {1:.6g} .. {3:.6g}".format(*bounds)


def _no_crs_error(what, path):
    return CoreError(f"The {what} '{path}' has no coordinate reference system (CRS), so it cannot "
                     "be placed on the map: assign one with QGIS's \"Assign projection\" "
                     "(Raster > Projections) or `gdal_edit -a_srs EPSG:xxxx`, then run again.")


def _corner_bounds(dataset):
    """Bounding box of the four corners of a dataset (also for rotated transforms)."""
    t = dataset.transform
    xs, ys = zip(*[t * (c, r) for c in (0, dataset.width) for r in (0, dataset.height)])
    return min(xs), min(ys), max(xs), max(ys)


def _transform_bounds(src_crs, dst_crs, bounds):
    from rasterio.warp import transform_bounds

    if _same_crs(src_crs, dst_crs):
        return tuple(bounds)
    try:
        return tuple(transform_bounds(src_crs, dst_crs, *bounds, densify_pts=21))
    except Exception as err:  # noqa: BLE001
        raise CoreError(f"The extent {_fmt_bounds(bounds)} in {_crs_name(src_crs)} cannot be "
                        f"expressed in {_crs_name(dst_crs)} ({err}): choose a TARGET_CRS that "
                        "covers the area.") from None


def _same_units(a, b) -> bool:
    """True when both CRSs are projected with the same linear unit (e.g. both metres)."""
    try:
        return (a.is_projected and b.is_projected
                and a.linear_units_factor[1] == b.linear_units_factor[1])
    except Exception:  # noqa: BLE001 - unknown units: do not assume
        return False


def _round_significant(value: float, digits: int) -> float:
    if value <= 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


def _utm_for(lon, lat) -> CRS:
    zone = int(min(max((lon + 180.0) // 6.0 + 1, 1), 60))
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


# --------------------------------------------------------------------------- polygons

def _split_vector_uri(path, layer):
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


def _polygonal(geom):
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
            part = _polygonal(geom.GetGeometryRef(i))
            if part is None:
                continue
            if ogr.GT_Flatten(part.GetGeometryType()) == ogr.wkbPolygon:
                multi.AddGeometry(part)
            else:
                for j in range(part.GetGeometryCount()):
                    multi.AddGeometry(part.GetGeometryRef(j))
        return multi if multi.GetGeometryCount() else None
    return None


def _optional_class_names(class_names):
    """Parsed CLASS_NAMES, or None when none are given."""
    if class_names is None:
        return None
    if isinstance(class_names, str) and not class_names.strip():
        return None
    if isinstance(class_names, (list, tuple)) and not class_names:
        return None
    return parse_class_names(class_names)


def _open_vector(path, layer_name):
    from osgeo import gdal

    path, layer_name = _split_vector_uri(path, layer_name)
    if not path:
        raise CoreError("No mask polygons given: choose a polygon layer.")
    with _GdalErrors():
        dataset = gdal.OpenEx(str(path), gdal.OF_VECTOR)
    if dataset is None:
        if not os.path.exists(str(path)):
            raise CoreError(f"The mask polygons '{path}' do not exist: check the path.")
        raise CoreError(f"The mask polygons '{path}' are not a vector file OGR can read: "
                        "choose a GeoPackage, Shapefile, GeoJSON or another polygon layer.")
    names = [dataset.GetLayerByIndex(i).GetName() for i in range(dataset.GetLayerCount())]
    if not names:
        raise CoreError(f"'{path}' holds no vector layer: choose a file with polygons.")
    if layer_name not in (None, ""):
        by_index = isinstance(layer_name, int) or (str(layer_name).isdigit()
                                                   and str(layer_name) not in names)
        if by_index:
            index = int(layer_name)
            layer = dataset.GetLayerByIndex(index) if 0 <= index < len(names) else None
        else:
            layer = dataset.GetLayerByName(str(layer_name))
        if layer is None:
            raise CoreError(f"'{path}' has no layer '{layer_name}': its layers are "
                            f"{', '.join(names)}. Choose one of them.")
    else:
        layer = dataset.GetLayerByIndex(0)
        if len(names) > 1:
            from osgeo import ogr

            for i in range(len(names)):
                candidate = dataset.GetLayerByIndex(i)
                if ogr.GT_Flatten(candidate.GetGeomType()) in (
                        ogr.wkbPolygon, ogr.wkbMultiPolygon, ogr.wkbCurvePolygon,
                        ogr.wkbMultiSurface):
                    layer = candidate
                    break
    return dataset, layer, path


#: Longest polygon edge reprojected as a straight line, in metres (or the same ground
#: distance in degrees, 1e-3 per 111 m): longer edges get vertices this far apart first,
#: so a straight edge in the layer's CRS follows its true curve in the target CRS
#: (a 100 km parallel bows some 300 m from its chord in UTM; a 100 m piece, 3 mm).
DENSIFY_METRES = 100.0


def _densify_step(srs) -> float:
    """``DENSIFY_METRES`` in the units of a layer's CRS (degrees or linear units)."""
    if srs.IsGeographic():
        radians_per_unit = srs.GetAngularUnits() or math.pi / 180.0
        return math.radians(DENSIFY_METRES / 111_000.0) / radians_per_unit
    return DENSIFY_METRES / (srs.GetLinearUnits() or 1.0)


def _read_polygons(path, layer_name, class_field, class_names, dst_crs, feedback):
    """Read, map and reproject the polygons of a mask layer.

    Returns:
        (shapes, info): shapes is a list of (ogr geometry in dst_crs, class id);
        info has ``bounds`` (of all polygons in dst_crs, or None), ``mapping``
        ({name: id} or None), ``json`` (the document for the sidecar or None),
        ``max_id``, ``srs`` (osr.SpatialReference of dst_crs).
    """
    from osgeo import ogr, osr

    dataset, layer, path = _open_vector(path, layer_name)
    defn = layer.GetLayerDefn()
    fields = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    if not class_field:
        raise CoreError(f"No CLASS_FIELD given for the mask polygons: choose the field that "
                        f"holds the class of each polygon; layer '{layer.GetName()}' has "
                        f"fields: {', '.join(fields) or 'none'}.")
    index = defn.GetFieldIndex(str(class_field))
    if index < 0:
        lowered = [f.lower() for f in fields]
        if str(class_field).lower() in lowered:
            index = lowered.index(str(class_field).lower())
    if index < 0:
        raise CoreError(f"The mask polygons (layer '{layer.GetName()}') have no field "
                        f"'{class_field}': choose one of its fields: "
                        f"{', '.join(fields) or 'none (add a class field in QGIS first)'}.")
    field_name = fields[index]
    field_type = defn.GetFieldDefn(index).GetType()
    if field_type in (ogr.OFTInteger, ogr.OFTInteger64):
        kind = "integer"
    elif field_type == ogr.OFTReal:
        kind = "real"
    elif field_type == ogr.OFTString:
        kind = "text"
    else:
        raise CoreError(f"CLASS_FIELD '{field_name}' is of type "
                        f"{defn.GetFieldDefn(index).GetTypeName()}: choose a field holding "
                        "integer class ids or class names.")

    src_srs = layer.GetSpatialRef()
    if src_srs is None:
        raise _no_crs_error("mask polygon layer", path)
    src_srs = src_srs.Clone()
    dst_srs = osr.SpatialReference()
    dst_srs.ImportFromWkt(dst_crs.to_wkt())
    for srs in (src_srs, dst_srs):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = None if src_srs.IsSame(dst_srs) else osr.CoordinateTransformation(src_srs,
                                                                                  dst_srs)
    densify = _densify_step(src_srs) if transform is not None else 0.0

    records = []  # (geometry in source CRS, raw value)
    skipped_kinds = 0
    total = max(layer.GetFeatureCount(), 1)
    layer.ResetReading()
    for n, feature in enumerate(layer, start=1):
        if n % 1000 == 0:
            feedback.check_canceled()
            feedback.progress(0.5 * n / total)
        geom = _polygonal(feature.GetGeometryRef())
        if geom is None:
            skipped_kinds += 1
            continue
        records.append((geom, feature.GetField(index)))
    if not records:
        raise CoreError(f"The mask layer '{layer.GetName()}' of '{path}' has no polygons"
                        + (f" (its {skipped_kinds} feature(s) are points, lines or empty)"
                           if skipped_kinds else " (it is empty)")
                        + ": choose a polygon layer with class polygons.")
    if skipped_kinds:
        feedback.warning(f"{skipped_kinds} feature(s) of the mask layer are not polygons and "
                         "are ignored.")

    names = _optional_class_names(class_names)

    mapping = None
    document = None
    ids = []
    raw_values = [value for _, value in records]
    if kind == "text":
        texts = [None if v is None or not str(v).strip() else str(v).strip() for v in raw_values]
        distinct = sorted({t for t in texts if t is not None})
        numeric = bool(distinct) and all(t.lstrip("-").isdigit() for t in distinct)
        if names is None and numeric:
            kind = "integer"
            raw_values = [None if t is None else int(t) for t in texts]
            feedback.info(f"CLASS_FIELD '{field_name}' holds whole numbers as text; they are "
                          "used as class ids as they are.")
        else:
            if names is not None:
                lookup = {name.strip().lower(): i for i, name in enumerate(names, start=1)}
                value_ids = {t: lookup.get(t.lower(), 0) for t in distinct}
                mapping = {name: i for i, name in enumerate(names, start=1)}
                origin = "in the order of CLASS_NAMES"
            else:
                value_ids = {t: i for i, t in enumerate(distinct, start=1)}
                mapping = dict(value_ids)
                origin = "sorted"
            ids = [0 if t is None else value_ids[t] for t in texts]
            counts = {t: texts.count(t) for t in distinct}
            feedback.info(f"Classes of '{field_name}' ({origin}): " + ", ".join(
                f"{i} = {name}" for name, i in mapping.items()))
            unlisted = {t: c for t, c in counts.items() if value_ids[t] == 0}
            if unlisted:
                feedback.info("Not in CLASS_NAMES, left unlabelled (0): " + ", ".join(
                    f"{t} ({c} polygon{'s' if c > 1 else ''})"
                    for t, c in sorted(unlisted.items())))
            missing = [name for name in mapping
                       if not any(value_ids[t] == mapping[name] for t in distinct)]
            if missing:
                feedback.warning(f"CLASS_NAMES {', '.join(missing)} occur in no polygon's "
                                 f"'{field_name}' (values found: {', '.join(distinct[:20])}"
                                 f"{' ...' if len(distinct) > 20 else ''}).")
            empty = texts.count(None)
            if empty:
                feedback.info(f"{empty} polygon(s) have no '{field_name}' and stay unlabelled.")
            document = {
                "field": field_name,
                "source": os.path.abspath(str(path)),
                "layer": layer.GetName(),
                "order": "class_names" if names is not None else "sorted",
                "classes": [{"id": i, "name": name,
                             "values": [t for t in distinct if value_ids[t] == i],
                             "polygons": sum(counts[t] for t in distinct if value_ids[t] == i)}
                            for name, i in mapping.items()],
                "unlabelled_values": unlisted,
            }
    if kind in ("integer", "real"):
        negative = 0
        for value in raw_values:
            if value is None:
                ids.append(0)
                continue
            number = float(value)
            if kind == "real" and number != math.floor(number):
                raise CoreError(f"CLASS_FIELD '{field_name}' holds decimal numbers (e.g. "
                                f"{number:g}): class ids must be whole numbers; choose a field "
                                "with integer ids or class names.")
            if number > 65535:
                raise CoreError(f"CLASS_FIELD '{field_name}' holds the id {number:.0f}, above "
                                "65535: renumber the classes 1..N (or use a text field of "
                                "class names).")
            if number < 0:
                negative += 1
            ids.append(max(int(number), 0))
        if negative:
            feedback.warning(f"{negative} polygon(s) have a negative '{field_name}' and stay "
                             "unlabelled (0).")
        if names is not None:
            mapping = {name: i for i, name in enumerate(names, start=1)}
            document = {"field": field_name, "source": os.path.abspath(str(path)),
                        "layer": layer.GetName(), "order": "ids as they are",
                        "classes": [{"id": i, "name": name} for name, i in mapping.items()]}
            feedback.info(f"Ids of '{field_name}' are used as they are; CLASS_NAMES label "
                          "them: " + ", ".join(f"{i} = {name}" for name, i in mapping.items()))
        present = sorted({i for i in ids if i})
        feedback.info(f"Class ids in '{field_name}': {', '.join(map(str, present)) or 'none'}.")

    shapes = []
    failed = 0
    minx = miny = math.inf
    maxx = maxy = -math.inf
    with _GdalErrors():
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
    if failed:
        feedback.warning(f"{failed} polygon(s) could not be transformed to "
                         f"{_crs_name(dst_crs)} and are ignored.")
    if not shapes:
        raise CoreError(f"None of the polygons of '{path}' can be placed in "
                        f"{_crs_name(dst_crs)}: check the layer's CRS and TARGET_CRS.")
    info = {"bounds": (minx, miny, maxx, maxy), "mapping": mapping, "json": document,
            "max_id": max(ids) if ids else 0, "srs": dst_srs}
    dataset = None  # noqa: F841 - close the source
    return shapes, info


# --------------------------------------------------------------------------- grid

def _image_grid(image, rpc, dst_crs, pixel_size):
    """Return the grid rule for the image: (origin x, origin y, px, py, bounds in dst, kept).

    ``kept`` is True when the output uses the image's own pixels (same CRS, same
    pixel size, north-up): the image is then copied, not resampled.
    """
    from rasterio.warp import calculate_default_transform

    t = image.transform
    north_up = t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0
    if not rpc and north_up and _same_crs(image.crs, dst_crs):
        px, py = t.a, -t.e
        kept = not pixel_size or (math.isclose(pixel_size, px, rel_tol=1e-9)
                                  and math.isclose(pixel_size, py, rel_tol=1e-9))
        if not kept:
            px = py = float(pixel_size)
        return t.c, t.f, px, py, tuple(image.bounds), kept
    try:
        if rpc:
            transform, width, height = calculate_default_transform(
                CRS.from_epsg(4326), dst_crs, image.width, image.height, rpcs=image.rpcs,
                resolution=pixel_size or None)
        else:
            transform, width, height = calculate_default_transform(
                image.crs, dst_crs, image.width, image.height, *_corner_bounds(image),
                resolution=pixel_size or None)
    except Exception as err:  # noqa: BLE001
        raise CoreError(f"The image cannot be reprojected to {_crs_name(dst_crs)} ({err}): "
                        "choose a TARGET_CRS that covers the image's area.") from None
    if pixel_size:
        px = py = float(pixel_size)
    elif (not rpc and north_up and math.isclose(t.a, -t.e, rel_tol=1e-9)
          and _same_units(image.crs, dst_crs)):
        px = py = t.a  # metres stay metres: a 10 m image gives a 10 m grid
    else:
        px = py = _round_significant(abs(transform.a), 4)
    if rpc:
        bounds = (transform.c, transform.f + transform.e * height,
                  transform.c + transform.a * width, transform.f)
    else:
        bounds = _transform_bounds(image.crs, dst_crs, _corner_bounds(image))
    return 0.0, 0.0, px, py, bounds, False


def _snap(ox, oy, px, py, bounds, clip=None):
    """Pixels (col0, row0, col1, row1) of the grid (ox, oy, px, py) covering ``bounds``."""
    left, bottom, right, top = bounds
    eps = 1e-6
    col0 = math.floor((left - ox) / px + eps)
    col1 = math.ceil((right - ox) / px - eps)
    row0 = math.floor((oy - top) / py + eps)
    row1 = math.ceil((oy - bottom) / py - eps)
    if clip is not None:
        col0, row0 = max(col0, 0), max(row0, 0)
        col1, row1 = min(col1, clip[0]), min(row1, clip[1])
    return col0, row0, col1, row1


# --------------------------------------------------------------------------- writers

def _copy_image_window(image, path, col0, row0, width, height, transform, feedback):
    """Copy a window of the image bit for bit into a new GeoTIFF."""
    from rasterio.windows import Window

    dtypes = {np.dtype(d) for d in image.dtypes}
    dtype = np.result_type(*dtypes) if len(dtypes) > 1 else next(iter(dtypes))
    profile = dict(GTIFF_OPTIONS, width=width, height=height, count=image.count,
                   dtype=dtype.name, crs=image.crs, transform=transform, nodata=image.nodata)
    windows = list(chunk_windows(width, height, image.count * dtype.itemsize))
    with rasterio.open(path, "w", **profile) as dst:
        copy_metadata(image, dst)
        for n, window in enumerate(windows, start=1):
            feedback.check_canceled()
            source = Window(col0 + window.col_off, row0 + window.row_off, window.width,
                            window.height)
            dst.write(image.read(window=source), window=window)
            feedback.progress(n / len(windows))


def _warp_image(image_path, image, path, dst_crs, transform, width, height, resampling, rpc,
                feedback):
    """Warp the image onto the target grid with gdal.Warp (streamed by GDAL)."""
    from osgeo import gdal

    px, py = transform.a, -transform.e
    bounds = (transform.c, transform.f - py * height, transform.c + px * width, transform.f)
    options = dict(format="GTiff", outputBounds=bounds, xRes=px, yRes=py,
                   dstSRS=dst_crs.to_wkt(), resampleAlg="near" if resampling == "nearest"
                   else resampling, creationOptions=_GDAL_CREATION, multithread=True,
                   warpMemoryLimit=256, callback=_gdal_callback(feedback))
    if rpc:
        options.update(rpc=True, srcSRS="EPSG:4326")
    with _GdalErrors() as errors:
        result = gdal.Warp(path, str(image_path), **options)
        if feedback.is_canceled():
            result = None
            raise Canceled()
        if result is None:
            raise CoreError(f"Reprojecting the image failed ({errors.text()}): check that the "
                            "image is readable and TARGET_CRS/PIXEL_SIZE suit it.")
        if (result.RasterXSize, result.RasterYSize) != (width, height):
            result = None
            raise RuntimeError("gdal.Warp made a grid of another size than asked")
        result.SetGeoTransform(transform.to_gdal())
        for index, text in enumerate(image.descriptions, start=1):
            if text:
                result.GetRasterBand(index).SetDescription(text)
        result.FlushCache()
        result = None
    nodata = image.nodata
    if nodata is None:
        feedback.warning("The image has no nodata value: pixels of the output grid outside the "
                         "image are 0. To mark them, set the image's nodata (e.g. "
                         "`gdal_edit -a_nodata 0`) before aligning, or list 0 in the "
                         "cleaninvalid step's INVALID_VALUES.")


def _mask_dtype_for_raster(mask_path, mask):
    """uint8 when the mask's class ids fit, else uint16; error above 65535."""
    from osgeo import gdal

    if all(np.dtype(d) in (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(bool))
           for d in mask.dtypes):
        return np.dtype(np.uint8)
    highest = -math.inf
    with _GdalErrors():
        dataset = gdal.Open(str(mask_path))
        for index in range(1, dataset.RasterCount + 1):
            try:
                low_high = dataset.GetRasterBand(index).ComputeRasterMinMax(False)
            except Exception:  # noqa: BLE001 - all nodata
                low_high = None
            if low_high and math.isfinite(low_high[1]):
                highest = max(highest, low_high[1])
        dataset = None
    if highest > 65535:
        raise CoreError(f"The mask holds the value {highest:g}, above 65535: a mask holds class "
                        "ids 1..N (0 = unlabelled); renumber the classes or choose the right "
                        "mask raster.")
    return np.dtype(np.uint8) if highest <= 255 else np.dtype(np.uint16)


def _warp_mask_raster(mask_path, mask, path, dst_crs, transform, width, height, feedback):
    """Resample the mask with nearest neighbour onto the grid; 0 = unlabelled.

    Returns:
        counts: {class id (or band for multi-band masks): pixels}.
    """
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    dtype = _mask_dtype_for_raster(mask_path, mask)
    src_dtype = np.dtype(mask.dtypes[0])
    floating = np.issubdtype(src_dtype, np.floating)
    nodata = mask.nodata
    vrt_args = dict(crs=dst_crs, transform=transform, width=width, height=height,
                    resampling=Resampling.nearest)
    if nodata is None:
        vrt_args["nodata"] = 0
    counts = np.zeros(65536 if dtype == np.uint16 else 256, dtype=np.int64)
    band_counts = np.zeros(mask.count, dtype=np.int64)
    negatives = 0
    profile = dict(GTIFF_OPTIONS, width=width, height=height, count=mask.count,
                   dtype=dtype.name, crs=dst_crs, transform=transform, nodata=0)
    with WarpedVRT(mask, **vrt_args) as vrt, rasterio.open(path, "w", **profile) as dst:
        copy_metadata(mask, dst)
        windows = list(chunk_windows(width, height, mask.count * max(src_dtype.itemsize, 1)))
        for n, window in enumerate(windows, start=1):
            feedback.check_canceled()
            data = vrt.read(window=window)
            bad = np.zeros(data.shape, dtype=bool)
            if floating:
                bad |= ~np.isfinite(data)
            if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
                bad |= data == np.asarray(nodata, dtype=data.dtype)
            negative = (data < 0) & ~bad
            negatives += int(negative.sum())
            bad |= negative
            if floating:
                fraction = (data != np.floor(data)) & ~bad
                if fraction.any():
                    raise CoreError(f"The mask '{mask_path}' holds decimal values (e.g. "
                                    f"{data[fraction][0]:g}): a mask holds whole class ids 1..N "
                                    "(0 = unlabelled). Choose the class raster, or round it "
                                    "first.")
            out = np.where(bad, 0, data).astype(dtype)
            if mask.count == 1:
                counts += np.bincount(out.ravel(), minlength=counts.size)[:counts.size]
            else:
                band_counts += (out != 0).sum(axis=(1, 2))
            dst.write(out, window=window)
            feedback.progress(n / len(windows))
    if negatives:
        feedback.warning(f"{negatives:,} mask pixels hold negative values; they are left "
                         "unlabelled (0).")
    if mask.count == 1:
        return {str(i): int(c) for i, c in enumerate(counts) if i and c}
    feedback.info(f"The mask has {mask.count} bands (one per class, as a one-hot mask); "
                  "labelled pixels are counted per band.")
    return {str(i): int(c) for i, c in enumerate(band_counts, start=1)}


def _rasterize_polygons(shapes, info, path, transform, width, height, feedback):
    """Burn class ids of polygons (by pixel centre) into a new mask GeoTIFF."""
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
    with _GdalErrors() as errors:
        dataset = gdal.GetDriverByName("GTiff").Create(path, width, height, 1, gdal_type,
                                                       options=_GDAL_CREATION)
        if dataset is None:
            raise CoreError(f"Could not create the mask '{path}' ({errors.text()}): check the "
                            "folder is writable and has free space.")
        dataset.SetGeoTransform(transform.to_gdal())
        dataset.SetProjection(info["srs"].ExportToWkt())
        band = dataset.GetRasterBand(1)
        band.SetNoDataValue(0)
        band.Fill(0)
        sub = SubFeedback(feedback, 0.0, 0.8)
        result = gdal.RasterizeLayer(dataset, [1], layer, options=["ATTRIBUTE=_id"],
                                     callback=_gdal_callback(sub))
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
            counts += np.bincount(written.read(1, window=window).ravel(),
                                  minlength=counts.size)[:counts.size]
            feedback.progress(0.8 + 0.2 * n / len(windows))
    return {str(i): int(c) for i, c in enumerate(counts) if i and c}


# --------------------------------------------------------------------------- main

def align_pair(image, output_image, output_mask, mask=None, mask_vector=None,
               vector_layer=None, class_field=None, class_names=None, target_crs=None,
               pixel_size=0, resampling="bilinear", rpc=False, feedback=None) -> dict:
    """Reproject and pixel-align an image and its mask onto one grid, cropped to their overlap.

    Args:
        image: raster path of the scene.
        output_image: GeoTIFF path for the aligned image.
        output_mask: GeoTIFF path for the aligned mask (uint8/uint16, nodata 0).
        mask: label raster path (any CRS, resolution, extent), or None.
        mask_vector: polygon layer path (or 'file.gpkg|layername=x'), or None.
        vector_layer: layer name (or index) in a multi-layer vector file.
        class_field: the polygons' class field (integer ids, or text names).
        class_names: "water,wetland" or a list: text classes map to ids 1..N in
            this order (values not listed stay 0); for integer ids, names for them.
        target_crs: output CRS in any form GDAL accepts; default the image's
            (for ``rpc`` without an image CRS: the UTM zone of the scene).
        pixel_size: output pixel size in target CRS units; 0 = the image's (or
            GDAL's suggestion when reprojecting).
        resampling: image resampling, one of :data:`RESAMPLING_METHODS` (or its
            index); the mask always uses nearest neighbour.
        rpc: orthorectify the image with its RPC coefficients.
        feedback: :class:`Feedback` for progress, log and cancel.

    Returns:
        ``{"output_image", "output_mask", "classes_json", "width", "height", "crs"
        (WKT), "transform" (a, b, c, d, e, f), "pixel_size" [x, y], "bounds",
        "image_resampled" (False when the image pixels were copied),
        "class_mapping" ({name: id} or None), "class_names" (in id order or None),
        "labelled_pixels" ({"id": count})}``.

    Raises:
        CoreError: with what is wrong and what to do; Canceled on cancel. No
        output is left behind in either case.
    """
    feedback = feedback or Feedback()
    resampling = _parse_resampling(resampling)
    names = _optional_class_names(class_names)
    try:
        pixel_size = float(pixel_size or 0)
    except (TypeError, ValueError):
        raise CoreError(f"PIXEL_SIZE '{pixel_size}' is not a number: give the pixel size in "
                        "units of the target CRS, or 0 for the image's.") from None
    if pixel_size < 0 or not math.isfinite(pixel_size):
        raise CoreError(f"PIXEL_SIZE {pixel_size:g} is not a positive size: give the pixel "
                        "size in units of the target CRS, or 0 for the image's.")
    has_mask = mask not in (None, "")
    has_vector = mask_vector not in (None, "")
    if has_mask and has_vector:
        raise CoreError("Both MASK and MASK_VECTOR are given: choose one, the label raster or "
                        "the class polygons.")
    if not has_mask and not has_vector:
        raise CoreError("No mask given: choose a label raster (MASK) or class polygons "
                        "(MASK_VECTOR with CLASS_FIELD).")
    vector_path = _split_vector_uri(mask_vector, vector_layer)[0] if has_vector else None
    inputs = [image, mask if has_mask else None, vector_path]
    check_output_path(output_image, inputs, "output image")
    check_output_path(output_mask, inputs, "output mask")
    if os.path.abspath(output_image) == os.path.abspath(output_mask):
        raise CoreError("OUTPUT_IMAGE and OUTPUT_MASK are the same file: give them different "
                        "paths.")
    classes_json = output_mask + CLASSES_SUFFIX

    with contextlib.ExitStack() as stack:
        src = stack.enter_context(open_raster(image, "image"))
        if rpc:
            if not src.rpcs:
                raise CoreError(f"The image '{image}' has no RPC coefficients (RPC metadata "
                                "in the file or an _rpc.txt / .RPB file beside it): switch the "
                                "RPC option off, or put the scene's RPC file beside it.")
        elif src.crs is None:
            if src.rpcs:
                raise CoreError(f"The image '{image}' has no CRS but carries RPC coefficients: "
                                "switch the RPC option on to orthorectify it, or assign a CRS.")
            raise _no_crs_error("image", image)

        dst_crs = _parse_crs(target_crs)
        if dst_crs is None:
            if rpc and src.crs is None:
                dst_crs = _utm_for(src.rpcs.long_off, src.rpcs.lat_off)
                feedback.info(f"Target CRS: {_crs_name(dst_crs)} (the UTM zone of the scene).")
            else:
                dst_crs = src.crs
        elif src.crs is not None and _same_crs(src.crs, dst_crs):
            dst_crs = src.crs  # keep the image's own definition, so the grid stays identical
        if not dst_crs.is_valid:
            raise CoreError(f"TARGET_CRS '{target_crs}' is not valid: choose another CRS.")

        # The mask's extent in the target CRS.
        msk = shapes = vector_info = None
        if has_mask:
            msk = stack.enter_context(open_raster(mask, "mask"))
            if msk.crs is None:
                raise _no_crs_error("mask", mask)
            mask_bounds = _transform_bounds(msk.crs, dst_crs, _corner_bounds(msk))
        else:
            shapes, vector_info = _read_polygons(mask_vector, vector_layer, class_field,
                                                 class_names, dst_crs,
                                                 SubFeedback(feedback, 0.0, 0.05))
            mask_bounds = vector_info["bounds"]

        # The output grid.
        ox, oy, px, py, image_bounds, kept = _image_grid(src, rpc, dst_crs, pixel_size)
        common = (max(image_bounds[0], mask_bounds[0]), max(image_bounds[1], mask_bounds[1]),
                  min(image_bounds[2], mask_bounds[2]), min(image_bounds[3], mask_bounds[3]))
        no_overlap = CoreError(
            f"The image and the mask do not overlap. In {_crs_name(dst_crs)} the image covers "
            f"{_fmt_bounds(image_bounds)} and the mask covers {_fmt_bounds(mask_bounds)}. "
            "Check that both have the right CRS and belong to the same area.")
        if common[0] >= common[2] or common[1] >= common[3]:
            raise no_overlap
        col0, row0, col1, row1 = _snap(ox, oy, px, py, common,
                                       clip=(src.width, src.height) if kept else None)
        width, height = col1 - col0, row1 - row0
        if width <= 0 or height <= 0:
            raise no_overlap
        if width * height > MAX_GROWTH * max(src.width * src.height, 1) \
                and width * height > 1e8:
            raise CoreError(f"PIXEL_SIZE {px:g} in {_crs_name(dst_crs)} would make a "
                            f"{width:,} x {height:,} px output, far larger than the image "
                            f"({src.width:,} x {src.height:,} px): give the pixel size in the "
                            "units of the target CRS (degrees for EPSG:4326, metres for UTM).")
        if width < 2 or height < 2:
            feedback.warning(f"The output is only {width} x {height} px: check PIXEL_SIZE "
                             "(it is in units of the target CRS).")
        transform = Affine(px, 0.0, ox + col0 * px, 0.0, -py, oy - row0 * py)
        bounds = (transform.c, transform.f - py * height, transform.c + px * width,
                  transform.f)
        feedback.info(f"Output grid: {width} x {height} px of {px:g} x {py:g} in "
                      f"{_crs_name(dst_crs)}, extent {_fmt_bounds(bounds)}.")

        # Write both outputs; neither appears unless both succeed.
        tmp_image = stack.enter_context(atomic_output(output_image))
        tmp_mask = stack.enter_context(atomic_output(output_mask))
        image_step = SubFeedback(feedback, 0.05, 0.75)
        if kept:
            feedback.info("The image keeps its own grid: its pixels are copied unchanged.")
            _copy_image_window(src, tmp_image, col0, row0, width, height, transform,
                               image_step)
        else:
            feedback.info(f"Resampling the image ({resampling}"
                          f"{', RPC orthorectification' if rpc else ''}).")
            _warp_image(image, src, tmp_image, dst_crs, transform, width, height, resampling,
                        rpc, image_step)
        mask_step = SubFeedback(feedback, 0.75, 1.0)
        if has_mask:
            labelled = _warp_mask_raster(mask, msk, tmp_mask, dst_crs, transform, width,
                                         height, mask_step)
            mapping, document = None, None
            if names:
                mapping = {name: i for i, name in enumerate(names, start=1)}
                document = {"source": os.path.abspath(str(mask)), "order": "ids as they are",
                            "classes": [{"id": i, "name": name} for name, i in mapping.items()]}
                feedback.info("Mask ids are used as they are; CLASS_NAMES label them: "
                              + ", ".join(f"{i} = {name}" for name, i in mapping.items()))
        else:
            labelled = _rasterize_polygons(shapes, vector_info, tmp_mask, transform, width,
                                           height, mask_step)
            mapping, document = vector_info["mapping"], vector_info["json"]
        feedback.check_canceled()

        # Both outputs must share one grid exactly.
        with rasterio.open(tmp_image) as a, rasterio.open(tmp_mask) as b:
            if (a.width, a.height) != (b.width, b.height) or a.transform != b.transform \
                    or a.crs != b.crs:
                raise RuntimeError(f"align_pair: outputs on different grids ({a.transform}, "
                                   f"{b.transform}, {a.crs}, {b.crs})")
            crs_wkt = a.crs.to_wkt()
            out_transform = a.transform

        if document is not None:
            document["labelled_pixels"] = labelled
            tmp_json = stack.enter_context(atomic_output(classes_json))
            with open(tmp_json, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=2, ensure_ascii=False)
    if document is None and os.path.exists(classes_json):
        remove_quietly(classes_json)  # a stale mapping of an earlier run of this output
    feedback.progress(1.0)

    names_in_order = None
    if mapping:
        names_in_order = [name for name, _ in sorted(mapping.items(), key=lambda kv: kv[1])]
    total = width * height
    feedback.info("Labelled pixels: " + (", ".join(
        f"{k}: {v:,}" for k, v in labelled.items()) or "none") + f" (of {total:,} px).")
    if not any(labelled.values()):
        feedback.warning("The aligned mask has no labelled pixel in the common extent: check "
                         "the mask's classes and that it covers the image.")
    return {
        "output_image": output_image,
        "output_mask": output_mask,
        "classes_json": classes_json if document is not None else None,
        "width": int(width),
        "height": int(height),
        "crs": crs_wkt,
        "transform": [float(v) for v in tuple(out_transform)[:6]],
        "pixel_size": [float(px), float(py)],
        "bounds": [float(v) for v in bounds],
        "image_resampled": not kept,
        "class_mapping": mapping,
        "class_names": names_in_order,
        "labelled_pixels": labelled,
    }
