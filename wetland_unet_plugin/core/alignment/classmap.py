"""Class ids of the aligned mask: polygon class-field values to ids 1..N, and the
``<output_mask>.classes.json`` written beside the mask.

A class field holds integer ids (used as they are) or text such as
OpenStreetMap's ``fclass``; text maps to ids 1..N in the order of CLASS_NAMES
when given (values not listed stay 0, unlabelled), else in sorted order. The
mapping is logged and written beside the mask so the ids can be read back as
names later (train, style).
"""

from __future__ import annotations

import json
import math
import os

from ..classes import parse_class_names
from ..feedback import CoreError

#: Suffix of the class mapping written beside the mask.
CLASSES_SUFFIX = ".classes.json"


def optional_class_names(class_names):
    """Parsed CLASS_NAMES, or None when none are given."""
    if class_names is None:
        return None
    if isinstance(class_names, str) and not class_names.strip():
        return None
    if isinstance(class_names, (list, tuple)) and not class_names:
        return None
    return parse_class_names(class_names)


def map_field_values(values, kind, field_name, names, source, layer_name, feedback):
    """Class ids of the polygons from their class-field values.

    Args:
        values: the field value of each polygon (None where unset).
        kind: the field's type, "integer", "real" or "text".
        field_name: the field's name, for messages and the document.
        names: parsed CLASS_NAMES, or None.
        source: absolute path of the layer's file, for the document.
        layer_name: the layer's name, for the document.
        feedback: for the mapping and warnings in the log.

    Returns:
        (ids, mapping, document): one id per polygon (0 = unlabelled); {name: id}
        or None; the document for the classes.json sidecar, or None.

    Raises:
        CoreError: for decimal ids or ids above 65535.
    """
    mapping = None
    document = None
    ids = []
    raw_values = list(values)
    if kind == "text":
        texts = [None if v is None or not str(v).strip() else str(v).strip() for v in raw_values]
        distinct = sorted({t for t in texts if t is not None})
        numeric = bool(distinct) and all(t.lstrip("-").isdigit() for t in distinct)
        if names is None and numeric:
            kind = "integer"
            raw_values = [None if t is None else int(t) for t in texts]
            feedback.info(
                f"CLASS_FIELD '{field_name}' holds whole numbers as text; they are "
                "used as class ids as they are."
            )
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
            feedback.info(
                f"Classes of '{field_name}' ({origin}): "
                + ", ".join(f"{i} = {name}" for name, i in mapping.items())
            )
            unlisted = {t: c for t, c in counts.items() if value_ids[t] == 0}
            if unlisted:
                feedback.info(
                    "Not in CLASS_NAMES, left unlabelled (0): "
                    + ", ".join(
                        f"{t} ({c} polygon{'s' if c > 1 else ''})"
                        for t, c in sorted(unlisted.items())
                    )
                )
            missing = [
                name for name in mapping if not any(value_ids[t] == mapping[name] for t in distinct)
            ]
            if missing:
                feedback.warning(
                    f"CLASS_NAMES {', '.join(missing)} occur in no polygon's "
                    f"'{field_name}' (values found: {', '.join(distinct[:20])}"
                    f"{' ...' if len(distinct) > 20 else ''})."
                )
            empty = texts.count(None)
            if empty:
                feedback.info(f"{empty} polygon(s) have no '{field_name}' and stay unlabelled.")
            document = {
                "field": field_name,
                "source": source,
                "layer": layer_name,
                "order": "class_names" if names is not None else "sorted",
                "classes": [
                    {
                        "id": i,
                        "name": name,
                        "values": [t for t in distinct if value_ids[t] == i],
                        "polygons": sum(counts[t] for t in distinct if value_ids[t] == i),
                    }
                    for name, i in mapping.items()
                ],
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
                raise CoreError(
                    f"CLASS_FIELD '{field_name}' holds decimal numbers (e.g. "
                    f"{number:g}): class ids must be whole numbers; choose a field "
                    "with integer ids or class names."
                )
            if number > 65535:
                raise CoreError(
                    f"CLASS_FIELD '{field_name}' holds the id {number:.0f}, above "
                    "65535: renumber the classes 1..N (or use a text field of "
                    "class names)."
                )
            if number < 0:
                negative += 1
            ids.append(max(int(number), 0))
        if negative:
            feedback.warning(
                f"{negative} polygon(s) have a negative '{field_name}' and stay unlabelled (0)."
            )
        if names is not None:
            mapping = {name: i for i, name in enumerate(names, start=1)}
            document = {
                "field": field_name,
                "source": source,
                "layer": layer_name,
                "order": "ids as they are",
                "classes": [{"id": i, "name": name} for name, i in mapping.items()],
            }
            feedback.info(
                f"Ids of '{field_name}' are used as they are; CLASS_NAMES label "
                "them: " + ", ".join(f"{i} = {name}" for name, i in mapping.items())
            )
        present = sorted({i for i in ids if i})
        feedback.info(f"Class ids in '{field_name}': {', '.join(map(str, present)) or 'none'}.")
    return ids, mapping, document


def name_raster_ids(mask_path, names, feedback):
    """For a label raster, whose ids are used as they are: CLASS_NAMES label ids 1..N.

    Returns:
        (mapping, document): {name: id} and the classes.json document, or
        (None, None) without names.
    """
    if not names:
        return None, None
    mapping = {name: i for i, name in enumerate(names, start=1)}
    document = {
        "source": os.path.abspath(str(mask_path)),
        "order": "ids as they are",
        "classes": [{"id": i, "name": name} for name, i in mapping.items()],
    }
    feedback.info(
        "Mask ids are used as they are; CLASS_NAMES label them: "
        + ", ".join(f"{i} = {name}" for name, i in mapping.items())
    )
    return mapping, document


def write_classes_json(path, document, labelled) -> None:
    """Write the class document, with the labelled pixel counts, as JSON at ``path``."""
    document["labelled_pixels"] = labelled
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, ensure_ascii=False)


def names_in_id_order(mapping):
    """Class names sorted by id, or None without a mapping."""
    if not mapping:
        return None
    return [name for name, _ in sorted(mapping.items(), key=lambda kv: kv[1])]
