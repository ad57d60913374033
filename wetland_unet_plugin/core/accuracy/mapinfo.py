"""What the accuracy jobs read from a class map: ids, per-class pixel counts, pixel area,
class names. Streamed in windows, so any map size fits in memory."""

from __future__ import annotations

import numpy as np

from .. import raster as rasterlib
from ..feedback import CoreError

#: Bytes of one window's int64 class ids: windows are 256 rows by at most this many
#: bytes / 2 KiB columns, so memory does not grow with the map's width or height.
WINDOW_BYTES = 8 * 1024 * 1024


def windows(dataset):
    """The windows both passes read, always in the same order (row strips, column chunks)."""
    return rasterlib.chunk_windows(dataset.width, dataset.height, 8, max_bytes=WINDOW_BYTES)


def map_ids(dataset, window) -> np.ndarray:
    """Class ids of band 1 in ``window`` (int64; 0 where 0, nodata, NaN or negative)."""
    from ..evaluate import class_ids

    return class_ids(dataset.read(1, window=window)[None], dataset.nodata)


def count_classes(dataset, n_names: int | None, feedback, share: float = 1.0) -> np.ndarray:
    """Pixels per class id 1..K over the map's valid area, in one streamed pass.

    Args:
        dataset: the open class map (band 1 = ids).
        n_names: the number of known class names (None: as many as the largest id).
        feedback: progress (0..``share``) and cancel.

    Returns:
        int64 array, index i = class i + 1, of length max(n_names, largest id).

    Raises:
        CoreError: a map without classes, or with ids beyond the class names.
    """
    counts = np.zeros(1, dtype=np.int64)
    for window in windows(dataset):
        feedback.check_canceled()
        found = np.bincount(map_ids(dataset, window).ravel())
        if found.size > counts.size:
            found[: counts.size] += counts
            counts = found
        else:
            counts[: found.size] += found
        feedback.progress(share * (window.row_off + window.height) / dataset.height)
    counts = counts[1:]
    largest = int(np.flatnonzero(counts)[-1]) + 1 if counts.any() else 0
    if largest == 0:
        raise CoreError(
            f"The class map '{dataset.name}' has no class pixels (every pixel is 0 or "
            "nodata): choose the OUTPUT of wetlandunet:predict."
        )
    if n_names is not None and largest > n_names:
        raise CoreError(
            f"The class map has class id {largest} but only {n_names} class names are known. "
            "Give the MODEL that made the map, or CLASS_NAMES naming every class in id order."
        )
    size = max(largest, n_names or 0)
    out = np.zeros(size, dtype=np.int64)
    out[: min(size, counts.size)] = counts[:size]
    return out


def pixel_area_ha(dataset) -> float | None:
    """Area of one pixel in hectares, or None when the CRS is not projected in a linear unit."""
    crs = dataset.crs
    if crs is None or not crs.is_projected:
        return None
    try:
        factor = float(crs.linear_units_factor[1])
    except Exception:
        return None
    t = dataset.transform
    return abs(t.a * t.e - t.b * t.d) * factor**2 / 10000.0


def class_names_for(dataset, model=None, class_names=None) -> list | None:
    """Class names from MODEL, CLASS_NAMES or the map's ``class_names`` tag (None if none)."""
    from ..evaluate import resolve_class_names

    return resolve_class_names(model, class_names, dataset.tags())


def check_single_band(dataset, what: str = "class map") -> None:
    """Refuse a multi-band raster where a class map is expected."""
    if dataset.count != 1:
        raise CoreError(
            f"The {what} '{dataset.name}' has {dataset.count} bands; choose the single-band "
            "class raster (OUTPUT of wetlandunet:predict)."
        )
