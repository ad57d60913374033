"""The per-scene table of a many-scene run: names, dates, hectares, reading and writing.

One row per scene: ``scene, item_id, acquired, status, message, valid_ha,
masked_ha`` then ``<class>_ha`` for every class, and a last row ``TOTAL`` with
the sums. ``status`` is ``done`` (classified now), ``skipped`` (its outputs
existed: SKIP_EXISTING) or ``failed`` (``message`` says why). Hectares come
from the class map itself (``class_areas``), so a resumed or merged run reports
the same numbers as the run that made the map.
"""

from __future__ import annotations

import csv
import json
import os
import re

import numpy as np

from .atomic import atomic_output
from .feedback import CoreError

#: The fixed columns, before one ``<class>_ha`` column per class.
COLUMNS = ["scene", "item_id", "acquired", "status", "message", "valid_ha", "masked_ha"]
#: Statuses of a scene that has a map.
GOOD = ("done", "skipped")
#: The ``scene`` of the total row.
TOTAL = "TOTAL"

#: A PlanetScope item id at the start of a file name: date, time, optional
#: sub-second part, satellite id (``20230405_151523_42_2474``).
_ITEM_ID = re.compile(r"^(\d{8})_(\d{6})(?:_\d{2})?_[0-9a-f]{4}(?=_|\.|$)", re.IGNORECASE)


def item_id(path: str) -> str:
    """The Planet item id a file name starts with, else the file's stem."""
    name = os.path.basename(path)
    match = _ITEM_ID.match(name)
    return match.group(0) if match else os.path.splitext(name)[0]


def acquired(path: str) -> str:
    """When the scene was acquired: Planet's ``properties.acquired`` from the
    ``<item id>_metadata.json`` beside it, else the date and time of its item id
    (UTC, ISO 8601), else empty."""
    item = item_id(path)
    sidecar = os.path.join(os.path.dirname(os.path.abspath(path)), f"{item}_metadata.json")
    if os.path.exists(sidecar):
        try:
            with open(sidecar, encoding="utf-8") as f:
                value = json.load(f).get("properties", {}).get("acquired")
            if value:
                return str(value)
        except (OSError, ValueError, AttributeError):
            pass
    match = _ITEM_ID.match(os.path.basename(path))
    if not match:
        return ""
    d, t = match.group(1), match.group(2)
    return f"{d[:4]}-{d[4:6]}-{d[6:]}T{t[:2]}:{t[2:4]}:{t[4:]}Z"


def class_areas(path: str, n_classes: int) -> tuple:
    """Pixels and hectares per value 0..n_classes of a class map, block by block.

    Args:
        path: a single-band class raster (0 or its nodata = no data).
        n_classes: the largest class id counted (larger ids count as no data).

    Returns:
        (pixels int64, hectares float64), each n_classes + 1 long (index 0: no data).
        Hectares use each row's pixel area (``areas.row_pixel_areas``).
    """
    import rasterio
    from rasterio.windows import transform as window_transform

    from .areas import M2_PER_HA, row_pixel_areas

    pixels = np.zeros(n_classes + 1, dtype=np.int64)
    hectares = np.zeros(n_classes + 1)
    with rasterio.open(path) as src:
        nodata = src.nodata
        for _, window in src.block_windows(1):
            block = src.read(1, window=window)
            ids = block.astype(np.int64)
            bad = (ids < 0) | (ids > n_classes)
            if nodata is not None:
                bad |= block == nodata
            ids[bad] = 0
            t = window_transform(window, src.transform)
            rows = row_pixel_areas(src.crs, t, int(window.height), what=f"map '{path}'")
            weights = np.repeat(rows / M2_PER_HA, int(window.width))
            pixels += np.bincount(ids.ravel(), minlength=n_classes + 1)
            hectares += np.bincount(ids.ravel(), weights=weights, minlength=n_classes + 1)
    return pixels, hectares


def area_columns(class_names: list) -> list:
    """The ``<class>_ha`` columns."""
    return [f"{name}_ha" for name in class_names]


def area_values(class_names: list, hectares) -> dict:
    """``valid_ha``, ``masked_ha`` and ``<class>_ha`` of a map's hectares (index 0 = no data)."""
    values = {"valid_ha": float(np.sum(hectares[1:])), "masked_ha": float(hectares[0])}
    for k, column in enumerate(area_columns(class_names)):
        values[column] = float(hectares[k + 1])
    return values


def total_row(rows: list, class_names: list) -> dict:
    """The ``TOTAL`` row: hectares summed over the scenes that have a map."""
    good = [r for r in rows if r["status"] in GOOD]
    failed = sum(1 for r in rows if r["status"] == "failed")
    total = {c: "" for c in COLUMNS}
    total.update(scene=TOTAL, message=f"{len(good)} scenes mapped, {failed} failed")
    for column in ["valid_ha", "masked_ha"] + area_columns(class_names):
        total[column] = sum(float(r[column]) for r in good if r.get(column) not in (None, ""))
    return total


def write_table(path: str, rows: list, class_names: list) -> str:
    """Write the scene rows and their total row as CSV (atomically); returns ``path``."""
    columns = COLUMNS + area_columns(class_names)
    with atomic_output(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for row in list(rows) + [total_row(rows, class_names)]:
                writer.writerow({c: _cell(row.get(c, "")) for c in columns})
    return path


def read_table(path: str) -> tuple:
    """Read a table written by ``write_table``: (scene rows without the total, class names).

    Raises:
        CoreError: for a file that is not such a table.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            rows = [dict(r) for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise CoreError(f"Cannot read the table '{path}' ({err}).") from None
    if header[: len(COLUMNS)] != COLUMNS or not all(c.endswith("_ha") for c in header[7:]):
        raise CoreError(
            f"'{path}' is not a table of 'Classify many scenes' (its columns should start "
            f"with {', '.join(COLUMNS)}): give the OUTPUT_TABLEs of predictmany runs."
        )
    names = [c[: -len("_ha")] for c in header[len(COLUMNS) :]]
    return [r for r in rows if r["scene"] != TOTAL], names


def _cell(value):
    """Hectares with 6 decimals (a 10 cm pixel is 1e-6 ha); other values as they are."""
    if isinstance(value, float):
        return f"{value:.6f}"
    return value
