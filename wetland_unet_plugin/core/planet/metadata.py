"""What a Planet delivery's metadata says: reflectance coefficients (XML), acquisition time.

The scene's XML (``..._AnalyticMS_metadata.xml``) has one ``bandSpecificMetadata``
per band with ``bandNumber`` and ``reflectanceCoefficient`` (TOA reflectance =
radiance DN x coefficient); the item's JSON has ``properties.acquired``. Elements
are matched by local name, so namespace prefixes do not matter.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from ..feedback import CoreError


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse(path: str):
    try:
        return ET.parse(path).getroot()
    except (OSError, ET.ParseError) as err:
        raise CoreError(f"The metadata XML '{path}' cannot be read: {err}.") from None


def reflectance_coefficients(path: str) -> dict:
    """Band number (1-based) -> TOA reflectance coefficient, from a scene's metadata XML.

    Raises:
        CoreError: the XML cannot be read or has no coefficients.
    """
    coefficients = {}
    for element in _parse(path).iter():
        if _local(element.tag) != "bandSpecificMetadata":
            continue
        values = {_local(child.tag): (child.text or "").strip() for child in element}
        try:
            coefficients[int(values["bandNumber"])] = float(values["reflectanceCoefficient"])
        except (KeyError, ValueError):
            continue
    if not coefficients:
        raise CoreError(
            f"The metadata XML '{path}' has no reflectanceCoefficient per band: give the "
            "scene's own ..._metadata.xml from the Planet delivery."
        )
    return coefficients


def acquired(json_path: str | None, xml_path: str | None) -> str:
    """The acquisition time (ISO 8601) from the item's JSON, else the XML; "" when unknown."""
    if json_path:
        try:
            with open(json_path, encoding="utf-8") as handle:
                value = (json.load(handle).get("properties") or {}).get("acquired")
            if value:
                return str(value)
        except (OSError, ValueError, AttributeError):
            pass
    if xml_path:
        try:
            for element in ET.parse(xml_path).getroot().iter():
                if _local(element.tag) == "acquisitionDate" and (element.text or "").strip():
                    return element.text.strip()
        except (OSError, ET.ParseError):
            pass
    return ""
