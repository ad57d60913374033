"""Class names, colours and small parameter parsers shared by every step (no TensorFlow)."""

from __future__ import annotations

import re

from .feedback import CoreError

# Colours a land-cover analyst expects for common class names.
_KNOWN_COLORS = {
    "water": "#1f78b4",
    "open water": "#1f78b4",
    "wetland": "#33a5a0",
    "wetlands": "#33a5a0",
    "marsh": "#33a5a0",
    "swamp": "#2b8c6e",
    "forest": "#1b7837",
    "woodland": "#1b7837",
    "tree": "#1b7837",
    "trees": "#1b7837",
    "grass": "#a6d96a",
    "grassland": "#a6d96a",
    "meadow": "#a6d96a",
    "pasture": "#d9ef8b",
    "farmland": "#fee08b",
    "farm": "#fee08b",
    "cropland": "#fee08b",
    "agriculture": "#fee08b",
    "urban": "#d73027",
    "residential": "#d73027",
    "industrial": "#8c6d8c",
    "built": "#d73027",
    "bare": "#c2a383",
    "sand": "#f6e8c3",
    "cloud": "#f0f0f0",
    "shadow": "#404040",
}
# Fallback palette (matplotlib's tab10 without the two reds/greens used above).
_FALLBACK = [
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#c5b0d5",
]

_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


def parse_class_names(text) -> list[str]:
    """Parse ``"water,wetland,forest"`` (or a list) into a list of names.

    Raises:
        CoreError: when no name is given or a name repeats.
    """
    if isinstance(text, (list, tuple)):
        names = [str(n).strip() for n in text]
    else:
        names = [n.strip() for n in str(text or "").split(",")]
    names = [n for n in names if n]
    if not names:
        raise CoreError(
            "No class names given: list them in order of their ids, "
            'for example CLASS_NAMES="water,wetland,forest" for ids 1, 2, 3.'
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CoreError(f"Class names repeat ({', '.join(dupes)}): give each class one name.")
    return names


def default_colors(names: list[str]) -> list[str]:
    """Pick a colour per class: known land-cover colours by name, else a fixed palette."""
    colors, spare = [], list(_FALLBACK)
    for name in names:
        known = _KNOWN_COLORS.get(name.strip().lower())
        if known and known not in colors:
            colors.append(known)
        else:
            colors.append(spare.pop(0) if spare else "#%06x" % (hash(name) & 0xFFFFFF))
    return colors


def parse_colors(text, count: int) -> list[str] | None:
    """Parse ``"#rrggbb,#rrggbb"`` into ``count`` normalised colours; None when empty.

    Raises:
        CoreError: when a colour is not #rrggbb or the count differs from the classes.
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    items = [str(c).strip() for c in items if str(c).strip()]
    colors = []
    for item in items:
        match = _HEX.match(item)
        if not match:
            raise CoreError(
                f"CLASS_COLORS: '{item}' is not a colour; write colours as "
                '#rrggbb separated by commas, e.g. "#1f78b4,#33a5a0".'
            )
        colors.append("#" + match.group(1).lower())
    if len(colors) != count:
        raise CoreError(
            f"CLASS_COLORS has {len(colors)} colours but there are {count} "
            "classes: give one colour per class name, in the same order."
        )
    return colors


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """Return ``(r, g, b)`` for ``#rrggbb``."""
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)


def parse_int_list(text, what: str) -> list[int] | None:
    """Parse ``"1,2,3,7"`` into ``[1, 2, 3, 7]``; None when empty.

    Raises:
        CoreError: naming ``what`` when an item is not an integer.
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, (list, tuple)):
        items = list(text)
    else:
        items = [t for t in re.split(r"[,\s;]+", str(text).strip()) if t]
    try:
        return [int(t) for t in items]
    except (TypeError, ValueError):
        raise CoreError(
            f"{what}: '{text}' is not a list of whole numbers; "
            'write them separated by commas, e.g. "1,2,3,7".'
        ) from None


def parse_float_list(text, what: str) -> list[float] | None:
    """Parse ``"1, 2.5, 0.3"`` into floats; None when empty.

    Raises:
        CoreError: naming ``what`` when an item is not a number.
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    items = (
        text
        if isinstance(text, (list, tuple))
        else [t for t in re.split(r"[,\s;]+", str(text).strip()) if t]
    )
    try:
        return [float(t) for t in items]
    except (TypeError, ValueError):
        raise CoreError(
            f"{what}: '{text}' is not a list of numbers; "
            'write them separated by commas, e.g. "-1, 65535".'
        ) from None
