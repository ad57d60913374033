"""wetlandunet:samplepoints - a stratified random sample of a class map, as points.

Two streamed passes over the map, window by window (bounded memory for any map
size, no array of coordinates): the first counts the pixels of every class (the
strata); then each stratum's sample is drawn as random ranks among its pixels
(``numpy.random.Generator.choice`` without replacement, O(n_i) memory), and the
second pass finds the pixels of those ranks in reading order. Each point lies at a
uniformly random location inside its pixel. Nodata and 0 are never sampled.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from .. import raster as rasterlib
from ..atomic import atomic_output
from ..feedback import CoreError, Feedback
from ..schema import SAMPLEPOINTS
from .estimators import allocate, sample_size
from .mapinfo import (
    check_single_band,
    class_names_for,
    count_classes,
    map_ids,
    pixel_area_ha,
    windows,
)


def draw_pixels(dataset, pixels, allocation, rng, feedback) -> list:
    """The sampled pixels: (class id, row, col) per point, in reading order.

    Args:
        dataset: the open class map.
        pixels: N_i per class id index (index 0 = class 1).
        allocation: n_i per class.
        rng: ``numpy.random.Generator``.
        feedback: progress (second half) and cancel.

    Returns:
        list of (class_id, row, col).
    """
    ranks = [
        np.sort(rng.choice(int(pixels[i]), size=int(allocation[i]), replace=False))
        if allocation[i]
        else np.zeros(0, dtype=np.int64)
        for i in range(len(pixels))
    ]
    seen = np.zeros(len(pixels), dtype=np.int64)  # pixels of each class before the window
    chosen = []
    for window in windows(dataset):
        feedback.check_canceled()
        ids = map_ids(dataset, window)
        for i, wanted in enumerate(ranks):
            if not wanted.size:
                continue
            flat = np.flatnonzero(ids == i + 1)
            lo, hi = np.searchsorted(wanted, [seen[i], seen[i] + flat.size])
            for rank in wanted[lo:hi]:
                r, c = divmod(int(flat[rank - seen[i]]), ids.shape[1])
                chosen.append((i + 1, int(window.row_off) + r, int(window.col_off) + c))
            seen[i] += flat.size
        feedback.progress(0.5 + 0.45 * (window.row_off + window.height) / dataset.height)
    return chosen


def write_points(path, dataset, chosen, names, pixels, rng) -> None:
    """Write the points as a GeoPackage layer in the map's CRS (atomically).

    Fields: ``map_class`` (id), ``map_name``, ``reference`` (empty integer, for the
    analyst), ``stratum_pixels`` (the class's mapped pixels).
    """
    from osgeo import ogr, osr

    with atomic_output(path) as tmp:
        driver = ogr.GetDriverByName("GPKG")
        ds = driver.CreateDataSource(tmp)
        srs = None
        if dataset.crs is not None:
            srs = osr.SpatialReference()
            srs.ImportFromWkt(dataset.crs.to_wkt())
        layer = ds.CreateLayer(
            os.path.splitext(os.path.basename(path))[0], srs, ogr.wkbPoint, ["FID=fid"]
        )
        for name, kind in (
            ("map_class", ogr.OFTInteger),
            ("map_name", ogr.OFTString),
            ("reference", ogr.OFTInteger),
            ("stratum_pixels", ogr.OFTInteger64),
        ):
            layer.CreateField(ogr.FieldDefn(name, kind))
        offsets = rng.random((len(chosen), 2))
        ds.StartTransaction()
        for (class_id, row, col), (dx, dy) in zip(chosen, offsets):
            x, y = dataset.transform * (col + dx, row + dy)
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetField("map_class", class_id)
            feature.SetField("map_name", names[class_id - 1])
            feature.SetFieldNull("reference")
            feature.SetField("stratum_pixels", int(pixels[class_id - 1]))
            point = ogr.Geometry(ogr.wkbPoint)
            point.AddPoint_2D(float(x), float(y))
            feature.SetGeometry(point)
            layer.CreateFeature(feature)
        ds.CommitTransaction()
        ds = None


def write_allocation(path, names, pixels, allocation, area_ha) -> None:
    """CSV: class_id, class_name, pixels, mapped_ha, weight, points (atomically)."""
    total = float(sum(pixels))
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class_id", "class_name", "pixels", "mapped_ha", "weight", "points"])
        for i, name in enumerate(names):
            writer.writerow(
                [
                    i + 1,
                    name,
                    int(pixels[i]),
                    f"{pixels[i] * area_ha:.6f}",
                    f"{pixels[i] / total:.9f}",
                    int(allocation[i]),
                ]
            )


def _user_accuracies(text, count):
    from ..classes import parse_float_list

    values = parse_float_list(text, "EXPECTED_USER_ACCURACY")
    if not values or len(values) not in (1, count):
        raise CoreError(
            f"EXPECTED_USER_ACCURACY needs one number or one per class ({count}), e.g. 0.85 "
            "or 0.7,0.8,0.9."
        )
    return values if len(values) == count else values * count


def sample_points(input=None, output=None, *, feedback=None, **params) -> dict:
    """Draw a stratified random sample of a class map for accuracy assessment.

    Args:
        input, output, **params: the parameters of ``schema.SAMPLEPOINTS`` by keyword:
            ``input`` (class map, ids 1..N, 0/nodata never sampled), ``output``
            (GeoPackage of points), ``model`` or ``class_names``, ``sample_size``
            (0 = from ``expected_user_accuracy`` and ``target_standard_error``,
            eq. 13 of Olofsson et al. 2014), ``min_per_class``, ``allocation``,
            ``seed``, ``output_table`` (allocation CSV).
        feedback: ``Feedback``.

    Returns:
        dict: ``output``, ``points``, ``sample_size``, ``allocation`` (per class dicts),
        ``output_table``.

    Raises:
        CoreError: before any work for bad parameters or a map without classes.
    """
    feedback = feedback or Feedback()
    p = SAMPLEPOINTS.check(dict(params, input=input, output=output))
    path, output, table = p["input"], p["output"], p["output_table"]
    if not str(output).lower().endswith(".gpkg"):
        raise CoreError(f"OUTPUT must be a GeoPackage (.gpkg), not '{output}'.")
    for key, target in (("OUTPUT", output), ("OUTPUT_TABLE", table)):
        if target:
            rasterlib.check_output_path(target, [path, p["model"]], what=key)
    with rasterlib.open_raster(path, "class map") as dataset:
        check_single_band(dataset)
        names = class_names_for(dataset, p["model"], p["class_names"])
        feedback.info("Counting the pixels of every class (pass 1 of 2).")
        pixels = count_classes(dataset, len(names) if names else None, feedback, 0.5)
        names = names or [f"class {k + 1}" for k in range(len(pixels))]
        present = pixels > 0
        total = p["sample_size"]
        if total == 0:
            weights = pixels[present] / pixels.sum()
            users = np.asarray(_user_accuracies(p["expected_user_accuracy"], len(names)))
            total = sample_size(weights, users[present], p["target_standard_error"])
            feedback.info(
                f"SAMPLE_SIZE from eq. 13 of Olofsson et al. (2014): n = (sum W_i S_i / "
                f"{p['target_standard_error']:g})^2 = {total}."
            )
        allocation = allocate(pixels, total, p["allocation"], p["min_per_class"])
        area = pixel_area_ha(dataset) or float("nan")
        lines = [
            f"{names[i]} (id {i + 1}): {int(pixels[i]):,} px, {pixels[i] * area:,.2f} ha, "
            f"W = {pixels[i] / pixels.sum():.4f}, {int(allocation[i])} points"
            for i in range(len(names))
        ]
        feedback.info(f"Allocation ({p['allocation']}, {int(allocation.sum())} points):")
        for line in lines:
            feedback.info("  " + line)
        rng = np.random.default_rng(p["seed"])
        chosen = draw_pixels(dataset, pixels, allocation, rng, feedback)
        write_points(output, dataset, chosen, names, pixels, rng)
    if table:
        write_allocation(table, names, pixels, allocation, area)
    feedback.progress(1.0)
    return {
        "output": output,
        "output_table": table,
        "points": len(chosen),
        "sample_size": int(allocation.sum()),
        "allocation": [
            {
                "class_id": i + 1,
                "class_name": names[i],
                "pixels": int(pixels[i]),
                "points": int(allocation[i]),
            }
            for i in range(len(names))
        ],
    }
