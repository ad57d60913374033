"""Labelled sample points read with OGR and matched to the class map they assess.

Points in another CRS are reprojected to the map's (never refused). Each point's map
class is read from the map at its location; points outside the map, on 0/nodata or
with an empty reference (NULL, "" or 0) are skipped and counted. Reference values are
class ids or class names (case-insensitive); anything else is an error naming them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..feedback import CoreError

#: The field samplepoints writes for the analyst's label, used when none is named.
DEFAULT_FIELD = "reference"
#: The field that carries a point's stratum (the map class it was drawn from).
STRATUM_FIELD = "map_class"


@dataclass
class Sample:
    """Points usable for assessment: their map class and reference class (ids 1..K)."""

    map_ids: np.ndarray
    ref_ids: np.ndarray
    total: int = 0
    has_strata: bool = False
    skipped: dict = field(default_factory=dict)


def is_vector(path) -> bool:
    """True when ``path`` opens as a vector dataset with at least one layer (OGR)."""
    from osgeo import gdal

    if not path:
        return False
    name = str(path).split("|")[0]
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        ds = gdal.OpenEx(name, gdal.OF_VECTOR)
    except RuntimeError:  # raised instead of None where gdal.UseExceptions() is on
        ds = None
    finally:
        gdal.PopErrorHandler()
    return ds is not None and ds.GetLayerCount() > 0


def open_layer(path):
    """(dataset, layer) of 'file.gpkg' or 'file.gpkg|layername=x' (OGR)."""
    from osgeo import gdal

    name, _, options = str(path).partition("|")
    ds = gdal.OpenEx(name, gdal.OF_VECTOR)
    if ds is None or ds.GetLayerCount() == 0:
        raise CoreError(f"REFERENCE '{path}' is not a vector layer OGR can read.")
    layer_name = options.split("layername=")[1].split("|")[0] if "layername=" in options else ""
    layer = ds.GetLayerByName(layer_name) if layer_name else ds.GetLayer(0)
    if layer is None:
        raise CoreError(f"REFERENCE '{path}' has no layer '{layer_name}'.")
    return ds, layer


def _transform_to(layer, map_crs):
    """An osr transformation from the layer's CRS to the map's, or None when the same."""
    from osgeo import osr

    source = layer.GetSpatialRef()
    if source is None or map_crs is None:
        return None
    target = osr.SpatialReference()
    target.ImportFromWkt(map_crs.to_wkt())
    for srs in (source, target):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    if source.IsSame(target):
        return None
    return osr.CoordinateTransformation(source, target)


def parse_reference(value, names) -> int | None:
    """A reference value as a class id: None when empty, -1 when not a class.

    Args:
        value: the field's value (int, float, text; None for NULL).
        names: the class names (ids 1..K in order).
    """
    if value is None:
        return None
    text = str(value).strip()
    if text == "":
        return None
    lookup = {name.strip().lower(): k + 1 for k, name in enumerate(names)}
    if text.lower() in lookup:
        return lookup[text.lower()]
    try:
        number = float(text)
    except ValueError:
        return -1
    if number != int(number):
        return -1
    number = int(number)
    if number == 0:
        return None
    return number if 1 <= number <= len(names) else -1


def read_sample(path, field_name, dataset, names, feedback) -> Sample:
    """Read labelled points and the map's class under each.

    Args:
        path: the point layer ('file.gpkg' or 'file.gpkg|layername=x').
        field_name: the reference field (None: ``DEFAULT_FIELD``).
        dataset: the open class map (rasterio).
        names: class names, ids 1..K.
        feedback: cancel.

    Returns:
        ``Sample`` of the usable points, with the skipped ones counted by reason.

    Raises:
        CoreError: missing field, reference values that are not classes, strata
            (``map_class``) that do not match the map.
    """
    from ..evaluate import class_ids

    ds, layer = open_layer(path)
    defn = layer.GetLayerDefn()
    fields = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    field_name = field_name or DEFAULT_FIELD
    if field_name not in fields:
        raise CoreError(
            f"The points have no field '{field_name}' (fields: {', '.join(fields) or 'none'}). "
            "Set REFERENCE_FIELD to the field holding the reference class ids or names."
        )
    has_strata = STRATUM_FIELD in fields
    transform = _transform_to(layer, dataset.crs)
    xs, ys, refs, strata, fids, bad = [], [], [], [], [], {}
    total = 0
    for feature in layer:
        total += 1
        geom = feature.GetGeometryRef()
        if geom is None or geom.IsEmpty():
            continue
        geom = geom.Clone()
        if transform is not None:
            geom.Transform(transform)
        point = geom if geom.GetGeometryName() == "POINT" else geom.Centroid()
        raw = None if feature.IsFieldNull(field_name) else feature.GetField(field_name)
        ref = parse_reference(raw, names)
        if ref == -1:
            bad.setdefault(str(raw), feature.GetFID())
        xs.append(point.GetX())
        ys.append(point.GetY())
        refs.append(0 if ref is None or ref == -1 else ref)
        strata.append(
            feature.GetField(STRATUM_FIELD)
            if has_strata and not feature.IsFieldNull(STRATUM_FIELD)
            else 0
        )
        fids.append(feature.GetFID())
    del layer, ds  # close the file
    feedback.check_canceled()
    if bad:
        shown = ", ".join(f"{v!r} (fid {f})" for v, f in list(bad.items())[:8])
        allowed = ", ".join(f"{k + 1}={n}" for k, n in enumerate(names))
        raise CoreError(
            f"REFERENCE_FIELD '{field_name}' holds values that are not classes of the map: "
            f"{shown}. Use class ids or names ({allowed}); leave unknown points empty."
        )
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    cols, rows = ~dataset.transform * (xs, ys)
    cols, rows = np.floor(cols).astype(np.int64), np.floor(rows).astype(np.int64)
    inside = (cols >= 0) & (cols < dataset.width) & (rows >= 0) & (rows < dataset.height)
    mapped = np.zeros(xs.size, dtype=np.int64)
    if inside.any():
        coords = [dataset.xy(r, c) for r, c in zip(rows[inside], cols[inside])]
        values = np.array([v[0] for v in dataset.sample(coords, indexes=1)])
        mapped[inside] = class_ids(values.reshape(1, 1, -1), dataset.nodata)[0]
    refs, strata = np.asarray(refs, dtype=np.int64), np.asarray(strata, dtype=np.int64)
    on_map = inside & (mapped > 0)
    if has_strata:
        wrong = on_map & (strata != mapped)
        if wrong.any():
            first = int(np.flatnonzero(wrong)[0])
            raise CoreError(
                f"The sample's strata do not match the map's classes: {int(wrong.sum())} of "
                f"{int(on_map.sum())} points on the map have a map_class that differs from the "
                f"map under them (e.g. fid {fids[first]}: map_class {strata[first]}, map "
                f"{mapped[first]}). The points were drawn from another map: draw a sample of "
                "this map with wetlandunet:samplepoints, or evaluate the map they came from."
            )
    usable = on_map & (refs > 0)
    skipped = {
        "outside the map": int((~inside).sum()) + (total - xs.size),
        "on nodata": int((inside & (mapped == 0)).sum()),
        "empty reference": int((on_map & (refs == 0)).sum()),
    }
    return Sample(mapped[usable], refs[usable], total, has_strata, skipped)
