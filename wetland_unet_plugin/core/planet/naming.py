"""Planet's file naming: item ids, the files delivered beside a scene, product kinds, band names.

A PlanetScope delivery holds, per item, files named ``<item id>_<level>_<asset>...``:
``20240312_151234_12_24a3_3B_AnalyticMS_SR_8b_harmonized_clip.tif`` (the scene),
``..._3B_udm2_clip.tif`` (usable-data mask), ``..._3B_AnalyticMS_8b_metadata_clip.xml``
(radiometric coefficients) and ``<item id>_metadata.json`` (the item's properties).
"""

from __future__ import annotations

import glob
import os
import re

#: Band descriptions given to prepared scenes, by band count (PlanetScope 4-band, SuperDove 8-band).
CANONICAL_BANDS = {
    4: ["blue", "green", "red", "nir"],
    8: ["coastal_blue", "blue", "green_i", "green", "yellow", "red", "red_edge", "nir"],
}

#: A PlanetScope item id: acquisition date and time, optional sub-second part, satellite id.
_ITEM_ID = re.compile(r"^(\d{8}_\d{6}(?:_\d{2})?_[0-9a-f]{4})(?=_|\.|$)", re.IGNORECASE)
#: The processing level that follows the item id in asset file names.
_LEVEL = re.compile(r"_(1B|3B|2B|3A)_", re.IGNORECASE)


def item_id(path: str) -> str | None:
    """The Planet item id of a delivered file, or None for a file not named by Planet."""
    name = os.path.basename(path)
    match = _ITEM_ID.match(name)
    if match:
        return match.group(1)
    level = _LEVEL.search(name)
    return name[: level.start()] if level and level.start() > 0 else None


def level(path: str) -> str | None:
    """The processing level in the file name (``1B`` basic, ``3B`` ortho), or None."""
    match = _LEVEL.search(os.path.basename(path))
    return match.group(1).upper() if match else None


def product_kind(path: str) -> str:
    """``surface_reflectance`` (``_SR`` assets), ``toa_radiance`` (other ``AnalyticMS``
    assets), or ``unknown`` (not a Planet analytic asset)."""
    name = os.path.basename(path)
    if re.search(r"_SR(_|\.)", name, re.IGNORECASE):
        return "surface_reflectance"
    if re.search(r"_Analytic(MS)?(_|\.)", name, re.IGNORECASE):
        return "toa_radiance"
    return "unknown"


def _siblings(path: str, item: str, patterns: list) -> str | None:
    """The first existing file beside ``path`` named ``<item><pattern>`` (patterns in order)."""
    folder = os.path.dirname(os.path.abspath(path))
    for pattern in patterns:
        found = sorted(glob.glob(os.path.join(glob.escape(folder), glob.escape(item) + pattern)))
        if found:
            return found[0]
    return None


def find_udm(path: str) -> str | None:
    """The usable-data mask delivered beside a scene: its UDM2, else its legacy UDM."""
    item = item_id(path)
    if not item:
        return None
    clip = "_clip" if "_clip" in os.path.basename(path) else ""
    return _siblings(
        path,
        item,
        [f"_*udm2{clip}.tif", "_*udm2*.tif", f"_*_udm{clip}.tif", "_*_udm*.tif"],
    )


def find_metadata_xml(path: str) -> str | None:
    """The scene's metadata XML (radiometric coefficients), matched to its band count's asset."""
    item = item_id(path)
    if not item:
        return None
    eight = "_8b" in os.path.basename(path)
    first = "_*8b_metadata*.xml" if eight else "_*MS_metadata*.xml"
    return _siblings(path, item, [first, "_*metadata*.xml"])


def find_metadata_json(path: str) -> str | None:
    """The item's properties JSON (``<item id>_metadata.json``)."""
    item = item_id(path)
    return _siblings(path, item, ["_metadata.json", "*.json"]) if item else None
