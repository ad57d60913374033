"""``clean_map``: a minimum mapping unit for class maps, and their polygons.

A patch is a connected group of pixels of one class (4- or 8-connected). Every
patch smaller than its class's minimum mapping unit (MMU, hectares turned into
pixels with the grid's pixel area) takes the class of the neighbouring patch it
shares the longest border with, the issue's rule. Border length is the number
of pairs of neighbouring pixels (under the chosen connectivity) of the two
patches. GDAL's SieveFilter was not used: it has one threshold for every class
and gives a small patch to its *largest* neighbour, while per-class units
(``water=0.01,wetland=0.1``) need a patch of one class protected while a patch of
the same size of another class is removed.

Merging runs in passes until no patch is below its unit (``mmu``): in a pass
every small patch moves at once into one allowed neighbour, so no two patches
swap and every pass removes at least one patch. A small patch without any
classified neighbour (an island in nodata) cannot merge and is kept; the count
is reported.

Memory is bounded at any map size: the class ids and patch labels live in
raw scratch files beside the output (5 bytes per pixel on disk, removed at the
end; ``mmu.DiskArray``), and every step reads them in strips of about
``mmu.STRIP_PIXELS`` pixels; in memory are one strip and a few numbers per
patch. The input, probability and uncertainty rasters are read in row windows,
and polygons come from GDAL's Polygonize reading the final labels from disk
(``polygons``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile

import numpy as np

from .areas import M2_PER_HA, pixel_area_m2
from .atomic import atomic_output
from .classes import default_colors, hex_to_rgb, parse_class_names, parse_colors
from .feedback import CoreError, Feedback
from .mmu import DiskArray, label_dtype, merge_small_patches, strip_height
from .modelfile import read_metadata
from .raster import check_disk_space, check_output_path, gtiff_profile, open_raster
from .schema.mapping import CLEANMAP


def clean_map(input=None, output=None, *, feedback=None, **params) -> dict:
    """Apply a minimum mapping unit to a class map; optionally write its polygons.

    Args:
        input: a single-band class raster (ids 1..N; 0 or its nodata = no data).
        output: the cleaned class map (uint8, nodata 0, colour table, class tags).
        **params: the other parameters of ``schema.CLEANMAP`` by keyword: ``model``,
            ``class_names``, ``class_colors``, ``mmu_ha``, ``mmu_per_class``,
            ``connectivity``, ``probabilities``, ``uncertainty``, ``output_polygons``.
        feedback: ``Feedback`` for progress, messages and cancel.

    Returns:
        dict with ``output``, ``output_polygons``, ``patches_merged``,
        ``pixels_changed``, ``patches_kept_isolated``, ``polygons``, ``class_names``,
        ``class_colors``, ``min_pixels`` (name -> pixels), ``class_hectares``.

    Raises:
        CoreError: for inputs that cannot work, before any output is written.
        Canceled: when canceled; nothing is left behind.
    """
    from .polygons import check_zonal_inputs, write_polygons

    feedback = feedback or Feedback()
    p = CLEANMAP.check(dict(params, input=input, output=output))
    polygons_path = p["output_polygons"] or None
    inputs = [p["input"], p["model"], p["probabilities"], p["uncertainty"]]
    check_output_path(p["output"], inputs, what="OUTPUT")
    if polygons_path:
        check_output_path(polygons_path, inputs, what="OUTPUT_POLYGONS")
        if not polygons_path.lower().endswith(".gpkg"):
            raise CoreError(
                f"OUTPUT_POLYGONS '{polygons_path}' must be a GeoPackage: end its name in .gpkg."
            )
    with open_raster(p["input"], "class map") as src:
        if src.count != 1 or not np.issubdtype(np.dtype(src.dtypes[0]), np.integer):
            raise CoreError(
                f"INPUT must be a single-band integer class map (ids 1..N), not "
                f"{src.count} band(s) of {src.dtypes[0]}: give predict's OUTPUT."
            )
        names, colors = class_names_and_colors(p, src.tags().get("class_names"))
        area = pixel_area_m2(src.crs, src.transform, "class map")
        min_pixels = unit_pixels(p["mmu_ha"], p["mmu_per_class"], names, area)
        check_zonal_inputs(src, p["probabilities"], p["uncertainty"], len(names))
        profile = gtiff_profile(src, count=1, dtype="uint8", nodata=0)
        shape = (src.height, src.width)
    # scratch: class ids, provisional labels and (for polygons) the final labels
    check_disk_space(p["output"], shape[0] * shape[1] * (6 + label_dtype(shape).itemsize), "OUTPUT")
    structure = 4 if p["connectivity"] == 4 else 8
    feedback.info(
        "Minimum mapping units in pixels ("
        f"{area:g} m2 per pixel): "
        + ", ".join(f"{n} {int(m)}" for n, m in zip(names, min_pixels[1:]))
    )
    folder = os.path.dirname(os.path.abspath(p["output"]))
    with tempfile.TemporaryDirectory(
        dir=folder, prefix=".cleanmap-scratch-", ignore_cleanup_errors=True
    ) as scratch:
        classes = DiskArray(os.path.join(scratch, "classes.raw"), shape, np.uint8)
        labels = DiskArray(os.path.join(scratch, "labels.raw"), shape, label_dtype(shape))
        try:
            read_classes(p["input"], classes, len(names), feedback)
            root, patch_class, stats = merge_small_patches(
                classes, labels, min_pixels, structure, feedback
            )
            result_polygons = 0
            with atomic_output(p["output"]) as tmp:
                changed, counts = write_class_map(tmp, classes, p["input"], profile, names, colors)
                feedback.info(
                    f"{stats['merged']} patch merges in {stats['passes']} pass(es), {changed} "
                    f"pixels changed class; {stats['isolated']} small patch(es) without a "
                    "classified neighbour kept."
                )
                feedback.progress(0.7)
                if polygons_path:
                    label_tif = os.path.join(scratch, "patches.tif")
                    write_labels(label_tif, labels, root, profile)
                    with atomic_output(polygons_path) as gpkg:
                        result_polygons = write_polygons(
                            gpkg,
                            label_tif,
                            patch_class,
                            names,
                            structure,
                            p["probabilities"],
                            p["uncertainty"],
                            feedback,
                        )
        finally:  # closed before the folder is removed (Windows needs it)
            classes.close()
            labels.close()
    feedback.progress(1.0)
    return {
        "output": p["output"],
        "output_polygons": polygons_path,
        "patches_merged": stats["merged"],
        "pixels_changed": changed,
        "patches_kept_isolated": stats["isolated"],
        "polygons": result_polygons,
        "class_names": names,
        "class_colors": colors,
        "min_pixels": {n: int(m) for n, m in zip(names, min_pixels[1:])},
        "class_hectares": {
            n: round(float(c) * area / M2_PER_HA, 6) for n, c in zip(names, counts[1:])
        },
    }


def class_names_and_colors(p: dict, tag: str | None) -> tuple[list, list]:
    """Class names and colours from MODEL, CLASS_NAMES or the map's ``class_names`` tag.

    Raises:
        CoreError: when none is given, or CLASS_NAMES differs from the model's classes.
    """
    given = parse_class_names(p["class_names"]) if p["class_names"] else None
    colors = None
    if p["model"]:
        metadata = read_metadata(p["model"])
        names = [str(n) for n in metadata.get("class_names") or []]
        if given is not None and given != names:
            raise CoreError(
                f"CLASS_NAMES ({', '.join(given)}) does not match the model's classes "
                f"({', '.join(names)}): leave CLASS_NAMES empty to use the model's, or give "
                "the model the map was predicted with."
            )
        colors = list(metadata.get("class_colors") or [])[: len(names)] or None
    elif given is not None:
        names = given
    elif tag:
        try:
            names = [str(n) for n in json.loads(tag)]
        except ValueError:
            names = []
    else:
        names = []
    if not names:
        raise CoreError(
            "The class names are unknown: give MODEL (the .keras model the map was predicted "
            "with) or CLASS_NAMES (e.g. water,wetland,forest for ids 1, 2, 3)."
        )
    if p["class_colors"]:
        colors = parse_colors(p["class_colors"], len(names))
    return names, colors or default_colors(names)


def unit_pixels(mmu_ha: float, per_class, names: list, pixel_area: float) -> np.ndarray:
    """The smallest patch kept, in pixels, per class id (index 0 = nodata, unused).

    Args:
        mmu_ha: the unit of every class (hectares, 0 = none).
        per_class: ``"water=0.01,wetland=0.1"`` overriding it for those classes.
        names: class names of ids 1..N.
        pixel_area: square metres per pixel.

    Raises:
        CoreError: for a class name the map does not have, a negative number, or a
            unit above 0 but below one pixel.
    """
    units = {name: float(mmu_ha or 0.0) for name in names}
    for item in str(per_class or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in units:
            raise CoreError(
                f"MMU_PER_CLASS: '{item.strip()}' is not <class>=<hectares> with one of the "
                f"classes {', '.join(names)} (e.g. {names[0]}=0.05)."
            )
        try:
            units[name] = float(value)
        except ValueError:
            raise CoreError(
                f"MMU_PER_CLASS: '{value.strip()}' for {name} is not a number."
            ) from None
        if not math.isfinite(units[name]) or units[name] < 0:
            raise CoreError(f"MMU_PER_CLASS: the unit of {name} must be 0 or more hectares.")
    pixel_ha = pixel_area / M2_PER_HA
    out = np.zeros(len(names) + 1, dtype=np.int64)
    for k, name in enumerate(names, start=1):
        pixels = units[name] / pixel_ha
        if 0 < pixels < 1 - 1e-9:
            raise CoreError(
                f"The minimum mapping unit of {name} ({units[name]:g} ha) is smaller than one "
                f"pixel ({pixel_ha:g} ha): give 0 (no unit) or at least {pixel_ha:g} ha."
            )
        out[k] = max(1, math.ceil(pixels - 1e-9)) if pixels > 0 else 0
    return out


def row_windows(height: int, width: int):
    """Row windows of about ``STRIP_PIXELS`` pixels covering a raster."""
    from rasterio.windows import Window

    rows = strip_height(width)
    for r0 in range(0, height, rows):
        yield Window(0, r0, width, min(rows, height - r0))


def read_classes(path: str, classes, n_classes: int, feedback) -> None:
    """Copy a class map into ``classes`` (uint8, nodata 0), window by window.

    Raises:
        CoreError: when a pixel holds an id outside 0..N.
    """
    with open_raster(path, "class map") as src:
        nodata = src.nodata
        for window in row_windows(src.height, src.width):
            feedback.check_canceled()
            data = src.read(1, window=window)
            if nodata is not None:
                data = np.where(data == nodata, 0, data)
            high, low = int(data.max(initial=0)), int(data.min(initial=0))
            if high > n_classes or low < 0:
                raise CoreError(
                    f"The class map holds ids {low}..{high} but {n_classes} classes are "
                    "named: give the model or CLASS_NAMES the map was made with."
                )
            r0 = window.row_off
            classes[r0 : r0 + window.height] = data


def write_class_map(path: str, classes, original: str, profile: dict, names: list, colors: list):
    """Write a uint8 class map with a colour table and the class names and colours as tags.

    Returns:
        ``(changed, counts)``: pixels whose class differs from the ``original`` map's
        and pixels per class id.
    """
    import rasterio

    changed, counts = 0, np.zeros(len(names) + 1, dtype=np.int64)
    with rasterio.open(path, "w", **profile) as dst, open_raster(original) as src:
        for window in row_windows(dst.height, dst.width):
            r0 = window.row_off
            block = np.asarray(classes[r0 : r0 + window.height])
            dst.write(block, 1, window=window)
            before = src.read(1, window=window)
            if src.nodata is not None:
                before = np.where(before == src.nodata, 0, before)
            changed += int(np.count_nonzero(block != before))
            counts += np.bincount(block.ravel(), minlength=len(names) + 1)
        dst.set_band_description(1, "class")
        colormap = {0: (0, 0, 0, 0)}
        for k, color in enumerate(colors, start=1):
            colormap[k] = hex_to_rgb(color) + (255,)
        dst.write_colormap(1, colormap)
        dst.update_tags(
            class_names=json.dumps(names), class_colors=json.dumps(colors), software="Wetland U-Net"
        )
    return changed, counts


def write_labels(path: str, labels, root: np.ndarray, profile: dict) -> None:
    """Write the final patch labels (``root[labels]``) as a GeoTIFF for polygonizing."""
    import rasterio

    dtype = "int32" if len(root) and int(root.max()) < 2**31 - 1 else "int64"
    label_profile = dict(profile, dtype=dtype, nodata=0)
    with rasterio.open(path, "w", **label_profile) as dst:
        for window in row_windows(dst.height, dst.width):
            r0 = window.row_off
            dst.write(
                root[np.asarray(labels[r0 : r0 + window.height])].astype(dtype), 1, window=window
            )
