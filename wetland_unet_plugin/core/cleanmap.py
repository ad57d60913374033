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

Merging runs in passes until no patch is below its unit. In a pass every small
patch moves at once into one of its allowed neighbours: a stable patch (at
least its own unit) when it has one, else a small patch that is larger (size,
then label, breaks ties), so no two patches swap and every pass removes at
least one patch. A small patch without any classified neighbour (an island in
nodata) cannot merge and is kept; the count is reported.

Memory: the class map (1 byte per pixel) and one int32 patch-label array are in
memory together (about 5 bytes per pixel, 160 MB for an 8000 x 4000 Planet
scene, plus short-lived masks of one neighbour direction at a time); the
probability and uncertainty rasters are read in row windows. Polygons come from
GDAL's Polygonize (``polygons``).
"""

from __future__ import annotations

import json
import math

import numpy as np

from .areas import M2_PER_HA, pixel_area_m2
from .atomic import atomic_output
from .classes import default_colors, hex_to_rgb, parse_class_names, parse_colors
from .feedback import CoreError, Feedback
from .modelfile import read_metadata
from .raster import check_output_path, gtiff_profile, open_raster
from .schema.mapping import CLEANMAP

#: Safety stop for the merge passes (each pass removes at least one patch; real maps
#: need a handful).
MAX_PASSES = 200


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
        classes = read_classes(src, len(names))
    structure = 4 if p["connectivity"] == 4 else 8
    feedback.info(
        "Minimum mapping units in pixels ("
        f"{area:g} m2 per pixel): "
        + ", ".join(f"{n} {int(m)}" for n, m in zip(names, min_pixels[1:]))
    )
    original = classes.copy()
    classes, labels, patch_class, stats = merge_small_patches(
        classes, min_pixels, structure, feedback
    )
    changed = int(np.count_nonzero(classes != original))
    del original
    counts = np.bincount(classes.ravel(), minlength=len(names) + 1)
    feedback.info(
        f"{stats['merged']} patch merges in {stats['passes']} pass(es), {changed} pixels "
        f"changed class; {stats['isolated']} small patch(es) without a classified neighbour kept."
    )
    result_polygons = 0
    with atomic_output(p["output"]) as tmp:
        write_class_map(tmp, classes, profile, names, colors)
        feedback.progress(0.7)
        if polygons_path:
            with atomic_output(polygons_path) as gpkg:
                result_polygons = write_polygons(
                    gpkg,
                    labels,
                    patch_class,
                    names,
                    profile,
                    structure,
                    p["probabilities"],
                    p["uncertainty"],
                    feedback,
                )
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


def read_classes(src, n_classes: int) -> np.ndarray:
    """The class map as uint8 with nodata 0.

    Raises:
        CoreError: when a pixel holds an id outside 0..N.
    """
    data = src.read(1)
    nodata = src.nodata
    invalid = data == nodata if nodata is not None else np.zeros(data.shape, bool)
    data = np.where(invalid, 0, data)
    high, low = int(data.max(initial=0)), int(data.min(initial=0))
    if high > n_classes or low < 0:
        raise CoreError(
            f"The class map holds ids {low}..{high} but {n_classes} classes are named: "
            "give the model or CLASS_NAMES the map was made with."
        )
    return data.astype(np.uint8)


def label_patches(classes: np.ndarray, n_classes: int, connectivity: int):
    """Label the patches of every class with one numbering.

    Returns:
        ``labels`` (int32, 0 on nodata), ``patch_class`` (class id per label),
        ``sizes`` (pixels per label).
    """
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    labels = np.zeros(classes.shape, dtype=np.int32)
    patch_class = [0]
    offset = 0
    for k in range(1, n_classes + 1):
        mask = classes == k
        if not mask.any():
            continue
        lab, n = ndimage.label(mask, structure=structure, output=np.int32)
        np.add(lab, offset, out=lab, where=mask)  # in place: no scene-sized temporaries
        labels += lab  # lab is 0 outside this class, labels is 0 inside it
        del lab
        patch_class.extend([k] * n)
        offset += n
    sizes = np.bincount(labels.ravel(), minlength=offset + 1)
    return labels, np.asarray(patch_class, dtype=np.int64), sizes


def _neighbour_pairs(labels: np.ndarray, small: np.ndarray, connectivity: int):
    """(patch, neighbour) label pairs of neighbouring pixels, patch small, both classified."""
    shifts = [(0, 1), (1, 0)] + ([(1, 1), (1, -1)] if connectivity == 8 else [])
    height, width = labels.shape
    parts_a, parts_b = [], []
    for dy, dx in shifts:
        a = labels[: height - dy, max(0, -dx) : width - max(0, dx)]
        b = labels[dy:, max(0, dx) : width - max(0, -dx)]
        for x, y in ((a, b), (b, a)):
            keep = (x != y) & small[x] & (y > 0)
            parts_a.append(x[keep])
            parts_b.append(y[keep])
    return np.concatenate(parts_a).astype(np.int64), np.concatenate(parts_b).astype(np.int64)


def merge_small_patches(
    classes: np.ndarray, min_pixels: np.ndarray, connectivity: int, feedback=None
):
    """Merge patches below their class's unit into the neighbour of the longest border.

    Args:
        classes: uint8 class ids (0 = nodata); not modified.
        min_pixels: smallest patch kept per class id (index 0 unused; 0 = any size).
        connectivity: 4 or 8.
        feedback: for cancel.

    Returns:
        ``(classes, labels, patch_class, stats)``: the cleaned map, its patch labels and
        their classes, and ``{"merged", "passes", "isolated"}``.
    """
    feedback = feedback or Feedback()
    classes = classes.copy()
    n_classes = len(min_pixels) - 1
    stats = {"merged": 0, "passes": 0, "isolated": 0}
    for _ in range(MAX_PASSES):
        feedback.check_canceled()
        labels, patch_class, sizes = label_patches(classes, n_classes, connectivity)
        small = sizes < min_pixels[patch_class]
        small[0] = False
        if not small.any():
            stats["isolated"] = 0
            return classes, labels, patch_class, stats
        a, b = _neighbour_pairs(labels, small, connectivity)
        bigger = (sizes[b] > sizes[a]) | ((sizes[b] == sizes[a]) & (b > a))
        allowed = ~small[b] | bigger
        a, b = a[allowed], b[allowed]
        movable = np.unique(a)
        stats["isolated"] = int(small.sum() - movable.size)
        if a.size == 0:
            return classes, labels, patch_class, stats
        pairs, border = np.unique(a * (len(sizes) + 1) + b, return_counts=True)
        pa, pb = pairs // (len(sizes) + 1), pairs % (len(sizes) + 1)
        # per patch the last of: stable neighbours first, then longest border, then size, label
        order = np.lexsort((pb, sizes[pb], border, ~small[pb], pa))
        pa, pb = pa[order], pb[order]
        last = np.r_[pa[1:] != pa[:-1], True]
        new_class = patch_class.copy()
        new_class[pa[last]] = patch_class[pb[last]]
        classes = new_class.astype(np.uint8)[labels]
        del labels, a, b  # freed before the next labelling, not during it
        stats["merged"] += int(last.sum())
        stats["passes"] += 1
    labels, patch_class, _ = label_patches(classes, n_classes, connectivity)
    feedback.warning(f"Stopped merging after {MAX_PASSES} passes; some small patches remain.")
    return classes, labels, patch_class, stats


def write_class_map(path: str, classes: np.ndarray, profile: dict, names: list, colors: list):
    """Write a uint8 class map with a colour table and the class names and colours as tags."""
    import rasterio

    with rasterio.open(path, "w", **profile) as dst:
        dst.write(classes, 1)
        dst.set_band_description(1, "class")
        colormap = {0: (0, 0, 0, 0)}
        for k, color in enumerate(colors, start=1):
            colormap[k] = hex_to_rgb(color) + (255,)
        dst.write_colormap(1, colormap)
        dst.update_tags(
            class_names=json.dumps(names), class_colors=json.dumps(colors), software="Wetland U-Net"
        )
